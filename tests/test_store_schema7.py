"""Store schema 7: keyed instances' rows without the identity of their code, which their
generation determines. A store of schema 6 (``tests/fixtures/store_v6.sqlite3``, written by that
release: ``tests/fixtures/record_schema6.py``) is upgraded in place, exactly, or not at all."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fixtures.record_schema6 import history
from hotswap.client import Client, Upgrade
from hotswap.errors import NodeError, StoreError, UpgradeRejected
from hotswap.examples import counter
from hotswap.node.memory import MemoryNode
from hotswap.node.service import NodeConfig
from hotswap.node.store import SCHEMA_VERSION, Store
from instance_machines import Add, tally_v1, tally_v2, tally_v3, v1_to_v2, v2_to_v3

FIXTURE_V6 = Path(__file__).parent / "fixtures" / "store_v6.sqlite3"
MACHINES = {"tally": tally_v1, "counter": counter.counter_sm}
KNOWN = [tally_v1, tally_v2, tally_v3, counter.counter_sm2]
KEYS = {
    "tally": ["a", "b", "c", "d", "e", "f", "g", "thirteen", "gone"],
    "counter": ["user-1", "user-2"],
}
V1, V2 = tally_v1.identity, tally_v2.identity
C1, C2 = counter.counter_sm.identity, counter.counter_sm2.identity

#: Every instance of the fixture, as recovery must make it: (machine, key) -> generation,
#: identity of its code, state, inputs. ``b`` and ``c`` ran after their checkpoint (recovery
#: replays them from the log); ``d`` was migrated by a status read; ``thirteen``'s migration
#: trapped (1000 // (13 - 13)); ``gone`` was deleted.
WANT: dict[tuple[str, str], tuple[int, str, object, int]] = {
    ("tally", "a"): (1, V2, (4, -100), 3),
    ("tally", "b"): (1, V2, (17, -125), 3),
    ("tally", "c"): (1, V2, (25, 125), 5),
    ("tally", "d"): (1, V2, (40, 37), 1),
    ("tally", "e"): (0, V1, 2, 1),
    ("tally", "f"): (1, V2, (12, -167), 3),
    ("tally", "g"): (0, V1, 100, 1),
    ("tally", "thirteen"): (0, V1, 13, 2),
    ("counter", "user-1"): (1, C2, (2, 1), 3),
    ("counter", "user-2"): (0, C1, 1, 1),
}


def _seen(node: MemoryNode) -> dict[tuple[str, str], tuple[int, str, object, int]]:
    """Every instance as the node holds it (live, or read from its checkpoint), untouched: no
    migration, no status read (which is a touch)."""
    found = {}
    for name, keys in KEYS.items():
        machine = node.service.registry.get(name)
        for key in keys:
            instance = node.service.instances._find(machine, key, keep=False)
            if instance is not None:
                found[name, key] = (
                    instance.generation,
                    instance.code.identity,
                    instance.state,
                    instance.inputs,
                )
    return found


def _more(c: Any) -> dict[str, object]:
    """After the fixture's history: inputs on both generations, an upgrade of tally to v3,
    inputs that migrate through one and two upgrades, and the trapped instance again."""
    out: dict[str, object] = {
        "e": c.send("tally", Add(1), key="e"),  # v1 -> v2: Tally(2, 1000 // -11)
        "user-2": c.send("counter", counter.Incr(), key="user-2"),
    }
    c.upgrade("tally", Upgrade(tally_v2, tally_v3, v2_to_v3))
    out["g"] = c.send("tally", Add(1), key="g")  # v1 -> v2 -> v3
    out["b"] = c.send("tally", Add(1), key="b")  # v2 -> v3
    with pytest.raises(UpgradeRejected, match=r"tally\['thirteen'\].*trapped") as e:
        c.send("tally", Add(1), key="thirteen")  # v1 -> v2 still runs first
    out["thirteen"] = e.value.code
    return out


def _oracle() -> tuple[dict[tuple[str, str], Any], dict[str, object], dict[tuple[str, str], Any]]:
    """What the fixture's requests, then :func:`_more`'s, give on a new node (today's code)."""
    with MemoryNode(MACHINES, config=NodeConfig(cache=3, sweep_rate=0)) as fresh:
        c = Client(transport=fresh.connection(), machines=KNOWN)
        history(c)
        before = _seen(fresh)
        out = _more(c)
        return before, out, _seen(fresh)


def test_a_store_written_by_schema_6_upgrades_in_place_and_recovers_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fixture (two machines, keyed instances on two generations each, some migrated by
    inputs, one by a read, one whose migration trapped, two behind their checkpoints; killed)
    opens at schema 7: every row is copied without its identity, which was the identity of
    its generation's code in every row; every instance recovers with the generation, code,
    state and input count it had; then the node runs on (inputs, an upgrade, lazy migrations
    through one and two upgrades, the trap again) as a new node does, across a kill."""
    before, outputs, after = _oracle()
    assert before == WANT
    fixture = sqlite3.connect(FIXTURE_V6)
    assert fixture.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("6",)
    old = fixture.execute(
        "SELECT machine, key, generation, identity, state, inputs, seq FROM instances "
        "ORDER BY machine, key"
    ).fetchall()
    log = fixture.execute("SELECT * FROM log ORDER BY seq").fetchall()
    fixture.close()
    assert len(old) == 10
    behind = {("tally", "b"): 2, ("tally", "c"): 4}  # inputs in their checkpoints
    assert {(m, k): (g, i, n) for m, k, g, i, _, n, _ in old} == {
        k: (g, i, behind.get(k, n)) for k, (g, i, _, n) in WANT.items()
    }
    shutil.copyfile(FIXTURE_V6, tmp_path / "node.sqlite3")
    capsys.readouterr()
    config = NodeConfig(sweep_rate=0)
    with MemoryNode(MACHINES, data=tmp_path, config=config) as node:
        assert "Upgraded the store from schema 6 to 8 in place" in capsys.readouterr().out
        db = node.service.store.db
        assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION) == "8"
        columns = [row[1] for row in db.execute("PRAGMA table_info(instances)")]
        assert columns == ["machine", "key", "generation", "state", "inputs", "seq"]
        assert db.execute("SELECT * FROM instances ORDER BY machine, key").fetchall() == [
            (m, k, g, s, n, q) for m, k, g, _, s, n, q in old
        ]
        assert db.execute("SELECT * FROM log ORDER BY seq").fetchall() == log
        indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'instances'"
        assert [n for (n,) in db.execute(indexes) if not n.startswith("sqlite_")] == [
            "instances_by_generation"
        ]
        assert _seen(node) == WANT
        c = Client(transport=node.connection(), machines=KNOWN)
        codes = [(x.identity, x.instances) for x in c.status("tally").codes]
        assert sorted(codes) == sorted([(V1, 3), (V2, 5)])
        assert _more(c) == outputs
        assert outputs == {
            "e": 1003,
            "user-2": None,
            "g": 3101,
            "b": 3018,
            "thirteen": "migration_trap",
        }
        assert _seen(node) == after
        assert after["tally", "g"] == (2, tally_v3.identity, (101, (11, 3)), 2)
        assert after["tally", "e"] == (1, V2, (3, -91), 2)
        node.reopen()  # a kill: recovery on schema 7, from checkpoints and the log
        assert "Upgraded the store" not in capsys.readouterr().out
        assert _seen(node) == after


def test_an_upgrade_that_would_lose_a_code_identity_changes_nothing(tmp_path: Path) -> None:
    """Schema 7 reads an instance's code from its generation: a schema 6 row whose identity is
    not its generation's code (only a damaged store has one) is refused with a message naming
    it, and the store stays at schema 6, every row as it was; repaired, it upgrades."""
    path = tmp_path / "node.sqlite3"
    shutil.copyfile(FIXTURE_V6, path)
    db = sqlite3.connect(path)
    db.execute("UPDATE instances SET identity = ? WHERE key = 'e'", ("f" * 64,))
    db.commit()
    rows = db.execute("SELECT * FROM instances ORDER BY machine, key").fetchall()
    db.close()
    with pytest.raises(
        StoreError,
        match=r"cannot upgrade .* to schema 8: 1 keyed instance\(s\) name code other than "
        r"their generation's in their machine's history \(the first: 'e' of 'tally', on "
        rf"generation 0, names ffffffffffff; the history has code {V1[:12]} there\); the "
        r"store was left as it was, at schema 6",
    ):
        Store(path)
    db = sqlite3.connect(path, timeout=0)  # not left locked
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("6",)
    assert db.execute("SELECT * FROM instances ORDER BY machine, key").fetchall() == rows
    db.execute("UPDATE instances SET generation = 7, identity = ? WHERE key = 'e'", (V1,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"on generation 7, names .* history has 2 generations"):
        Store(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE instances SET generation = 0 WHERE key = 'e'")
    db.commit()
    db.close()
    store = Store(path)
    try:
        assert store.upgraded is not None and store.upgraded[0] == 6
        assert len(store.db.execute("SELECT * FROM instances").fetchall()) == len(rows)
    finally:
        store.close()


def test_a_checkpoint_on_a_generation_the_history_lacks_is_a_store_error(tmp_path: Path) -> None:
    """A damaged schema 7 row (a generation past the history) is reported when read, naming
    the instance, rather than read on some other code; ``--check-all`` refuses the upgrade."""
    with MemoryNode({"tally": tally_v1}, data=tmp_path) as node:
        c = Client(transport=node.connection(), machines=KNOWN)
        c.send("tally", Add(1), key="k")
    db = sqlite3.connect(tmp_path / "node.sqlite3")
    db.execute("UPDATE instances SET generation = 3 WHERE key = 'k'")
    db.commit()
    db.close()
    store = Store(tmp_path / "node.sqlite3")
    try:
        (machine,) = store.recover().machines
        with pytest.raises(StoreError, match=r"instance 'k' of 'tally' is on generation 3"):
            store.load_instance(machine, "k")
    finally:
        store.close()
    with MemoryNode({"tally": tally_v1}, data=tmp_path) as node:  # nor migrated by check_all
        c = Client(transport=node.connection(), machines=KNOWN)
        with pytest.raises(NodeError, match=r"'k' is on generation 3, which the history"):
            c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2), check_all=True)
        assert node.service.registry.get("tally").identity == V1  # refused, nothing changed


def test_a_status_counting_instances_on_a_generation_the_history_lacks_stops_cleanly(
    tmp_path: Path,
) -> None:
    """The counts of ``status`` name each generation's code: a damaged one stops the node with
    a store error that says so (it was an ``IndexError``, reported as a bug)."""
    with MemoryNode({"tally": tally_v1}, data=tmp_path) as node:
        Client(transport=node.connection(), machines=KNOWN).send("tally", Add(1), key="k")
    db = sqlite3.connect(tmp_path / "node.sqlite3")
    db.execute("UPDATE instances SET generation = 3 WHERE key = 'k'")
    db.commit()
    db.close()
    with MemoryNode({"tally": tally_v1}, data=tmp_path) as node:
        with pytest.raises(NodeError):
            Client(transport=node.connection(), machines=KNOWN).status("tally")
        assert isinstance(node.failure, StoreError)
        assert "on generation 3, which its history of 1 changes of code lacks" in str(node.failure)
