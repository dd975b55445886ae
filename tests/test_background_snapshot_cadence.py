"""A snapshot written in the background keeps counting what came after it.

The snapshot cadence counts a machine's keyed-instance entries since its (default) snapshot,
so that recovery's scan for the default instance stays short. A snapshot encoded on the
store's thread is written as of the entry it was taken at, but writing it set that count to
0, forgetting the keyed entries logged while it was encoded: the next snapshot came that
many entries late (on a busy keyed machine with a large default state, an encoding lasts
seconds: tens of thousands of entries)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from hotswap.cam.loaded import load
from hotswap.examples import handbuilt
from hotswap.node.registry import Registry
from hotswap.node.store import Store

INCR = b"\x00"


class _HeldEncoder:
    """The store's encoding thread, replaced: an encoding runs when the test says."""

    def __init__(self) -> None:
        self.pending: list[tuple[Future[bytes], Callable[[object], bytes], object]] = []

    def submit(self, fn: Callable[[object], bytes], state: object) -> Future[bytes]:
        future: Future[bytes] = Future()
        self.pending.append((future, fn, state))
        return future

    def finish(self) -> None:
        for future, fn, state in self.pending:
            future.set_result(fn(state))
        self.pending.clear()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.pending.clear()


def _run(path: Path, background: bool) -> bool:
    """10 inputs (a snapshot due), 8 keyed entries of the same machine while it is encoded,
    then 2 inputs: whether a snapshot is due again (10 entries after the first)."""
    store = Store(path, snapshot_every=10, retain=None)
    held = _HeldEncoder()
    store._encoder = held  # type: ignore[assignment]
    if background:
        store.background_snapshot_bytes = 0
    registry = Registry()
    machine = registry.start("counter", load(handbuilt.counter_module()))
    store.log_start(machine)

    def inputs(n: int) -> None:
        for _ in range(n):
            store.log_input(machine, INCR, registry.step("counter", INCR).identity)
            store.commit(registry.machines)

    inputs(10)
    first = store._snapshot_seq["counter"] if not background else store._encoding["counter"].seq
    for i in range(8):  # entries of keyed instances (their checkpoints are not the point)
        store.log_input(machine, INCR, machine.identity, f"key-{i}", 0)
        store.commit(registry.machines)
    held.finish()
    inputs(1)  # writes the background snapshot, as of the 10th input
    assert store._snapshot_seq["counter"] == first
    inputs(1)  # the 10th entry after it
    due = "counter" in store._encoding or store._snapshot_seq["counter"] > first
    store.close()
    return due


def test_keyed_entries_logged_while_encoding_count_toward_the_next_snapshot(
    tmp_path: Path,
) -> None:
    assert _run(tmp_path / "loop.sqlite3", background=False)  # on the loop: due again
    assert _run(tmp_path / "thread.sqlite3", background=True)  # in the background: the same
