"""Storage hygiene: the log is compacted behind snapshots (``--retain``), in small batches,
without changing what recovery rebuilds; what a trial's revert or a keyed instance's replay
needs stays; the history is never compacted; modules nothing can use any more are deleted."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from counter_runs import run_counter
from hotswap.cam.loaded import load
from hotswap.client import Client, Upgrade
from hotswap.examples import counter, handbuilt
from hotswap.examples.counter import (
    Incr,
    counter_sm,
    counter_sm2,
    downgrade_state,
    upgrade_state,
)
from hotswap.node import store as store_module
from hotswap.node.cli import retain_option
from hotswap.node.memory import MemoryNode
from hotswap.node.registry import Machine, Registry
from hotswap.node.store import Store
from instance_machines import Add, tally_v1, tally_v2, v1_to_v2_safe

INCR = b"\x00"


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction in batches of 16 entries, so that small runs go through many of them."""
    monkeypatch.setattr(store_module, "COMPACT_BATCH", 16)


def _counter(path: Path, retain: int | None, upgrade_at: int) -> Machine:
    """The counter after 1,000 inputs (the upgrade before input ``upgrade_at``; -1: none), a
    commit every 7, snapshots every 50, killed at the end."""
    registry = run_counter(
        path, 1000, upgrade_at=upgrade_at, killed=True, snapshot_every=50, retain=retain
    )
    return registry.get("counter")


def _rows(store: Store, where: str = "1") -> int:
    store.settle()  # the inputs in the input log too, as the served node writes them soon
    return int(store.db.execute(f"SELECT COUNT(*) FROM log WHERE {where}").fetchone()[0])


@pytest.mark.parametrize("upgrade_at", [-1, 10, 900])
def test_the_log_is_compacted_behind_snapshots_and_recovers_the_same(
    tmp_path: Path, upgrade_at: int
) -> None:
    kept = _counter(tmp_path / "all.db", None, upgrade_at)
    compacted = _counter(tmp_path / "some.db", 30, upgrade_at)
    assert (compacted.state, compacted.inputs) == (kept.state, kept.inputs)
    whole, small = Store(tmp_path / "all.db"), Store(tmp_path / "some.db", retain=30)
    try:
        assert _rows(whole, "kind = 'input'") == 1000
        # the last 30 entries, those after the last snapshot (at most 50), one batch of slack
        assert _rows(small, "kind = 'input'") <= 30 + 50 + 2 * 16
        changes = "SELECT kind, identity FROM log WHERE kind != 'input' ORDER BY seq"
        assert whole.db.execute(changes).fetchall() == small.db.execute(changes).fetchall()
        (a,), (b,) = whole.recover().machines, small.recover().machines
        assert (a.state, a.inputs, a.identity) == (b.state, b.inputs, b.identity)
        assert [(c.kind, c.identity, c.seq) for c in a.history] == [
            (c.kind, c.identity, c.seq) for c in b.history
        ]
        assert small.last_seq == whole.last_seq  # a compacted entry's seq is never reused
    finally:
        whole.close()
        small.close()


def test_a_store_whose_last_entries_were_compacted_keeps_counting_from_them(
    tmp_path: Path,
) -> None:
    """A clean stop snapshots every machine; compaction may then delete every input, the
    last included. The next entries must not reuse their seqs (a snapshot names one)."""
    path = tmp_path / "s.db"
    store = Store(path, retain=0)
    registry = Registry()
    machine = registry.start("counter", load(handbuilt.counter_module()))
    store.log_start(machine)
    for _ in range(40):
        store.log_input(machine, INCR, registry.step("counter", INCR).identity)
    store.checkpoint(registry.machines)  # snapshot at 41
    store.commit(registry.machines)
    store.log_input(machine, INCR, registry.step("counter", INCR).identity)
    for _ in range(3):  # commits with nothing new compact nothing: one more entry, then more
        store.commit(registry.machines)
    last = store.last_seq
    store.close()
    reopened = Store(path, retain=0)
    try:
        assert reopened.last_seq == last == 42
        (back,) = reopened.recover().machines
        assert (back.inputs, back.state) == (41, 41)
    finally:
        reopened.close()


def test_a_trial_keeps_what_its_revert_and_recovery_need() -> None:
    """No snapshot is taken during a trial, and compaction never passes a machine's oldest
    input after its snapshot: a crash in a long trial still rebuilds it, and the revert
    replays every input on the old code."""
    with MemoryNode({"counter": counter_sm}, snapshot_every=20, retain=0) as node:
        c = Client(transport=node.connection())
        for _ in range(100):
            c.send("counter", Incr())
        c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state), trial=10_000)
        for _ in range(300):
            c.send("counter", Incr())
        store = node.service.store
        (trial_seq,) = store.db.execute("SELECT seq FROM log WHERE kind = 'trial'").fetchone()
        assert _rows(store, f"kind = 'input' AND seq > {trial_seq}") == 300
        assert _rows(store, f"kind = 'input' AND seq < {trial_seq}") <= 20 + 16
        node.reopen()  # a crash in the trial
        c = Client(transport=node.connection())
        assert c.status("counter").in_trial
        c.revert("counter")
        status = c.status("counter")
        assert (status.identity, status.state, status.inputs) == (counter_sm.identity, 400, 400)


