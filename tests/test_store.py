"""The store: what is committed survives; recovery replays onto the right code."""

from __future__ import annotations

import gc
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from counter_runs import run_counter
from hotswap.cam.build import machine_module
from hotswap.cam.loaded import load
from hotswap.cam.module import encode_module
from hotswap.cam.values import encode_value
from hotswap.errors import StoreError
from hotswap.examples import bank, counter, handbuilt
from hotswap.lang.persistent import OMap
from hotswap.lang.terms import Empty
from hotswap.lang.types import INT
from hotswap.names.schema import to_core
from hotswap.node.registry import Machine, Registry
from hotswap.node.store import SCHEMA_VERSION, SNAPSHOT_BYTES_PER_INPUT, Store
from hotswap.protocol.events import HistoryKind
from test_node_trace import BUMP, COUNTS

INCR = b"\x00"


@pytest.mark.parametrize("snapshot_every", [1, 5, 1000])
@pytest.mark.parametrize("upgrade_at", [None, 0, 12, 29])
def test_recovery_rebuilds_state_code_and_history(
    tmp_path: Path, snapshot_every: int, upgrade_at: int | None
) -> None:
    """Whatever the snapshot spacing and upgrade position, recovery equals the live run."""
    live = run_counter(
        tmp_path / "s.db", 30, snapshot_every=snapshot_every, upgrade_at=upgrade_at
    ).get("counter")
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
    run_counter(tmp_path / "s.db", 10, snapshot_every=1000)
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
    with pytest.raises(StoreError, match="has schema 99; this release reads schemas 1 to 8: open"):
        Store(tmp_path / "s.db")
    # the refused store is not left locked: fixed, it opens in the same process at once
    db = sqlite3.connect(tmp_path / "s.db", timeout=0)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
    db.commit()
    db.close()
    Store(tmp_path / "s.db").close()


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


FIXTURE_V2 = Path(__file__).parent / "fixtures" / "store_v2.sqlite3"


def test_a_store_written_before_strings_lists_and_maps_still_recovers(tmp_path: Path) -> None:
    """tests/fixtures/store_v2.sqlite3 was written by the release before module format 2 (store
    schema 2): the DSL counter (5 inputs, the seed's upgrade, which that release snapshotted, 3
    more) and the bank (2 inputs), ended as by a kill (no shutdown snapshot). It must recover
    the same states on the same identities, with today's code and fuel."""
    copy = tmp_path / "node.sqlite3"
    shutil.copyfile(FIXTURE_V2, copy)
    store = Store(copy)
    try:
        machines = {m.name: m for m in store.recover().machines}
        count, bank_account = machines["counter"], machines["bank"]
        assert (count.inputs, count.state) == (8, (5, 3))
        assert count.identity == counter.counter_sm2.identity
        assert [c.kind for c in count.history] == ["start", "upgrade"]
        assert bank_account.identity == bank.bank_sm.identity
        assert to_core(bank.bank_sm.compiled.state, bank.Account(70, 2)) == bank_account.state
    finally:
        store.close()


def _snapshot_row(store: Store) -> tuple[int, int]:
    """The ``(seq, inputs)`` of the store's one snapshot (read through the store: it holds the
    database's lock)."""
    seq, inputs = store.db.execute("SELECT seq, inputs FROM snapshots").fetchone()
    return int(seq), int(inputs)


def test_a_large_state_is_snapshotted_more_rarely_and_recovers_the_same(tmp_path: Path) -> None:
    """A snapshot of S bytes is taken once every S / SNAPSHOT_BYTES_PER_INPUT inputs at most,
    not every ``snapshot_every``: what it skips, recovery replays."""
    path = tmp_path / "s.db"
    store = Store(path, snapshot_every=10)
    registry = Registry()
    code = load(machine_module(INT, COUNTS, INT, Empty(COUNTS), BUMP))
    machine = registry.start("counts", code)
    machine.state = OMap((i, 0) for i in range(4000))
    store.log_start(machine)
    store.commit(registry.machines)
    size = len(encode_value(machine.state, COUNTS))
    interval = store.snapshot_interval("counts")
    assert interval == size // SNAPSHOT_BYTES_PER_INPUT > 10
    for i in range(interval + 5):
        payload = encode_value(i % 7, INT)
        store.log_input(machine, payload, registry.step("counts", payload).identity)
        if i % 10 == 9 or i == interval - 1:
            store.commit(registry.machines)
            expected = interval if i >= interval - 1 else 0
            assert _snapshot_row(store)[1] == expected, i
    store.commit(registry.machines)
    live = machine.state
    store.db.close()  # killed
    reopened = Store(path)
    try:
        (back,) = reopened.recover().machines
        assert (back.state, back.inputs) == (live, interval + 5)
        assert back.state.get(3) == len([i for i in range(interval + 5) if i % 7 == 3])
    finally:
        reopened.close()


