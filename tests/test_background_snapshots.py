"""Snapshots of large states are encoded in the background (store.BACKGROUND_SNAPSHOT_BYTES):
the row is written by a later commit, as of the log entry the state was taken at, and
recovery gives what it gives without them, whenever the encoding ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from counter_runs import run_counter, upgrade_counter
from hotswap.cam import values
from hotswap.cam.loaded import load
from hotswap.cam.values import decode_value
from hotswap.examples import handbuilt
from hotswap.lang.evaluate import Value
from hotswap.lang.persistent import OMap, bulk, make_list
from hotswap.lang.types import INT, STR, ListT, MapT, Prod, Type
from hotswap.node import store as store_module
from hotswap.node.registry import Machine, Registry
from hotswap.node.store import Store

INCR = b"\x00"


class _Gate:
    """Holds every background encoding until :meth:`open` (the store's encoder, replaced)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.event = threading.Event()
        real = values.value_encoder

        def held(t: Type, yielding: bool = False) -> Callable[[Value], bytes]:
            encode = real(t, yielding)

            def wait_then_encode(v: Value) -> bytes:
                if threading.current_thread() is not threading.main_thread():
                    assert self.event.wait(30), "the test never opened the gate"
                return encode(v)

            return wait_then_encode

        monkeypatch.setattr(store_module, "value_encoder", held)

    def open(self) -> None:
        self.event.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Gate]:
    g = _Gate(monkeypatch)
    yield g
    g.open()  # never leave the encoder's thread waiting


class _Counter:
    """The counter on a store that snapshots every ``every`` inputs, each snapshot after the
    first in the background; a commit after each input."""

    def __init__(self, path: Path, every: int) -> None:
        self.store = Store(path, snapshot_every=every)
        self.store.background_snapshot_bytes = 0
        self.registry = Registry()
        self.machine = self.registry.start("counter", load(handbuilt.counter_module()))
        self.store.log_start(self.machine)

    def inputs(self, n: int) -> None:
        for _ in range(n):
            identity = self.registry.step("counter", INCR).identity
            self.store.log_input(self.machine, INCR, identity)
            self.store.commit(self.registry.machines)


def _snapshot_row(store: Store) -> tuple[int, int, int]:
    """(seq, inputs, count) of the counter's snapshot row."""
    seq, identity, state, inputs = store.db.execute(
        "SELECT seq, identity, state, inputs FROM snapshots WHERE machine = 'counter'"
    ).fetchone()
    code = store.loaded(identity)
    assert code.machine is not None
    count = decode_value(state, code.machine.state)
    assert isinstance(count, int)
    return seq, inputs, count


def test_a_background_snapshot_is_written_as_of_the_entry_it_was_taken_at(
    tmp_path: Path, gate: _Gate
) -> None:
    path = tmp_path / "node.sqlite3"
    counter = _Counter(path, 20)
    store, inputs = counter.store, counter.inputs
    start = _snapshot_row(store)

    inputs(20)  # the 20th makes the snapshot due: its encoding waits at the gate
    encoding = store._encoding["counter"]
    assert (encoding.inputs, encoding.seq) == (20, store._machine_seq["counter"])
    inputs(10)  # commits go on; the row is the start's until the encoding ends
    assert _snapshot_row(store) == start
    assert store._encoding["counter"] is encoding  # one encoding at a time
    gate.open()
    encoding.future.result(30)
    inputs(1)  # the next commit writes it
    assert _snapshot_row(store) == (encoding.seq, 20, 20)
    assert "counter" not in store._encoding
    store.db.close()  # killed: the last 11 inputs are replayed from the log

    again = Store(path, snapshot_every=20)
    (recovered,) = again.recover().machines
    assert (recovered.state, recovered.inputs) == (31, 31)
    again.close()


