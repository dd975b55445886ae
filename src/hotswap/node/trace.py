"""The node's trace: what it prints after each input and upgrade, as the seed's node did.

    Output:    L Unit
    New state: Int 1

Modes: ``seed`` (the seed's value syntax), ``names`` (Python names, when the module carries
them; the seed syntax otherwise), ``off``. An upgrade whose types are structurally equal but
named differently (``Incr | Count`` to ``Count | Incr``) adds ``Note:`` lines.

A value is shown in at most :data:`SHOWN` characters, then `` ... (cut at 200 characters: a
map of 1,000,000 entries)`` (the largest collection or string it had to cut) or `` ...
(12,345 more characters)`` (a long value with no collection to cut). Showing costs what the
part shown costs, whatever the value's size: the value is first cut down (:func:`clip`) to
what its first :data:`SHOWN` characters can show, and only that is rendered.

With ``background=True`` (the ``hotswap node`` command) the text is written to the output's
file descriptor by a thread of its own, so a slow reader never blocks the node's event loop:
when more than :data:`BACKLOG` characters wait, the trace of inputs and upgrades is dropped
(and the count of entries dropped printed once the output catches up); the node's own notes
(start, recovery, listening, stopping) are never dropped.

"Upgrade" here is a ``Swap`` the registry installed (or refused).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import deque
from typing import Literal, TextIO

from hotswap.cam.loaded import LoadedModule
from hotswap.errors import HotswapError
from hotswap.lang.evaluate import Value
from hotswap.lang.types import Type, is_v1_type
from hotswap.lang.values import render
from hotswap.names.clip import SHOWN, clip, shorten
from hotswap.names.display import render_by_name
from hotswap.node.registry import VERSION_MISMATCH
from hotswap.node.rehearse import TrialEnd

TraceMode = Literal["seed", "names", "off"]

__all__ = ["BACKLOG", "SHOWN", "Trace", "TraceMode", "clip", "shorten"]

#: In the background, the characters that may wait to be written before the trace of inputs
#: and upgrades is dropped.
BACKLOG = 1 << 20


class _Writer:
    """Writes text to a file descriptor from a thread of its own; see the module's docstring."""

    def __init__(self, fd: int, encoding: str, on_error: threading.Event) -> None:
        self.fd = fd
        self.encoding = encoding
        self.failed = on_error
        self.error: str | None = None
        self._queue: deque[str] = deque()
        self._waiting = 0  # characters queued
        self._dropped = 0  # entries dropped since the last write
        self._closed = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="hotswap-trace", daemon=True)
        self._thread.start()

    def put(self, text: str, keep: bool) -> None:
        """Queue ``text``; unless ``keep``, drop it when the backlog is full."""
        with self._ready:
            if not keep and self._waiting + len(text) > BACKLOG:
                self._dropped += 1
                return
            self._queue.append(text)
            self._waiting += len(text)
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                chunks = list(self._queue)
                self._queue.clear()
                self._waiting = 0
                dropped, self._dropped = self._dropped, 0
            if dropped:  # said where they were missing, once the output took the rest
                chunks.append(f"(trace: {dropped:,} entries dropped: the output was too slow)\n")
            data = memoryview("".join(chunks).encode(self.encoding, "backslashreplace"))
            try:
                while data:
                    data = data[os.write(self.fd, data) :]
            except OSError as e:
                self.error = str(e) or type(e).__name__
                self.failed.set()
                return

    def close(self, timeout: float) -> None:
        """Write what is queued (waiting at most ``timeout`` seconds), then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)


class Trace:
    """Prints inputs' outputs and states, upgrades and rejections. With ``background``, from a
    thread that writes to ``out``'s file descriptor (if it has one), so that a slow reader
    never blocks the caller; call :meth:`close` at the end to write what is queued."""

    def __init__(
        self, mode: TraceMode = "seed", out: TextIO | None = None, *, background: bool = False
    ) -> None:
        self.mode = mode
        self.out = out if out is not None else sys.stdout
        self._broken: str | None = None
        self._failed = threading.Event()  # the writer thread could not write
        self._writer: _Writer | None = None
        self._flat: dict[Type, bool] = {}  # types with no strings, lists or maps
        if background:
            try:
                fd = self.out.fileno()
            except (OSError, ValueError):  # io.UnsupportedOperation: no descriptor (StringIO)
                return
            self._write("", flush=True)  # what was written before goes first
            encoding = getattr(self.out, "encoding", None) or "utf-8"
            self._writer = _Writer(fd, encoding, self._failed)

    @property
    def broken(self) -> str | None:
        """Why the trace stopped, if writing it failed (a closed pipe, a full disk)."""
        if self._broken is None and self._failed.is_set():
            assert self._writer is not None
            self._stopped(self._writer.error or "write failed")
        return self._broken

    @property
    def enabled(self) -> bool:
        return self.mode != "off" and self.broken is None

    def _stopped(self, why: str) -> None:
        self._broken = why
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"hotswap node: trace stopped: {why}\n")

    def _write(self, text: str, flush: bool = False) -> None:
        """Write, or give the trace up: it is diagnostics, and a node whose output pipe has
        closed must keep serving (an exception here would drop replies of committed work).
        In the background, ``flush`` marks a line never to drop."""
        if self.broken is not None:
            return
        if self._writer is not None:
            self._writer.put(text, keep=flush)
            return
        try:
            self.out.write(text)
            if flush:
                self.out.flush()
        except (OSError, ValueError) as e:  # ValueError: the stream was closed
            self._stopped(str(e) or type(e).__name__)

    def close(self, timeout: float = 2.0) -> None:
        """Write what the background thread still holds (for at most ``timeout`` seconds)."""
        if self._writer is not None:
            self._writer.close(timeout)

    def _render(self, value: Value, t: Type, role: str, code: LoadedModule) -> str:
        """At most :data:`SHOWN` characters of ``value`` and what was left out."""
        flat = self._flat.get(t)
        if flat is None:
            if len(self._flat) >= 1024:  # types of the codes traced lately, not all ever
                self._flat.clear()
            flat = self._flat[t] = is_v1_type(t)
        cut = ""
        if not flat:  # it may be large: render only what will be shown
            value, cut = clip(value, t)
        if self.mode == "names":
            try:
                return shorten(render_by_name(value, role, code), cut)
            except HotswapError:  # no usable names in this module: fall back to the seed syntax
                pass
        return shorten(render(value, t), cut)

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
        if self.enabled and self._writer is None:
            self._write("", flush=True)
