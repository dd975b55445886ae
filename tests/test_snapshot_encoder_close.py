"""Closing the store stops a snapshot being encoded in the background.

``Store.close()`` cancelled the encodings not yet started and forgot the running one, but
that one ran on to its end: a thread encoding a large state after its store was closed (up
to about 20 s for a million map entries, by the store's own figures), which the process then
waited for on its way out (the executor's threads are joined at exit), and which a
restarted in-process node (``MemoryNode.reopen``) shared the interpreter with during its
recovery. It now stops at its next pause."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from cli_machines import grow
from hotswap.cam.encoding import sleb
from hotswap.node.registry import Registry
from hotswap.node.store import Store


def test_close_stops_the_background_encoding_at_its_next_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, go = threading.Event(), threading.Event()
    after: list[float] = []  # the encoder's pauses once the store is closed

    def sleep(seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():
            return
        if not started.is_set():
            started.set()
            assert go.wait(30), "the test never let the encoder go on"
        elif go.is_set():
            after.append(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    store = Store(tmp_path / "node.sqlite3", snapshot_every=1)
    store.background_snapshot_bytes = 0
    registry = Registry()
    machine = registry.start("grow", grow.loaded)
    store.log_start(machine)
    data = sleb(20_000)  # 20,000 entries: about 80 pauses to encode them
    store.log_input(machine, data, registry.step("grow", data).identity)
    store.commit(registry.machines)  # the snapshot is due: encoded on the store's thread
    encoder = store._encoder
    assert encoder is not None
    assert started.wait(30)  # at its first pause
    store.close()
    go.set()
    encoder.shutdown(wait=True)  # the thread has ended
    assert len(after) <= 1  # it stopped at the pause after close, not at the end
