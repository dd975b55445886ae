"""The store: what is committed survives; recovery replays onto the right code."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from hotswap.cam.loaded import load
from hotswap.cam.module import encode_module
from hotswap.errors import StoreError
from hotswap.examples import handbuilt
from hotswap.node.registry import Registry
from hotswap.node.store import SCHEMA_VERSION, Store

INCR = b"\x00"


def _run(path: Path, inputs: int, snapshot_every: int, upgrade_at: int | None = None) -> Registry:
    store = Store(path, snapshot_every=snapshot_every)
    registry = Registry()
    machine = registry.start("counter", load(handbuilt.counter_module()))
    store.log_start(machine)
    for i in range(inputs):
        if i == upgrade_at:
            done = registry.upgrade(
                "counter",
                machine.identity,
                encode_module(handbuilt.counter2_module()),
                encode_module(handbuilt.upgrade_state_module()),
            )
            store.log_upgrade(machine, done)
        stepped = registry.step("counter", INCR)
        store.log_input(machine, INCR, stepped.identity)
        if i % 7 == 6:
            store.commit(registry.machines)
    store.commit(registry.machines)
    store.close()
    return registry


@pytest.mark.parametrize("snapshot_every", [1, 5, 1000])
@pytest.mark.parametrize("upgrade_at", [None, 0, 12, 29])
def test_recovery_rebuilds_state_code_and_history(
    tmp_path: Path, snapshot_every: int, upgrade_at: int | None
) -> None:
    """Whatever the snapshot spacing and upgrade position, recovery equals the live run."""
    live = _run(tmp_path / "s.db", 30, snapshot_every, upgrade_at).get("counter")
    store = Store(tmp_path / "s.db")
    recovered = store.recover().machines
    assert len(recovered) == 1
    machine = recovered[0]
    assert (machine.identity, machine.state, machine.inputs) == (
        live.identity,
        live.state,
        live.inputs,
    )
    assert [(c.kind, c.identity, c.seq) for c in machine.history] == [
        (c.kind, c.identity, c.seq) for c in live.history
    ]


def test_uncommitted_inputs_are_not_recovered(tmp_path: Path) -> None:
    """Only what commit() made durable comes back (the node acknowledges after commit)."""
    store = Store(tmp_path / "s.db")
    registry = Registry()
    machine = registry.start("counter", load(handbuilt.counter_module()))
    store.log_start(machine)
    store.commit(registry.machines)
    for _ in range(3):
        store.log_input(machine, INCR, registry.step("counter", INCR).identity)
    store.commit(registry.machines)
    store.log_input(machine, INCR, registry.step("counter", INCR).identity)
    store.db.close()  # the process dies: the fourth input was never committed
    recovered = Store(tmp_path / "s.db").recover().machines[0]
    assert recovered.inputs == 3 and recovered.state == 3


def test_tampered_log_is_reported(tmp_path: Path) -> None:
    """A log entry naming code that is not running is a StoreError, not a wrong state."""
    _run(tmp_path / "s.db", 10, 1000)
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("UPDATE log SET identity = ? WHERE kind = 'input' AND seq = 3", ("f" * 64,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="ran on ffffffffffff"):
        Store(tmp_path / "s.db").recover()


def test_schema_version_is_checked(tmp_path: Path) -> None:
    Store(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema 99"):
        Store(tmp_path / "s.db")


def test_a_second_node_cannot_open_a_store_in_use(tmp_path: Path) -> None:
    """The store is locked for its node: another opener gets a clear error."""
    first = Store(tmp_path / "s.db")
    with pytest.raises(StoreError, match="in use by another node"):
        Store(tmp_path / "s.db")
    first.close()
    Store(tmp_path / "s.db").close()  # free again once the first node is gone


def test_a_release_is_logged_all_or_nothing(tmp_path: Path) -> None:
    """The upgrades of a release share one transaction: a crash before its commit (a failed
    write stops the node there) leaves every machine on its old code after recovery."""
    store = Store(tmp_path / "s.db")
    registry = Registry()
    for name in ("left", "right"):
        store.log_start(registry.start(name, load(handbuilt.counter_module())))
    store.commit(registry.machines)
    running = registry.get("left").identity
    v2 = encode_module(handbuilt.counter2_module())
    migrate = encode_module(handbuilt.upgrade_state_module())
    done = registry.release([(n, running, v2, migrate) for n in ("left", "right")])
    store.log_upgrade(registry.get("left"), done[0])  # the second write never happens
    store.db.close()
    recovered = {m.name: m.identity for m in Store(tmp_path / "s.db").recover().machines}
    assert recovered == {"left": running, "right": running}


def test_a_failed_write_is_a_store_error_and_the_store_stays_usable(tmp_path: Path) -> None:
    """A full disk at INSERT time escaped as a raw sqlite3 error, left the queued inputs queued
    and the transaction flag set although SQLite had rolled back: every later commit failed
    (UNIQUE constraint on log.seq) even once space was back, and later writes ran outside any
    transaction."""
    store = Store(tmp_path / "db")
    registry = Registry()
    machine = registry.start("counter", load(handbuilt.counter_module()))
    store.log_start(machine)
    store.commit(registry.machines)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now full
    for _ in range(2):
        for _ in range(2000):
            stepped = registry.step("counter", INCR)
            store.log_input(machine, INCR, stepped.identity)
        with pytest.raises(StoreError, match="full"):
            store.commit(registry.machines)
        assert not store.db.in_transaction
    store.db.execute("PRAGMA max_page_count = 1000000")  # space is back
    machine.inputs = 0  # what a node restarted from the store would run on
    stepped = registry.step("counter", INCR)
    store.log_input(machine, INCR, stepped.identity)
    store.commit(registry.machines)
    store.close()
    reopened = Store(tmp_path / "db")
    try:
        (back,) = reopened.recover().machines
    finally:
        reopened.close()
    assert back.inputs == 1  # the failed batches are gone, the later input is there


FIXTURE_V1 = Path(__file__).parent / "fixtures" / "store_v1.sqlite3"


def test_a_store_written_by_schema_1_still_recovers(tmp_path: Path) -> None:
    """tests/fixtures/store_v1.sqlite3 was written by the release with store schema 1 (the
    hand-built counter: 7 inputs, the seed's upgrade, 3 more, no checkpoint). It must keep
    opening, upgrading its schema in place, and recovering the same machine."""
    copy = tmp_path / "node.sqlite3"
    shutil.copyfile(FIXTURE_V1, copy)
    store = Store(copy)
    try:
        (machine,) = store.recover().machines
        assert (machine.name, machine.inputs, machine.state) == ("counter", 10, (7, 3))
        assert [c.kind for c in machine.history] == ["start", "upgrade"]
        assert machine.identity == load(handbuilt.counter2_module()).identity
        schema = store.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
        assert schema == str(SCHEMA_VERSION)
    finally:
        store.close()
    reopened = Store(copy)  # and again, now at the current schema
    try:
        (again,) = reopened.recover().machines
        assert again.state == (7, 3)
    finally:
        reopened.close()
