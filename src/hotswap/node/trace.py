"""The node's trace: what it prints after each input and upgrade, as the seed's node did.

    Output:    L Unit
    New state: Int 1

Modes: ``seed`` (the seed's value syntax), ``names`` (Python names, when the module carries
them; the seed syntax otherwise), ``off``. An upgrade whose types are structurally equal but
named differently (``Incr | Count`` to ``Count | Incr``) adds ``Note:`` lines.

"Upgrade" here is a ``Swap`` the registry installed (or refused).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Literal, TextIO

from hotswap.cam.loaded import LoadedModule
from hotswap.errors import HotswapError
from hotswap.lang.evaluate import Value
from hotswap.lang.types import Type
from hotswap.lang.values import render
from hotswap.names.display import render_by_name
from hotswap.node.registry import VERSION_MISMATCH
from hotswap.node.rehearse import TrialEnd

TraceMode = Literal["seed", "names", "off"]


class Trace:
    """Prints inputs' outputs and states, upgrades and rejections."""

    def __init__(self, mode: TraceMode = "seed", out: TextIO | None = None) -> None:
        self.mode = mode
        self.out = out if out is not None else sys.stdout
        #: Why the trace stopped, if writing it failed (a closed pipe, a full disk).
        self.broken: str | None = None

    @property
    def enabled(self) -> bool:
        return self.mode != "off" and self.broken is None

    def _write(self, text: str, flush: bool = False) -> None:
        """Write, or give the trace up: it is diagnostics, and a node whose output pipe has
        closed must keep serving (an exception here would drop replies of committed work)."""
        if self.broken is not None:
            return
        try:
            self.out.write(text)
            if flush:
                self.out.flush()
        except (OSError, ValueError) as e:  # ValueError: the stream was closed
            self.broken = str(e) or type(e).__name__
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"hotswap node: trace stopped: {self.broken}\n")

    def _render(self, value: Value, t: Type, role: str, code: LoadedModule) -> str:
        if self.mode == "names":
            try:
                return render_by_name(value, role, code)
            except HotswapError:  # no usable names in this module: fall back to the seed syntax
                return render(value, t)
        return render(value, t)

    def step(self, code: LoadedModule, output: Value, state: Value) -> None:
        if not self.enabled:
            return
        sig = code.machine
        assert sig is not None
        self._write(
            f"Output:    {self._render(output, sig.output, 'output', code)}\n"
            f"New state: {self._render(state, sig.state, 'state', code)}\n\n"
        )

    def upgraded(self, notes: tuple[str, ...] = (), trial: int = 0, seconds: int = 0) -> None:
        if self.enabled:
            head = "Upgrade successful!\n"
            if trial or seconds:
                bounds = [f"{trial} input(s)"] * bool(trial) + [f"{seconds} s"] * bool(seconds)
                head = f"Trial upgrade successful: provisional for {' or '.join(bounds)}\n"
            lines = [head, *(f"Note: {note}\n" for note in notes), "\n"]
            self._write("".join(lines))

    def trial_ended(self, machine: str, ended: TrialEnd) -> None:
        """A trial upgrade confirmed, or reverted with the old code replaying its inputs."""
        if not self.enabled:
            return
        if ended.reverted:
            self._write(
                f"Trial of {machine} reverted: back on {ended.identity[:12]}, "
                f"{ended.replayed} input(s) replayed, {ended.skipped} skipped\n\n"
            )
        else:
            self._write(f"Trial of {machine} confirmed: {ended.identity[:12]} is permanent\n\n")

    def released(self, machines: list[tuple[str, tuple[str, ...]]]) -> None:
        """A release: which machines swapped together, and the notes on each."""
        if self.enabled:
            names = ", ".join(name for name, _ in machines)
            notes = [f"Note: {name}: {note}\n" for name, ns in machines for note in ns]
            self._write("".join([f"Release successful! {names}\n", *notes, "\n"]))

    def rejected(self, code: str, reason: str) -> None:
        if not self.enabled:
            return
        if code == "wrong_version":
            self._write(f"{VERSION_MISMATCH}\n\n")
        else:
            self._write(f"Upgrade rejected ({code}): {reason}\n\n")

    def note(self, line: str) -> None:
        """A line of the node's own (start, recovery, listening): printed in every mode."""
        self._write(f"{line}\n", flush=True)

    def flush(self) -> None:
        if self.enabled:
            self._write("", flush=True)
