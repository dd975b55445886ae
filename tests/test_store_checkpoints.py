"""How the store writes: SQLite's write-ahead log copied into the database at the store's own
thresholds (a number of pages, or of commits for a light load), keyed instances' checkpoints
written in key order, and read back through one decoder per code, whatever the cache holds."""

from __future__ import annotations

import random
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from hotswap.cam.loaded import load
from hotswap.client import Client, Upgrade
from hotswap.examples import handbuilt
from hotswap.examples.counter import counter_sm
from hotswap.node.memory import MemoryNode
from hotswap.node.registry import Registry
from hotswap.node.service import NodeConfig, Service
from hotswap.node.store import CHECKPOINT_COMMITS, WAL_CHECKPOINT_PAGES, WAL_LIMIT_BYTES, Store
from hotswap.protocol.events import Send
from instance_machines import Add, tally_v1, tally_v2, tally_v3, v1_to_v2_safe

INCR = b"\x00"
MACHINES = (tally_v1, tally_v2, tally_v3)


def test_the_store_sets_its_checkpoint_threshold_and_the_size_its_log_is_cut_to(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "node.sqlite3")
    try:
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone() == (WAL_CHECKPOINT_PAGES,)
        assert store.db.execute("PRAGMA journal_size_limit").fetchone() == (WAL_LIMIT_BYTES,)
    finally:
        store.close()


def _held(path: Path, copy: Path) -> int:
    """The last log entry the database file holds by itself (its write-ahead log left out;
    0 if it holds no log yet)."""
    shutil.copyfile(path, copy)
    db = sqlite3.connect(copy)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'log'").fetchone() is None:
            return 0
        (seq,) = db.execute("SELECT MAX(seq) FROM log").fetchone()
    finally:
        db.close()
    return int(seq or 0)


def test_a_light_load_reaches_the_database_every_so_many_commits(tmp_path: Path) -> None:
    """Lone inputs write a page or two a commit, far below the threshold in pages: the store
    checkpoints every CHECKPOINT_COMMITS commits itself, so the database file alone holds all
    but the last few hundred of them, and not the ones since."""
    path = tmp_path / "node.sqlite3"
    store = Store(path)
    try:
        registry = Registry()
        machine = registry.start("counter", load(handbuilt.counter_module()))
        store.log_start(machine)
        store.commit(registry.machines)
        assert _held(path, tmp_path / "before.sqlite3") < CHECKPOINT_COMMITS
        for _ in range(CHECKPOINT_COMMITS + 10):
            store.log_input(machine, INCR, registry.step("counter", INCR).identity)
            store.commit(registry.machines)  # into the input log
            store.settle()  # and into SQLite: a transaction of its own, as on a light load
        held = _held(path, tmp_path / "after.sqlite3")
        assert CHECKPOINT_COMMITS - 10 <= held < store.last_seq
    finally:
        store.close()


def _instance_rows(service: Service, act: Callable[[], None]) -> list[str]:
    """The keys of the ``instances`` rows SQLite writes while ``act`` runs, in order (a
    statement may write many)."""
    statements: list[str] = []
    db = service.store.db
    db.set_trace_callback(statements.append)
    act()
    db.set_trace_callback(None)
    return [
        m.group(1).replace("''", "'")
        for s in statements
        if s.startswith("INSERT INTO instances VALUES ")
        for m in re.finditer(r"\('counter', '((?:[^']|'')*)'", s)
    ]


def test_a_batch_writes_its_checkpoints_in_key_order() -> None:
    """The checkpoints of the instances a batch evicted are held in the write-back (no row
    written by that commit), read from there, and written sorted by key (the table's order:
    consecutive rows share pages), whatever order they left the cache in, at a clean stop;
    each reads back exact after a restart."""
    with MemoryNode({"counter": counter_sm}, config=NodeConfig(cache=4)) as node:
        service = node.service
        keys = [f"k{i}" for i in range(40)] + ["é", "z", "Ω", "😀", "a", "k", "it's"]
        random.Random(5).shuffle(keys)
        for i, key in enumerate(keys):  # one batch of inputs, each making an instance
            service.handle(Send(i, "counter", INCR, False, key))
        service.commit()
        for i, key in enumerate(keys):  # each read back from its checkpoint, evicting others
            service.handle(Send(i, "counter", INCR, False, key))
        assert _instance_rows(service, service.commit) == []  # held back
        assert len(service.store._write_back) == len(keys) - 4  # all but the 4 live ones
        c = Client(transport=node.connection(), machines=(counter_sm,))
        assert all(c.status("counter", key=key).state == 2 for key in keys)  # read back held
        written = _instance_rows(service, service.checkpoint)
        assert len(written) == len(keys)  # and the 4 live at that commit, evicted since
        assert written == sorted(written)
        assert len(service.store._write_back) == 0
        node.reopen()
        c = Client(transport=node.connection(), machines=(counter_sm,))
        for key in keys:
            assert c.status("counter", key=key).state == 2, key


def client(node: MemoryNode) -> Client:
    return Client(transport=node.connection(), machines=MACHINES)


def test_instances_read_back_from_checkpoints_of_two_codes_equal_those_kept_live() -> None:
    """The same inputs to a node whose cache holds 2 instances and to one that keeps every
    instance live, across an upgrade that changes the state's type: every instance read back
    from a checkpoint (on v1 or on v2, each with its code's decoder) equals the live one, and
    so does every instance after a restart of each."""
    with (
        MemoryNode({"tally": tally_v1}, config=NodeConfig(cache=2)) as small,
        MemoryNode({"tally": tally_v1}) as large,
    ):
        rng = random.Random(11)
        keys = [f"user-{i}" for i in range(30)]
        touched: set[str] = set()
        for step in range(3):
            for node in (small, large):
                c = client(node)
                if step == 1:
                    c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe))
            for key in rng.sample(keys, 20):
                touched.add(key)
                n = rng.randrange(1, 5)
                assert client(small).send("tally", Add(n), key=key) == client(large).send(
                    "tally", Add(n), key=key
                )

        def seen(node: MemoryNode) -> dict[str, tuple[object, int, str]]:
            c = client(node)
            out = {}
            for key in sorted(touched):
                status = c.status("tally", key=key)
                out[key] = (status.state, status.inputs, status.identity)
            return out

        assert seen(small) == seen(large)
        small.reopen()
        large.reopen()
        assert seen(small) == seen(large)