def test_an_encoding_overtaken_by_a_clean_stop_is_dropped(tmp_path: Path, gate: _Gate) -> None:
    counter = _Counter(tmp_path / "node.sqlite3", 10)
    store, registry = counter.store, counter.registry
    counter.inputs(15)
    encoding = store._encoding["counter"]
    store.checkpoint(registry.machines)  # the clean stop's snapshot, taken on the loop
    assert _snapshot_row(store) == (store._machine_seq["counter"], 15, 15)
    gate.open()
    encoding.future.result(30)
    store.commit(registry.machines)
    assert _snapshot_row(store) == (store._machine_seq["counter"], 15, 15)  # not the older one
    store.close()


def test_an_upgrade_while_encoding_leaves_the_snapshot_on_the_code_it_was_taken_on(
    tmp_path: Path, gate: _Gate
) -> None:
    path = tmp_path / "node.sqlite3"
    counter = _Counter(path, 10)
    store, registry, machine = counter.store, counter.registry, counter.machine
    first = machine.identity
    counter.inputs(10)
    encoding = store._encoding["counter"]
    upgrade_counter(registry, store, machine)
    counter.inputs(3)
    gate.open()
    encoding.future.result(30)
    counter.inputs(1)
    row = store.db.execute("SELECT seq, identity FROM snapshots").fetchone()
    assert row == (encoding.seq, first)
    expected = (machine.state, machine.inputs)
    store.db.close()

    again = Store(path, snapshot_every=10)
    (recovered,) = again.recover().machines
    assert (recovered.state, recovered.inputs) == expected
    again.close()


@pytest.mark.parametrize("upgrade_at", [-1, 10, 333])
def test_recovery_is_the_same_with_every_snapshot_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upgrade_at: int
) -> None:
    """1,000 inputs, snapshots every 50, a commit every 7, the log compacted behind them,
    killed: the same state and count whether snapshots were encoded on the loop or on the
    thread (wherever its encodings ended relative to the commits)."""

    def run(name: str) -> Machine:
        registry = run_counter(
            tmp_path / name, 1000, upgrade_at=upgrade_at, killed=True, snapshot_every=50, retain=30
        )
        return registry.get("counter")

    on_loop = run("loop.db")
    monkeypatch.setattr(store_module, "BACKGROUND_SNAPSHOT_BYTES", 0)
    behind = run("thread.db")
    assert (behind.state, behind.inputs) == (on_loop.state, on_loop.inputs)
    for name in ("loop.db", "thread.db"):
        store = Store(tmp_path / name, retain=30)
        (snapshotted,) = store.db.execute("SELECT inputs FROM snapshots").fetchone()
        assert snapshotted > 0  # a snapshot after the start was written (on the thread, too)
        (recovered,) = store.recover().machines
        assert (recovered.state, recovered.inputs) == (on_loop.state, on_loop.inputs)
        store.close()


def test_the_yielding_encoder_writes_the_same_bytes() -> None:
    """The background snapshot's encoder (``yielding``) pauses inside large lists and maps, and
    writes what the loop's encoder writes, nested collections included."""
    t = MapT(INT, Prod(ListT(INT), STR))
    with bulk():
        value = OMap((k, (make_list(range(k % 700)), f"entry {k}")) for k in range(1500))
    data = values.value_encoder(t)(value)
    assert values.value_encoder(t, yielding=True)(value) == data
    assert decode_value(data, t) == value


def test_an_idle_store_writes_a_finished_encoding_at_its_next_commit(
    tmp_path: Path, gate: _Gate
) -> None:
    """No input after the one that made the snapshot due: a commit with nothing else to write
    (the server's, once a second, when ``snapshot_ready``) writes the row."""
    counter = _Counter(tmp_path / "node.sqlite3", 10)
    store, registry = counter.store, counter.registry
    counter.inputs(10)
    encoding = store._encoding["counter"]
    assert not store.snapshot_ready
    store.commit(registry.machines)  # nothing to write yet: the encoding waits at the gate
    assert _snapshot_row(store)[1] == 0
    gate.open()
    encoding.future.result(30)
    assert store.snapshot_ready
    store.commit(registry.machines)  # no input since: the row is written all the same
    assert _snapshot_row(store) == (encoding.seq, 10, 10)
    assert not store.snapshot_ready
    store.close()