def test_an_upgrade_is_not_snapshotted_and_a_current_snapshot_is_not_retaken(
    tmp_path: Path,
) -> None:
    """An upgrade's migration is replayed, not snapshotted (so upgrading a large state does not
    encode it); a clean stop snapshots only what changed since the last snapshot."""
    path = tmp_path / "s.db"
    run_counter(path, 10, snapshot_every=1000, upgrade_at=4)
    store = Store(path)
    try:
        assert _snapshot_row(store) == (1, 0)  # the start's: the upgrade at input 4 took none
        (machine,) = store.recover().machines
        assert machine.state == (4, 6) and machine.generation == 1
        machines = {machine.name: machine}
        store.checkpoint(machines)
        assert _snapshot_row(store)[1] == 10
        changes = store.db.total_changes
        store.checkpoint(machines)
        assert store.db.total_changes == changes  # nothing new: nothing written
    finally:
        store.close()


def test_recovery_pauses_the_cyclic_collector_and_restores_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replaying values with collections was dominated by garbage collections walking them."""
    run_counter(tmp_path / "s.db", 20, snapshot_every=1000)
    seen: list[bool] = []
    replay = Store._replay

    def watched(self: Store, machine: Machine, after: int, fuel: int) -> int:
        seen.append(gc.isenabled())
        return replay(self, machine, after, fuel)

    monkeypatch.setattr(Store, "_replay", watched)
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            store = Store(tmp_path / "s.db")
            try:
                assert store.recover().machines[0].state == 20
            finally:
                store.close()
            assert gc.isenabled() is enabled
        finally:
            gc.enable()
    assert seen == [False, False]


FIXTURE_V3 = Path(__file__).parent / "fixtures" / "store_v3.sqlite3"


def _schema_3_history(c: object) -> None:
    """What tests/fixtures/record_schema3.py did to the store it wrote (the oracle's run)."""
    from hotswap.code import Upgrade  # noqa: PLC0415

    client: Any = c
    for _ in range(4):
        client.send("counter", counter.Incr())
    for _ in range(3):
        client.send("counter", counter.Incr(), key="user-1")
    client.send("counter", counter.Incr(), key="gone")
    client.delete("counter", "gone")
    client.upgrade("counter", Upgrade(counter.counter_sm, counter.counter_sm2))
    client.send("counter", counter.Incr())
    client.send("counter", counter.Count())
    client.send("counter", counter.Incr(), key="user-2")
    client.send("bank", bank.Deposit(50))
    client.send("bank", bank.Withdraw(20))


def test_a_store_written_by_schema_3_upgrades_in_place_and_recovers_the_same(
    tmp_path: Path,
) -> None:
    """tests/fixtures/store_v3.sqlite3 was written by the release of store schema 3 (before the
    audit trail): the counter with an upgrade and keyed instances (one behind its checkpoint,
    one deleted), the bank; killed. It opens at the current schema (two columns added in place
    for schema 4, a table for schema 5), every state and instance is what the same requests
    give on a new node, and its history names nobody."""
    from hotswap.client import Client  # noqa: PLC0415
    from hotswap.node.memory import MemoryNode  # noqa: PLC0415

    machines = {"counter": counter.counter_sm, "bank": bank.bank_sm}
    known = [counter.counter_sm2, bank.bank_sm]
    with MemoryNode(machines) as fresh:
        oracle = Client(transport=fresh.connection(), machines=known)
        _schema_3_history(oracle)
        want = {
            "counter": oracle.status("counter"),
            "bank": oracle.status("bank"),
            "user-1": oracle.status("counter", key="user-1"),
            "user-2": oracle.status("counter", key="user-2"),
        }
    shutil.copyfile(FIXTURE_V3, tmp_path / "node.sqlite3")
    for _ in range(2):  # upgraded, then reopened at the current schema
        with MemoryNode(machines, data=tmp_path) as node:
            c = Client(transport=node.connection(), machines=known)
            got = {
                "counter": c.status("counter"),
                "bank": c.status("bank"),
                "user-1": c.status("counter", key="user-1"),
                "user-2": c.status("counter", key="user-2"),
            }
            for name, status in got.items():
                expected = want[name]
                assert (status.identity, status.state, status.inputs) == (
                    expected.identity,
                    expected.state,
                    expected.inputs,
                ), name
            assert got["counter"].instances == 2
            assert [(e.kind, e.by, e.signer) for e in got["counter"].history] == [
                ("start", None, None),
                ("upgrade", None, None),
            ]
            db = node.service.store.db
            assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
            columns = [row[1] for row in db.execute("PRAGMA table_info(log)")]
            assert columns[-2:] == ["principal", "signer"]


FIXTURE_V4 = Path(__file__).parent / "fixtures" / "store_v4.sqlite3"

#: What a node shows of one machine or instance: its code, state, inputs, generation, count
#: of instances and history (kind, code, by, signer).
Shown = tuple[
    str, bytes, int, int | None, int | None, list[tuple[HistoryKind, str, str | None, str | None]]
]


class _Audited:
    """The node of the fixtures of schemas 4 and 5 (tests/fixtures/record_schema4.py): the
    counter and the bank, ``--auth`` with the principal ``ci``, ``--trust`` the fixture's key;
    :meth:`seen` is every machine and instance as a client sees it, and every module of their
    histories."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
            Ed25519PrivateKey,
        )

        from fixtures.record_schema4 import SEED  # noqa: PLC0415
        from hotswap.auth import Credentials  # noqa: PLC0415
        from hotswap.node.service import NodeConfig  # noqa: PLC0415
        from hotswap.signing import TrustedKeys, key_id  # noqa: PLC0415

        self.key = Ed25519PrivateKey.from_private_bytes(SEED)
        self.signer = key_id(self.key.public_key())
        credentials = Credentials()
        self.token = credentials.add("ci", ["upgrade"])
        self.config = NodeConfig(
            credentials=credentials, trust=TrustedKeys([self.key.public_key()])
        )
        self.machines = {"counter": counter.counter_sm, "bank": bank.bank_sm}

    def node(self, data: Path | None = None) -> Any:
        from hotswap.node.memory import MemoryNode  # noqa: PLC0415

        return MemoryNode(self.machines, data=data, config=self.config)

    def client(self, node: Any) -> Any:
        from hotswap.client import Client  # noqa: PLC0415

        c = Client(transport=node.connection(), token=self.token, machines=[counter.counter_sm2])
        c.session.sign_with(self.key)
        return c

    def seen(self, node: Any) -> tuple[dict[str, Shown], dict[str, bytes]]:
        c = self.client(node)
        replies = {name: c.status_raw(name) for name in ("counter", "bank", "abacus")}
        replies |= {k: c.status_raw("counter", key=k) for k in ("user-1", "user-2")}
        shown = {
            name: (
                s.identity,
                s.state,
                s.inputs,
                s.generation,
                s.instances,
                [(e.kind, e.identity, e.by, e.signer) for e in s.history],
            )
            for name, s in replies.items()
        }
        modules = {e.identity: c.module(e.identity) for s in replies.values() for e in s.history}
        return shown, modules


def test_a_store_written_by_schema_4_upgrades_in_place_and_recovers_exactly(
    tmp_path: Path,
) -> None:
    """tests/fixtures/store_v4.sqlite3 was written by the release of store schema 4, before
    modules were kept in parts (tests/fixtures/record_schema4.py): an audited and signed
    history, keyed instances, a deployed module of 64 KiB; killed. It opens at schema 7 (a
    table added, every module left whole in its row), and every state, instance, history entry
    (who made it, which key signed it) and stored module is what the same requests give on a
    new node; a module kept in parts then joins the whole ones."""
    from fixtures.record_schema4 import abacus_module, history  # noqa: PLC0415
    from hotswap.client import Upgrade  # noqa: PLC0415
    from hotswap.node.store import PART_BYTES, PARTS_REFERENCE  # noqa: PLC0415

    audited = _Audited()
    with audited.node() as fresh:
        history(audited.client(fresh), abacus_module())
        want, modules = audited.seen(fresh)
    assert [e[2:] for e in want["counter"][5]] == [(None, None), ("ci", audited.signer)]
    assert [e[2:] for e in want["abacus"][5]] == [("ci", audited.signer)]
    shutil.copyfile(FIXTURE_V4, tmp_path / "node.sqlite3")
    big = _padded(handbuilt.counter2_module(), 3 * PART_BYTES // 2)
    with audited.node(tmp_path) as node:
        assert audited.seen(node) == (want, modules)
        db = node.service.store.db
        assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION) == "8"
        rows = [bytes(data) for (data,) in db.execute("SELECT data FROM modules")]
        assert rows and not [data for data in rows if data.startswith(PARTS_REFERENCE)]
        assert db.execute("SELECT COUNT(*) FROM module_parts").fetchone() == (0,)
        migration = encode_module(handbuilt.upgrade_state_module())  # then a module in parts
        done = audited.client(node).upgrade("abacus", Upgrade(abacus_module(), big, migration))
    with audited.node(tmp_path) as node:
        shown, stored = audited.seen(node)
        assert shown["abacus"][0] == done.new and stored[done.new] == big
        assert {k: v for k, v in shown.items() if k != "abacus"} == {
            k: v for k, v in want.items() if k != "abacus"
        }
        assert {k: v for k, v in stored.items() if k != done.new} == modules
        parts = node.service.store.db.execute("SELECT COUNT(*) FROM module_parts").fetchone()
        assert parts == (2,)


FIXTURE_V5 = Path(__file__).parent / "fixtures" / "store_v5.sqlite3"


def test_a_store_written_by_schema_5_upgrades_in_place_and_recovers_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tests/fixtures/store_v5.sqlite3 was written by the release of store schema 5
    (tests/fixtures/record_schema5.py): the history of schema 4's fixture, then a module of
    1.5 MiB kept in parts, with inputs on it; killed. It opens at schema 7, its log rebuilt
    (every row as it was, a cheaper check of ``kind`` that still refuses an unknown one), its
    instances' rows without their code's identity, and everything is what the same requests
    give on a new node, the module in parts included; it then takes more inputs and recovers
    them."""
    from fixtures.record_schema4 import abacus_module, history  # noqa: PLC0415
    from fixtures.record_schema5 import big_module, more  # noqa: PLC0415

    audited = _Audited()
    with audited.node() as fresh:
        c = audited.client(fresh)
        history(c, abacus_module())
        more(c)
        want, modules = audited.seen(fresh)
    assert modules[want["abacus"][0]] == big_module()
    fixture = sqlite3.connect(FIXTURE_V5)
    rows = fixture.execute("SELECT * FROM log ORDER BY seq").fetchall()
    assert fixture.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("5",)
    fixture.close()
    shutil.copyfile(FIXTURE_V5, tmp_path / "node.sqlite3")
    capsys.readouterr()
    with audited.node(tmp_path) as node:
        assert "Upgraded the store from schema 5 to 8 in place" in capsys.readouterr().out
        assert audited.seen(node) == (want, modules)
        db = node.service.store.db
        assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION) == "8"
        assert db.execute("SELECT * FROM log ORDER BY seq").fetchall()[: len(rows)] == rows
        assert db.execute("SELECT COUNT(*) FROM module_parts").fetchone() == (2,)
        (table,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'log'").fetchone()
        assert "kind = 'input' OR" in table
        assert "identity" not in [row[1] for row in db.execute("PRAGMA table_info(instances)")]
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute(
                "INSERT INTO log (seq, machine, kind, identity, inputs, time) "
                "VALUES (10000, 'counter', 'bogus', '', 0, 0)"
            )
        assert [
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        ].count("log_changes") == 1
        audited.client(node).send("counter", counter.Incr(), key="user-2")
    with audited.node(tmp_path) as node:
        assert "Upgraded the store" not in capsys.readouterr().out  # once only
        shown, stored = audited.seen(node)
        assert stored == modules
        assert shown["user-2"][2] == want["user-2"][2] + 1
        assert {k: v for k, v in shown.items() if k != "user-2"} == {
            k: v for k, v in want.items() if k != "user-2"
        }


def _padded(module: Any, size: int) -> bytes:
    """``module``'s bytes with a custom section of ``size`` bytes."""
    from dataclasses import replace  # noqa: PLC0415

    return encode_module(replace(module, custom=(*module.custom, ("zz-pad", b"p" * size))))


@pytest.mark.parametrize("count", [1, 15, 16, 17, 128, 129, 145, 300])
def test_rows_inserted_many_to_a_statement_go_in_as_one_a_statement_would(count: int) -> None:
    """``_Inserts`` writes rows as statements of 128 and 16 rows, then one a row: the table
    ends as ``executemany`` of the one-row statement leaves it, in order, a later row of a key
    winning (an upsert's conflict within one statement included)."""
    from hotswap.node.store import _PUT_INSTANCE_STATE, INSERT_ROWS, _Inserts  # noqa: PLC0415

    rows = [("m", f"k{i % 100:03}", 0, b"%d" % i, i, i) for i in range(count)]
    tables = []
    for many in (True, False):
        db = sqlite3.connect(":memory:")
        db.execute(
            "CREATE TABLE instances (machine TEXT, key TEXT, generation INTEGER, state BLOB, "
            "inputs INTEGER, seq INTEGER, PRIMARY KEY (machine, key)) WITHOUT ROWID"
        )
        statements: list[str] = []
        db.set_trace_callback(statements.append)
        if many:
            _Inserts(_PUT_INSTANCE_STATE).run(db, list(rows))
        else:
            db.executemany(_PUT_INSTANCE_STATE, rows)
        db.set_trace_callback(None)
        if many:
            big, small = INSERT_ROWS
            expected = count // big + count % big // small + count % big % small
            assert len([s for s in statements if s.startswith("INSERT")]) == expected
        tables.append(db.execute("SELECT * FROM instances ORDER BY key").fetchall())
    assert tables[0] == tables[1]
    assert len(tables[0]) == min(count, 100)
