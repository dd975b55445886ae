"""The registry: the machines a node runs, and the pure logic of inputs and upgrades.

No I/O happens here, so every rule can be tested without a network or a disk. Each operation
either changes everything it should or nothing: a step that traps leaves the state as it was;
an upgrade is checked completely (docs/design.md, "Upgrades") before the swap, which cannot
fail. "Upgrade" here is what an ``UpgradeRequest`` asks for: :meth:`Registry.prepare` checks
it and returns a :class:`Swap`, :meth:`Registry.install` installs it. This is where the node
refuses an upgrade (the client refuses a migration declared for other machines before sending:
``hotswap.code.Upgrade.check_declared``).

The checks of :meth:`Registry.prepare`, in order: no trial upgrade is in progress; the running
identity is the expected one and the generation, if named, the machine's (before any module is
decoded); both modules decode canonically, verify and compile (``load_module``); the new
module is a machine, and no other machine runs its code under other names; the migration is a
migration; the migration maps the running state type to the new state type; its names agree
with both states' names unless the upgrade is a rename; it runs on the current state without
trapping. Then the swap.

Every run of a machine's code here (init, step, migration, a dry run, the replay of a reverted
trial) has the registry's fuel budget (``hotswap node --fuel``); running out is the trap
``out_of_fuel``, refused like any other trap.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hotswap.cam.limits import DEFAULT_FUEL
from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.errors import BytecodeError, HotswapError, NodeError, Trap, UpgradeRejected
from hotswap.lang.check import MAX_STATE_BYTES
from hotswap.lang.evaluate import Value
from hotswap.lang.types import Type
from hotswap.names.lint import migration_name_differences, nominal_notes
from hotswap.node.instances import Keyed
from hotswap.node.rehearse import (
    RECENT,
    DryRunResult,
    Kept,
    Recent,
    Trial,
    TrialEnd,
    dry_run,
    recent_window,
    revert,
)
from hotswap.protocol.events import ErrorCode, HistoryKind

VERSION_MISMATCH = "The version running isn't the one the upgrade expects. Aborting upgrade."
#: The most bytes of one input a node decodes unless told (``--max-input``). Decoding is
#: linear but not cheap: a megabyte of one-byte elements (empty lists) takes a few seconds
#: and about a hundred times its size in memory, so the default keeps one input well short
#: of stalling the node.
DEFAULT_MAX_INPUT = 1024 * 1024

#: The longest trial upgrade, in inputs and in seconds (ten years): the store keeps both as
#: signed 64-bit numbers.
MAX_TRIAL_INPUTS = 2**62
MAX_TRIAL_SECONDS = 10 * 366 * 24 * 3600
#: The largest fuel budget a node takes (``--fuel``): far beyond any run that finishes in time.
MAX_FUEL = 2**62


def check_fuel(fuel: object) -> int:
    """``fuel`` as a budget: a positive integer up to :data:`MAX_FUEL`; :class:`HotswapError`
    saying so otherwise."""
    if isinstance(fuel, bool) or not isinstance(fuel, int) or not 1 <= fuel <= MAX_FUEL:
        raise HotswapError(
            f"bad fuel {fuel!r}: the fuel budget of each step, init and migration is a "
            f"whole number from 1 to {MAX_FUEL} (the default is {DEFAULT_FUEL:_})"
        )
    return fuel


@dataclass(frozen=True, slots=True)
class Change:
    """One change of code on a machine; ``seq`` counts the inputs processed before it. ``by``
    is who made it (the authenticated principal's name; None on a node without ``--auth``, or
    for a change the node made itself, such as the revert of a trial whose input trapped), and
    ``signer`` the id of the trusted key that signed it (None: not signed)."""

    identity: str
    kind: HistoryKind
    seq: int
    time: float
    migration: str | None = None
    by: str | None = None
    signer: str | None = None


@dataclass(slots=True)
class Machine:
    """A running machine: its code, its (default instance's) state, how many inputs it has
    processed; the inputs kept for dry runs, the trial upgrade in progress if there is one,
    and its keyed instances (:mod:`hotswap.node.instances`)."""

    name: str
    code: LoadedModule
    state: Value
    inputs: int = 0
    history: list[Change] = field(default_factory=list)
    recent: deque[Kept] = field(default_factory=recent_window)
    trial: Trial | None = None
    keyed: Keyed = field(default_factory=Keyed)

    @property
    def identity(self) -> str:
        return self.code.identity

    @property
    def generation(self) -> int:
        """How many changes of code the machine has had: 0 on its first code, one more for
        every upgrade, rollback or release that swapped it."""
        return len(self.history) - 1


@dataclass(frozen=True, slots=True)
class Stepped:
    """The result of one input: the output and new state, and the code that produced them;
    ``confirmed`` when the input was the last of a trial, which is now permanent."""

    output: Value
    state: Value
    identity: str
    confirmed: bool = False


class TrialReverted(NodeError):
    """The input trapped on the code of a trial upgrade: the trial was reverted (``ended``),
    and the input itself had no effect."""

    def __init__(self, message: str, trap: str, ended: TrialEnd) -> None:
        super().__init__(ErrorCode.TRAP, message, trap=trap)
        self.ended = ended


def why(trap: Trap) -> str:
    """A trap's message; for ``out_of_fuel``, with what to do about it."""
    if trap.kind == "out_of_fuel":
        return f"{trap} (out_of_fuel: a node with a larger --fuel would allow it)"
    return str(trap)


def check_code(machine: Machine, code: str | None) -> None:
    """``wrong_version`` unless ``machine`` runs ``code`` (None: whatever it runs), the code an
    input was encoded for: its bytes would be read at a type they were not written for."""
    if code is not None and code != machine.code.identity:
        raise NodeError(
            ErrorCode.WRONG_VERSION,
            f"{machine.name} runs {machine.identity[:12]}, the input was encoded for "
            f"{code[:12]}: re-encode it for the running code",
        )


def apply_input(
    machine: Machine, value: Value, fuel: int, state_limit: int | None = MAX_STATE_BYTES
) -> tuple[Value, bool]:
    """Run one input on ``machine`` with a budget of ``fuel`` (raises :class:`Trap`, changing
    nothing); keeps it for dry runs and counts it against a trial. Returns the output and
    whether a trial just became permanent. Recovery replays the log through this too, with no
    fuel or state limit: what was accepted once is accepted again."""
    before = machine.state
    state, output = machine.code.stepper(fuel, state_limit)(value, before)
    machine.recent.append((machine.inputs, before, value, output))
    machine.state = state
    machine.inputs += 1
    trial = machine.trial
    if trial is None:
        return output, False
    trial.inputs.append(value)
    if trial.left is None:
        return output, False
    trial.left -= 1
    if trial.left > 0:
        return output, False
    machine.trial = None
    return output, True


def revert_trial(machine: Machine, now: float, fuel: int, by: str | None = None) -> TrialEnd:
    """Take the machine's trial upgrade back (:mod:`hotswap.node.rehearse`), replaying its
    inputs on the old code with ``fuel`` each; ``by``: who asked (None: the node itself)."""
    trial = machine.trial
    assert trial is not None
    machine.trial = None
    # a trial on another input type (refused now, but a store may hold one): none replays
    same = _input_type(machine.code) == _input_type(trial.old_code)
    code, state, inputs, ended = revert(trial, fuel, replay=same)
    machine.code, machine.state, machine.inputs = code, state, inputs
    machine.history.append(Change(code.identity, HistoryKind.UPGRADE, inputs, now, by=by))
    machine.recent.clear()
    machine.keyed.code_changed()
    return ended


@dataclass(frozen=True, slots=True)
class Swap:
    """An upgrade checked completely and its state migrated, ready to install (the pure part
    of an upgrade); after :meth:`Registry.install`, what the store needs to log it."""

    machine: str
    old: str
    new: LoadedModule
    migration: LoadedModule
    state: Value
    change: Change
    notes: tuple[str, ...] = ()


def load_machine_code(data: bytes) -> LoadedModule:
    """Load module bytes that must define a machine; :class:`NodeError` ``bad_module`` if not."""
    try:
        loaded = load_module(data)
    except BytecodeError as e:
        raise NodeError(ErrorCode.BAD_MODULE, f"module rejected: {e}") from None
    if loaded.machine is None:
        raise NodeError(ErrorCode.BAD_MODULE, f"module {loaded.identity[:12]} is not a machine")
    return loaded


def _check_version(machine: Machine, expected: str, generation: int | None) -> None:
    """The checks of an upgrade that need no module: no trial in progress, the expected code
    running, at the generation named (if one is). ``wrong_version`` (a code every protocol
    version allows) with the running identity and generation, or nothing."""
    name, running = machine.name, machine.identity
    if machine.trial is not None:
        why = f"{name} runs {running[:12]} on trial: confirm or revert the trial upgrade first"
    elif running != expected:
        why = f"{VERSION_MISMATCH} (running {running[:12]}, expected {expected[:12]})"
    elif generation is not None and generation != machine.generation:
        why = (
            f"{VERSION_MISMATCH} ({name} is at generation {machine.generation}, the upgrade "
            f"was made for generation {generation}: its code has changed since, so this may "
            "be an old upgrade replayed; make it again for the running code)"
        )
    else:
        return
    raise UpgradeRejected(
        ErrorCode.WRONG_VERSION, why, running=running, generation=machine.generation
    )


def _refuse_with_instances(machine: Machine, what: str) -> None:
    """Trials and dry runs replay one state's recent inputs: they are refused on a machine
    with keyed instances (docs/upgrades.md, "Keyed instances")."""
    count = machine.keyed.total
    if count:
        raise UpgradeRejected(
            ErrorCode.BAD_REQUEST,
            f"{machine.name} has {count} keyed instance(s): {what} rehearses one state, so "
            "it is refused on a machine with keyed instances; upgrade with check_all=True "
            "(hotswap upgrade --check-all) to run the migration on every instance first, "
            "changing nothing if it traps on any",
        )


def _input_type(code: LoadedModule) -> Type:
    sig = code.machine
    assert sig is not None  # the code of a machine
    return sig.input


def _refuse_other_input(machine: Machine, new: LoadedModule) -> None:
    """A revert replays a trial's inputs through the old code: a trial upgrade keeps the
    machine's input type (docs/upgrades.md, "Trial upgrades")."""
    old, now = _input_type(machine.code), _input_type(new)
    if old != now:
        raise UpgradeRejected(
            ErrorCode.BAD_REQUEST,
            f"a trial upgrade keeps the input type, as a revert replays the trial's inputs "
            f"through the old code: {machine.name} takes {old}, {new.identity[:12]} takes {now}; "
            "upgrade without a trial, or rehearse the upgrade with a dry run (its outputs on "
            "the recent inputs) first",
        )


class Registry:
    """The machines of one node, by name; every run of their code has ``fuel``."""

    def __init__(self, fuel: int = DEFAULT_FUEL, max_input: int = DEFAULT_MAX_INPUT) -> None:
        self.machines: dict[str, Machine] = {}
        self.fuel = check_fuel(fuel)
        #: The most bytes an input may have (``--max-input``), checked before it is decoded.
        self.max_input = max_input

    def _check_names_are_its_own(self, code: LoadedModule, machine: str) -> None:
        """Refuse code for ``machine`` whose identity another machine runs with other custom
        sections (other names): an identity covers the code, not the names, and the node
        keeps one module per identity, so one of them would be shown, converted and checked by
        the other's names. (One machine may change its own names: the node then keeps the
        new ones.)"""
        for other in self.machines.values():
            if other.name == machine:
                continue
            if other.code.identity == code.identity and other.code.data != code.data:
                raise NodeError(
                    ErrorCode.BAD_MODULE,
                    f"module {code.identity[:12]} has the same code as machine {other.name!r} "
                    "runs, with other names: the node keeps one set of names per code, so one "
                    "machine would be shown and checked by the other's; make their code "
                    "differ, or their names the same",
                )

    def get(self, name: str) -> Machine:
        machine = self.machines.get(name)
        if machine is None:
            known = ", ".join(sorted(self.machines)) or "none"
            raise NodeError(ErrorCode.UNKNOWN_MACHINE, f"no machine {name!r} (known: {known})")
        return machine

    def start(
        self,
        name: str,
        code: LoadedModule,
        now: float | None = None,
        *,
        by: str | None = None,
        signer: str | None = None,
    ) -> Machine:
        """Add a machine in its initial state (``by``, ``signer``: who, :class:`Change`)."""
        if name in self.machines:
            raise NodeError(ErrorCode.BAD_REQUEST, f"machine {name!r} already exists")
        if code.machine is None:
            raise NodeError(ErrorCode.BAD_MODULE, f"module {code.identity[:12]} is not a machine")
        self._check_names_are_its_own(code, name)
        try:
            state = code.init(fuel=self.fuel)
        except Trap as e:
            raise NodeError(
                ErrorCode.TRAP, f"init of {name!r} trapped: {why(e)}", trap=e.kind
            ) from None
        when = time.time() if now is None else now
        change = Change(code.identity, HistoryKind.START, 0, when, by=by, signer=signer)
        machine = Machine(name, code, state, 0, [change])
        self.machines[name] = machine
        return machine

    def restore(self, machine: Machine) -> None:
        """Put back a machine recovered from the store."""
        self.machines[machine.name] = machine

    def decode_input(self, machine: Machine, data: bytes) -> Value:
        if len(data) > self.max_input:
            raise NodeError(
                ErrorCode.BAD_INPUT,
                f"an input of {len(data)} bytes is more than this node takes ({self.max_input}; "
                "hotswap node --max-input BYTES): send it in parts, or raise the limit",
            )
        try:
            return machine.code.codecs.input(data)
        except BytecodeError as e:
            raise NodeError(
                ErrorCode.BAD_INPUT, f"input is not a value of {machine.name}'s input type: {e}"
            ) from None

    def step(self, name: str, data: bytes, code: str | None = None) -> Stepped:
        """One input (canonical bytes); on a trap the state is unchanged. With ``code``, the
        identity the input was encoded for, only if that is the code running (else
        ``wrong_version``: its bytes would be read at a type they were not written for)."""
        machine = self.running(name, code)
        return self.step_value(machine, self.decode_input(machine, data))

    def running(self, name: str, code: str | None = None) -> Machine:
        """Machine ``name``, if it runs ``code`` (None: whatever it runs); else the error.
        Every input asks: the usual answer is found with no further call."""
        machine = self.machines.get(name)
        if machine is None or (code is not None and code != machine.code.identity):
            machine = self.get(name)  # raises: no such machine
            check_code(machine, code)  # raises: wrong_version
        return machine

    def step_value(self, machine: Machine, value: Value) -> Stepped:
        identity = machine.code.identity
        output, confirmed = self.apply(machine, value)
        return Stepped(output, machine.state, identity, confirmed)

    def apply(self, machine: Machine, value: Value) -> tuple[Value, bool]:
        """:meth:`step_value`'s output and whether a trial just became permanent; a trap
        raises NodeError (``trap``), or TrialReverted on a trial's code."""
        try:
            return apply_input(machine, value, self.fuel)
        except Trap as e:
            identity = machine.code.identity
            if machine.trial is None:
                raise NodeError(
                    ErrorCode.TRAP, f"{machine.name}: {why(e)}; state unchanged", trap=e.kind
                ) from None
            ended = revert_trial(machine, time.time(), self.fuel)
            raise TrialReverted(
                f"{machine.name}: {why(e)} on the trial code {identity[:12]}; the trial upgrade "
                f"was reverted to {ended.identity[:12]}: of the trial's inputs, {ended.replayed} "
                f"were replayed on that code and {ended.skipped} skipped (they trap there); "
                "this input had no effect",
                e.kind,
                ended,
            ) from None

    def confirm(self, name: str) -> TrialEnd:
        """Make the trial upgrade of ``name`` permanent now."""
        machine = self.get(name)
        if machine.trial is None:
            raise NodeError(ErrorCode.BAD_REQUEST, f"{name} has no trial upgrade to confirm")
        machine.trial = None
        return TrialEnd(False, machine.identity)

    def revert(self, name: str, now: float | None = None, *, by: str | None = None) -> TrialEnd:
        """Take the trial upgrade of ``name`` back: old code, the exact pre-upgrade state, and
        the trial's inputs replayed through the old code (``by``: who asked)."""
        machine = self.get(name)
        if machine.trial is None:
            raise NodeError(ErrorCode.BAD_REQUEST, f"{name} has no trial upgrade to revert")
        return revert_trial(machine, time.time() if now is None else now, self.fuel, by)

    def dry_run(
        self,
        name: str,
        expected: str,
        module: bytes,
        migration: bytes,
        inputs: int = RECENT,
        *,
        rename: bool = False,
        generation: int | None = None,
    ) -> DryRunResult:
        """What the upgrade would do to the last ``inputs`` inputs, changing nothing: every
        check of a real upgrade first (a dry run of an upgrade the node would refuse is
        refused the same way), then :func:`hotswap.node.rehearse.dry_run`."""
        swap = self.prepare(name, expected, module, migration, generation=generation, rename=rename)
        _refuse_with_instances(self.get(name), "a dry run")  # after the upgrade's own checks
        machine = self.get(name)
        recent = [Recent._make(r) for r in list(machine.recent)[-inputs:]] if inputs > 0 else []
        return dry_run(machine.code, swap.new, swap.migration, recent, self.fuel)

    def upgrade(
        self,
        name: str,
        expected: str,
        module: bytes,
        migration: bytes,
        now: float | None = None,
        *,
        generation: int | None = None,
        rename: bool = False,
        trial: int = 0,
        trial_seconds: int = 0,
        check: Callable[[Swap], None] | None = None,
        by: str | None = None,
        signer: str | None = None,
    ) -> Swap:
        """Check everything, migrate the state, swap; :class:`UpgradeRejected` changes nothing.
        With ``trial`` or ``trial_seconds``, the upgrade is provisional for that many inputs or
        seconds, whichever ends first. ``check``, given the prepared swap, may refuse it too
        (``--check-all``: the migration on every keyed instance)."""
        if not (0 <= trial <= MAX_TRIAL_INPUTS and 0 <= trial_seconds <= MAX_TRIAL_SECONDS):
            raise UpgradeRejected(
                ErrorCode.BAD_REQUEST,
                f"a trial lasts 0 to {MAX_TRIAL_INPUTS} inputs and 0 to {MAX_TRIAL_SECONDS} "
                f"seconds, not {trial} inputs and {trial_seconds} seconds",
            )
        prepared = self.prepare(
            name,
            expected,
            module,
            migration,
            now,
            generation=generation,
            rename=rename,
            by=by,
            signer=signer,
        )
        if trial or trial_seconds:  # after the upgrade's own checks (wrong_version first)
            _refuse_with_instances(self.get(name), "a trial upgrade")
            _refuse_other_input(self.get(name), prepared.new)
        if check is not None:
            check(prepared)
        until = None
        if trial_seconds > 0:
            until = (time.time() if now is None else now) + trial_seconds
        return self.install(prepared, trial, until)

    def would_load(self, name: str, expected: str, generation: int | None = None) -> bool:
        """Whether an upgrade of ``name`` for ``expected`` passes the checks :meth:`prepare`
        makes before loading any module (machine, trial, identity, generation)."""
        machine = self.machines.get(name)
        if machine is None:
            return False
        try:
            _check_version(machine, expected, generation)
        except UpgradeRejected:
            return False
        return True

    def rehearse_names(self, name: str, module: bytes, migration: bytes) -> None:
        """On the worker thread that loaded an upgrade's modules: what :meth:`prepare` will
        ask of their names (decoding them, comparing them with the running code's), worked
        out now and kept with the modules, so that the event loop finds it done. Changes
        nothing; a problem is for ``prepare`` to report."""
        machine = self.machines.get(name)
        if machine is None:
            return
        try:
            new, migrate = load_module(module), load_module(migration)
        except BytecodeError:
            return
        migration_name_differences(machine.code, new, migrate)
        nominal_notes(machine.code, new)

    def expire_trials(self, now: float) -> list[tuple[str, TrialEnd]]:
        """Confirm every trial whose time is up; the machines and how they ended."""
        ended = []
        for name, machine in self.machines.items():
            trial = machine.trial
            if trial is not None and trial.until is not None and trial.until <= now:
                machine.trial = None
                ended.append((name, TrialEnd(False, machine.identity)))
        return ended

    def next_deadline(self) -> float | None:
        """When the earliest time-bounded trial ends, if any does."""
        times = [m.trial.until for m in self.machines.values() if m.trial and m.trial.until]
        return min(times, default=None)

    def release(
        self,
        items: list[tuple[str, str, bytes, bytes]],
        now: float | None = None,
        *,
        by: str | None = None,
        signer: str | None = None,
    ) -> list[Swap]:
        """Upgrade several machines, ``(name, expected, module, migration)`` each: all are
        checked and migrated first, then all swap, so a failure in any changes nothing."""
        names = [name for name, *_ in items]
        if not items or len(set(names)) != len(names):
            raise UpgradeRejected(
                ErrorCode.BAD_REQUEST, "a release names one or more machines, each once"
            )
        for name, expected, *_ in items:  # every item's version before any item's modules
            try:
                _check_version(self.get(name), expected, None)
            except NodeError as e:
                raise UpgradeRejected(
                    e.code, f"{name}: {e}", running=e.running, generation=e.generation, trap=e.trap
                ) from None
        prepared = []
        for name, expected, module, migration in items:
            try:
                prepared.append(
                    self.prepare(name, expected, module, migration, now, by=by, signer=signer)
                )
            except NodeError as e:  # name the machine: a release spans several
                raise UpgradeRejected(
                    e.code, f"{name}: {e}", running=e.running, generation=e.generation, trap=e.trap
                ) from None
        return [self.install(p) for p in prepared]

    def prepare(
        self,
        name: str,
        expected: str,
        module: bytes,
        migration: bytes,
        now: float | None = None,
        *,
        generation: int | None = None,
        rename: bool = False,
        by: str | None = None,
        signer: str | None = None,
    ) -> Swap:
        """Every check of an upgrade and the migrated state, without touching the machine.

        ``generation``, when given, must be the machine's: an upgrade made for A at generation
        0 is refused after A -> B -> A (generation 2), where it would otherwise apply again.
        The migration's names must be the running and new states' names unless ``rename``."""
        machine = self.get(name)
        # The version first: an upgrade for other code is refused before its modules are
        # decoded, verified or compiled, work a stranger could otherwise make the node do.
        _check_version(machine, expected, generation)
        new, migrate, renamed = self._checked_modules(machine, module, migration, rename)
        try:
            state = migrate.migrate(machine.state, fuel=self.fuel)
        except Trap as e:
            raise UpgradeRejected(
                ErrorCode.MIGRATION_TRAP, f"migration trapped: {why(e)}", trap=e.kind
            ) from None
        change = Change(
            new.identity,
            HistoryKind.UPGRADE,
            machine.inputs,
            time.time() if now is None else now,
            migrate.identity,
            by,
            signer,
        )
        notes = nominal_notes(machine.code, new) + tuple(f"renamed: {r}" for r in renamed)
        return Swap(name, machine.identity, new, migrate, state, change, notes)

    def would_store(
        self,
        name: str,
        expected: str,
        module: bytes,
        migration: bytes,
        *,
        generation: int | None = None,
        rename: bool = False,
    ) -> bool:
        """Whether an upgrade of ``name`` passes every check of :meth:`prepare` but the run of
        its migration (which needs the state): on the worker thread that loaded its modules,
        whether to write them to the store before it is applied (``Service.stage``).
        Changes nothing."""
        machine = self.machines.get(name)
        if machine is None:
            return False
        try:
            _check_version(machine, expected, generation)
            self._checked_modules(machine, module, migration, rename)
        except NodeError:
            return False
        return True

    def _checked_modules(
        self, machine: Machine, module: bytes, migration: bytes, rename: bool
    ) -> tuple[LoadedModule, LoadedModule, list[str]]:
        """The checks of an upgrade's modules against ``machine``: the new code and the
        migration, loaded, and the renames the migration makes (allowed with ``rename``)."""
        name = machine.name
        try:
            new = load_module(module)
        except BytecodeError as e:
            raise UpgradeRejected(ErrorCode.BAD_MODULE, f"new module rejected: {e}") from None
        try:
            migrate = load_module(migration)
        except BytecodeError as e:
            raise UpgradeRejected(ErrorCode.BAD_MODULE, f"migration rejected: {e}") from None
        if new.machine is None:
            raise UpgradeRejected(ErrorCode.BAD_MODULE, "the new module is not a machine")
        try:
            self._check_names_are_its_own(new, name)
        except NodeError as e:
            raise UpgradeRejected(e.code, str(e)) from None
        if migrate.migration is None:
            raise UpgradeRejected(ErrorCode.BAD_MODULE, "the migration module is not a migration")
        running = machine.code.machine
        assert running is not None
        if (
            migrate.migration.old is not running.state
            or migrate.migration.new is not new.machine.state
        ):
            raise UpgradeRejected(
                ErrorCode.ILL_TYPED_UPGRADE,
                f"migration is {migrate.migration.old} -> {migrate.migration.new}, "
                f"expected {running.state} -> {new.machine.state}",
            )
        renamed = migration_name_differences(machine.code, new, migrate)
        if renamed and not rename:
            raise UpgradeRejected(
                ErrorCode.ILL_TYPED_UPGRADE,
                f"the migration's names do not match the states': {'; '.join(renamed)}. "
                "It may be declared for other machines; if this is a deliberate rename, "
                "upgrade with rename=True (hotswap upgrade --rename)",
            )
        return new, migrate, renamed

    def install(self, prepared: Swap, trial: int = 0, until: float | None = None) -> Swap:
        """Install a prepared swap: nothing here can fail. With ``trial`` (a number of inputs)
        or ``until`` (a time), provisionally until the first of them (:mod:`.rehearse`)."""
        machine = self.machines[prepared.machine]
        if trial > 0 or until is not None:
            left = trial if trial > 0 else None
            machine.trial = Trial(machine.code, machine.state, machine.inputs, left, until)
        machine.code, machine.state = prepared.new, prepared.state
        machine.history.append(prepared.change)
        machine.recent.clear()
        machine.keyed.code_changed()
        return prepared