def test_keyed_instances_keep_the_replay_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a store with keyed instances, compaction stays outside the replay window: a crash
    recovers every instance's acknowledged inputs."""
    monkeypatch.setattr(store_module, "REPLAY_WINDOW", 60)
    with MemoryNode({"tally": tally_v1}, snapshot_every=10, retain=0) as node:
        c = Client(transport=node.connection())
        expected: dict[str, int] = {}
        for i in range(400):
            key = f"k{i % 7}"
            c.send("tally", Add(i), key=key)
            expected[key] = expected.get(key, 0) + i
        store = node.service.store
        assert _rows(store, "kind = 'input'") <= 60 + 16
        node.reopen()
        c = Client(transport=node.connection())
        assert {k: c.status("tally", key=k).state for k in expected} == expected


def test_an_idle_machine_is_snapshotted_so_that_compaction_goes_on() -> None:
    """A machine that took a few inputs and went quiet would hold the log back for ever (its
    inputs after its snapshot are needed); it is snapshotted once the rest of the log has
    moved on by the retention and its snapshot interval."""
    machines = {"busy": counter_sm, "quiet": counter_sm}
    with MemoryNode(machines, snapshot_every=50, retain=20) as node:
        c = Client(transport=node.connection())
        for _ in range(3):
            c.send("quiet", Incr())
        for _ in range(500):
            c.send("busy", Incr())
        store = node.service.store
        assert _rows(store, "kind = 'input'") <= 20 + 50 + 2 * 16
        assert _rows(store, "kind = 'input' AND machine = 'quiet'") == 0
        node.reopen()
        c = Client(transport=node.connection())
        assert (c.status("quiet").state, c.status("busy").state) == (3, 500)


def test_retain_all_keeps_the_whole_log() -> None:
    with MemoryNode({"counter": counter_sm}, snapshot_every=10, retain=None) as node:
        c = Client(transport=node.connection())
        for _ in range(200):
            c.send("counter", Incr())
        assert _rows(node.service.store, "kind = 'input'") == 200


def test_the_retain_option() -> None:
    assert retain_option("all") is None
    assert retain_option("0") == 0 and retain_option("100000") == 100_000
    for bad in ("-1", "many", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="or all"):
            retain_option(bad)


# --- module collection --------------------------------------------------------------------


def _modules(node: MemoryNode) -> set[str]:
    return {row[0] for row in node.service.store.db.execute("SELECT identity FROM modules")}


def test_a_migration_every_state_has_passed_is_collected_and_history_stays() -> None:
    """Once the machine's snapshot is past an upgrade, recovery never runs its migration
    again; the code of every history entry stays (rollback and get_module need them)."""
    with MemoryNode({"counter": counter_sm}, snapshot_every=5) as node:
        c = Client(transport=node.connection())
        c.send("counter", Incr())
        done = c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        migration = upgrade_state.identity
        assert _modules(node) == {counter_sm.identity, counter_sm2.identity, migration}
        node.reopen()  # recovery replays the upgrade: its migration is needed until then
        c = Client(transport=node.connection())
        assert c.status("counter").identity == done.new
        for _ in range(5):  # the next snapshot passes the upgrade
            c.send("counter", Incr())
        assert _modules(node) == {counter_sm.identity, counter_sm2.identity}
        assert node.service.store.collected == 1
        assert c.rollback("counter", counter.downgrade_state).new == counter_sm.identity
        node.reopen()
        c = Client(transport=node.connection())
        assert c.status("counter").state == 5  # the rollback's migration: (1, 5) -> 5


def test_instances_on_an_old_generation_keep_their_migrations() -> None:
    """A keyed instance checkpointed on generation 0 migrates lazily through the logged
    migration: it stays until no instance is on that generation."""
    with MemoryNode({"tally": tally_v1}, snapshot_every=5) as node:
        c = Client(transport=node.connection(), machines=[tally_v2])
        c.send("tally", Add(2), key="old")
        c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe))
        for _ in range(6):
            c.send("tally", Add(1))  # snapshots of the default instance pass the upgrade
        node.service.store.collect_modules()
        assert v1_to_v2_safe.identity in _modules(node)
        node.sweep(10)  # the instance migrates to generation 1
        node.service.store.collect_modules()
        node.service.commit()
        assert v1_to_v2_safe.identity not in _modules(node)
        node.reopen()
        c = Client(transport=node.connection(), machines=[tally_v2])
        assert c.status("tally", key="old").state.total == 2


