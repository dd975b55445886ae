"""Upgrades rehearsed before they are made for good: dry runs and trial upgrades.

A **dry run** replays the machine's most recent inputs (those kept in :attr:`Machine.recent`,
at most :data:`RECENT` of them, all on the running code) through the new code, from the
migrated state at the first of them, and compares each output with the one the running code
gave. Nothing on the machine changes.

A **trial** upgrade is installed like any other but keeps what it needs to be taken back
exactly: the old code, the state just before the migration, the input count then, and every
input applied since. A trap in the new code during the trial, or a revert, puts the old code
and that state back and replays the trial's inputs through the old code, so the machine ends
as if the upgrade had never happened (an input that traps on the old code is skipped, as it
would have been). When the trial's inputs run out, its time is up, or on confirm, it becomes
permanent.

Both work on :class:`Machine` values alone, so recovery (``store.py``) replays a trial's
inputs, confirms and reverts through the same functions the live node uses.

"Upgrade" here is a ``Swap`` of the registry, rehearsed (dry run) or installed provisionally.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from hotswap.cam.loaded import LoadedModule
from hotswap.errors import HotswapError, Trap
from hotswap.lang.evaluate import Value
from hotswap.names.display import render_by_name
from hotswap.names.section import SECTION

#: How many recent inputs each machine keeps for dry runs.
RECENT = 1000
#: How many differing outputs a dry run reports in full.
MAX_DIFFERENCES = 10


class Recent(NamedTuple):
    """One input the running code applied: ``seq`` is the machine's input count before it.
    The machine keeps them as plain tuples of these fields (:data:`Kept`: building a named
    tuple costs ten times as much, on every input), made Recent when a dry run reads them."""

    seq: int
    state: Value  # the state before the input
    input: Value
    output: Value


#: A :class:`Recent` as the machine keeps it: ``(seq, state, input, output)``.
Kept = tuple[int, Value, Value, Value]


def recent_window() -> deque[Kept]:
    return deque(maxlen=RECENT)


@dataclass(slots=True)
class Trial:
    """A provisional upgrade: what is needed to take it back exactly."""

    old_code: LoadedModule
    old_state: Value  # just before the migration
    old_inputs: int
    left: int | None  # inputs still to come before it becomes permanent (None: no limit)
    until: float | None = None  # when it becomes permanent (seconds since the epoch)
    inputs: list[Value] = field(default_factory=list)  # applied on the new code, in order


@dataclass(frozen=True, slots=True)
class TrialEnd:
    """How a trial ended: ``reverted`` or not, the code now running, and for a revert how many
    of the trial's inputs were replayed through the old code and how many it skipped (they
    trap there)."""

    reverted: bool
    identity: str
    replayed: int = 0
    skipped: int = 0


def revert(
    trial: Trial, fuel: int, replay: bool = True
) -> tuple[LoadedModule, Value, int, TrialEnd]:
    """The old code, the state and input count the machine would have without the upgrade;
    each input replayed with ``fuel`` (one that runs out is skipped, as any that traps).
    Without ``replay`` (the trial code took another input type, whose values the old code
    cannot take), every input is skipped."""
    code, state, inputs = trial.old_code, trial.old_state, trial.old_inputs
    if not replay:
        return code, state, inputs, TrialEnd(True, code.identity, 0, len(trial.inputs))
    replayed = skipped = 0
    for value in trial.inputs:
        try:
            state, _ = code.step(value, state, fuel=fuel)
        except Trap:
            skipped += 1
            continue
        inputs += 1
        replayed += 1
    return code, state, inputs, TrialEnd(True, code.identity, replayed, skipped)


@dataclass(frozen=True, slots=True)
class Difference:
    """One input whose output differs (or that traps) on the new code."""

    seq: int
    input: Value
    old: Value
    new: Value | None  # None: the new code trapped
    trap: str = ""


@dataclass(frozen=True, slots=True)
class DryRunResult:
    """What a dry run found: how many inputs it replayed, how many outputs differ, how many
    inputs trap on the new code, the first differences, and notes on how it compared."""

    replayed: int
    differing: int
    traps: int
    differences: tuple[Difference, ...]
    notes: tuple[str, ...] = ()


def dry_run(
    old: LoadedModule,
    new: LoadedModule,
    migrate: LoadedModule,
    recent: list[Recent],
    fuel: int,
) -> DryRunResult:
    """Replay ``recent`` (inputs the running code ``old`` applied) through ``new`` from the
    migrated state before the first of them, each run with ``fuel``; compare outputs by value
    when the output types are equal, else by their Python names."""
    old_sig, new_sig = old.machine, new.machine
    assert old_sig is not None and new_sig is not None
    notes: list[str] = []
    if not recent:
        notes.append("no recent inputs on the running code to replay (none since it started)")
        return DryRunResult(0, 0, 0, (), tuple(notes))
    if old_sig.input is not new_sig.input:
        notes.append(f"the input type changed ({old_sig.input} -> {new_sig.input})")
        return DryRunResult(0, 0, 0, (), (*notes, "inputs cannot be replayed: nothing compared"))
    by_value = old_sig.output is new_sig.output
    if not by_value and SECTION in old.custom and SECTION in new.custom:
        notes.append("the output type changed: outputs compared by their Python names")
    elif not by_value:
        notes.append("the output type changed and the modules carry no names: every output differs")
    try:
        state = migrate.migrate(recent[0].state, fuel=fuel)
    except Trap as e:
        note = f"the migration traps on the state before input {recent[0].seq}: {e}"
        return DryRunResult(0, 0, 0, (), (*notes, note))
    differing = traps = 0
    differences: list[Difference] = []
    for entry in recent:
        try:
            state, output = new.step(entry.input, state, fuel=fuel)
        except Trap as e:
            traps += 1
            differing += 1
            if len(differences) < MAX_DIFFERENCES:
                differences.append(Difference(entry.seq, entry.input, entry.output, None, str(e)))
            continue
        if not _same(entry.output, output, old, new, by_value):
            differing += 1
            if len(differences) < MAX_DIFFERENCES:
                differences.append(Difference(entry.seq, entry.input, entry.output, output))
    return DryRunResult(len(recent), differing, traps, tuple(differences), tuple(notes))


def _same(a: Value, b: Value, old: LoadedModule, new: LoadedModule, by_value: bool) -> bool:
    if by_value:
        return bool(a == b)
    try:
        return render_by_name(a, "output", old) == render_by_name(b, "output", new)
    except HotswapError:  # no names to compare by: a changed output type differs
        return False