def test_modules_nothing_names_are_collected_at_start(tmp_path: Path) -> None:
    """A module no log entry, snapshot or checkpoint names (a store keeps only the modules of
    logged changes, so one is left by an older release or by hand) goes at the first commit."""
    with MemoryNode({"counter": counter_sm}, data=tmp_path) as node:
        node.service.store.db.execute("INSERT INTO modules VALUES (?, ?)", ("f" * 64, b"orphan"))
    with MemoryNode({"counter": counter_sm}, data=tmp_path) as node:
        assert _modules(node) == {counter_sm.identity}


def _checkpoints(store: Store) -> list[tuple[str, str, int, int]]:
    """Each instance's checkpoint as reads see it: the table's row, or the newer one the
    write-back holds for it (the two nodes write it back at different commits)."""
    rows = {
        (name, key): (name, key, generation, inputs)
        for name, key, generation, inputs in store.db.execute(
            "SELECT machine, key, generation, inputs FROM instances"
        )
    }
    for where, (name, key, generation, _, inputs, _) in store._write_back.newest().items():
        rows[where] = (name, key, generation, inputs)
    return sorted(rows.values())


def _store_contents(store: Store) -> tuple[object, ...]:
    """What a commit decides: the log's entries, the snapshots, the checkpoints, the
    position the file records (the input log's entries written into SQLite first)."""
    store.settle()
    db = store.db
    return (
        db.execute("SELECT seq, machine, kind, key FROM log ORDER BY seq").fetchall(),
        db.execute("SELECT machine, seq, inputs FROM snapshots ORDER BY machine").fetchall(),
        _checkpoints(store),
        store.position_path.read_bytes(),
    )


def test_a_commit_of_inputs_alone_decides_what_a_full_commit_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Most commits skip the snapshot, compaction and collection checks, as long as none can
    be due (``Store._quiet_bound``). Two nodes take the same requests, one input per commit,
    one of them always making every check: after each request their stores hold the same
    entries, snapshots, checkpoints and position, through trials, upgrades, deletes, keyed and
    default inputs, an idle machine and compaction."""
    monkeypatch.setattr(store_module, "REPLAY_WINDOW", 60)
    machines = {"busy": counter_sm, "quiet": counter_sm, "tally": tally_v1}
    quick = MemoryNode(machines, snapshot_every=25, retain=40)
    checked = MemoryNode(machines, snapshot_every=25, retain=40)
    full_commits = 0
    commit_all = quick.service.store._commit_all

    def counted(machines: dict[str, Machine]) -> None:
        nonlocal full_commits
        full_commits += 1
        commit_all(machines)

    monkeypatch.setattr(quick.service.store, "_commit_all", counted)
    monkeypatch.setattr(checked.service.store, "_quiet_bound", lambda machines: -1)
    try:
        clients = [Client(transport=n.connection()) for n in (quick, checked)]
        requests = 0
        for i in range(1500):
            for c in clients:
                if i == 400:
                    c.upgrade("busy", Upgrade(counter_sm, counter_sm2, upgrade_state), trial=30)
                elif i == 900:
                    c.upgrade("busy", Upgrade(counter_sm2, counter_sm, downgrade_state), trial=30)
                elif i == 700:
                    c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe))
                elif i % 97 == 50:
                    c.delete("tally", f"k{i % 5}")
                elif i % 211 == 3:
                    c.send("quiet", Incr())
                elif i % 3 == 0:
                    c.send("tally", Add(i), key=f"k{i % 5}")
                else:
                    c.send("busy", Incr())
            requests += 1
            assert _store_contents(quick.service.store) == _store_contents(checked.service.store), (
                f"after request {i}"
            )
        store = quick.service.store
        assert _rows(store, "kind = 'input'") < 1000  # compaction ran
        assert store.db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 3
        assert full_commits < requests // 2  # the quick node mostly took the short way
    finally:
        quick.close()
        checked.close()


def test_changing_the_retention_ends_the_short_way() -> None:
    """The bound ``Store.commit`` skips its checks by is worked out for one retention: with
    the whole log kept, nothing is ever compacted and no snapshot is due for 1,000 entries; a
    retention of 0 then makes the next commit compact what the snapshot covers."""
    with MemoryNode({"counter": counter_sm}, snapshot_every=1000, retain=None) as node:
        c = Client(transport=node.connection())
        for _ in range(50):
            c.send("counter", Incr())
        node.service.checkpoint()  # a snapshot after the 50th input
        store = node.service.store
        store.retain = 0
        for _ in range(40):
            c.send("counter", Incr())
        assert _rows(store, "kind = 'input'") < 40 + 16  # 90 if nothing was compacted
