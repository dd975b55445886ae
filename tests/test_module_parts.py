"""Modules kept in parts (store schema 5): a module of more than ``PART_BYTES`` is stored as
rows of ``module_parts``, which a served node writes off its event loop, one short transaction
each, once the held request's modules are loaded (``Store.stage``), and deletes off it too once
nothing references them (``Store.discard``). What is read back is the very bytes stored."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from hotswap.cam.build import migration_module
from hotswap.cam.loaded import load_module, release
from hotswap.cam.module import Module, encode_module
from hotswap.client import Client, Upgrade
from hotswap.errors import NodeError, StoreError
from hotswap.examples import handbuilt
from hotswap.lang.terms import Op, Prim
from hotswap.lang.types import INT, Prod
from hotswap.node.memory import MemoryNode
from hotswap.node.registry import Registry
from hotswap.node.server import _prepare_held
from hotswap.node.service import NodeConfig
from hotswap.node.store import PART_BYTES, PARTS_REFERENCE, Store
from hotswap.protocol.events import Error, Output, Send, UpgradeRequest
from hotswap.signing import TrustedKeys, generate_key
from served import Served

V1 = load_module(encode_module(handbuilt.counter_module()))
V2 = handbuilt.counter2_module()
#: ``(old, n) -> old + n``: back from the counter's version 2.
DOWNGRADE = migration_module(Prod(INT, INT), INT, Prim(Op.ADD))
INCR = b"\x00"


def _big(module: Module, tag: bytes, size: int = 2 * PART_BYTES + 4096) -> bytes:
    """``module`` with a custom section that brings it to about ``size`` bytes (three parts by
    default); ``tag`` makes the bytes its own (the identity stays the module's)."""
    pad = (tag + bytes(size))[:size]
    return encode_module(replace(module, custom=(*module.custom, ("zz-pad", pad))))


def _parts(db: sqlite3.Connection) -> dict[str, list[int]]:
    """The stored parts: digest -> their sizes, in order."""
    found: dict[str, list[int]] = {}
    rows = db.execute("SELECT digest, length(data) FROM module_parts ORDER BY digest, part")
    for digest, size in rows:
        found.setdefault(digest, []).append(size)
    return found


def _rows(db: sqlite3.Connection) -> dict[str, bytes]:
    """identity -> the data of its ``modules`` row (a reference for a module in parts)."""
    return {identity: bytes(data) for identity, data in db.execute("SELECT * FROM modules")}


def _sizes(length: int) -> list[int]:
    """The sizes of the parts of a module of ``length`` bytes."""
    return [min(PART_BYTES, length - start) for start in range(0, length, PART_BYTES)]


def test_a_large_module_is_kept_in_parts_and_read_back_the_same(tmp_path: Path) -> None:
    """Written by the loop itself (an in-memory node, a machine started by ``--machine``): the
    row holds a reference, the parts at most PART_BYTES each; small modules are rows as before;
    recovery loads the very bytes."""
    path = tmp_path / "s.db"
    v1 = _big(handbuilt.counter_module(), b"v1")
    v2 = _big(V2, b"v2", 5 * PART_BYTES // 2)
    migration = encode_module(handbuilt.upgrade_state_module())
    store, registry = Store(path), Registry()
    machine = registry.start("counter", load_module(v1))
    store.log_start(machine)
    registry.step("counter", INCR)
    store.log_input(machine, INCR, machine.identity)
    swap = registry.upgrade("counter", machine.identity, v2, migration)
    store.log_upgrade(machine, swap)
    registry.step("counter", INCR)
    store.log_input(machine, INCR, machine.identity)
    store.commit(registry.machines)
    rows, parts = _rows(store.db), _parts(store.db)
    assert rows[swap.migration.identity] == migration  # small: whole, as before
    assert len(parts) == 2
    for data in (v1, v2):
        identity = load_module(data).identity
        reference = rows[identity]
        assert reference.startswith(PARTS_REFERENCE) and len(reference) == 70
        assert parts[reference[len(PARTS_REFERENCE) :].decode()] == _sizes(len(data))
        assert store.module(identity) == data
    store.close()
    again = Store(path)
    try:
        (back,) = again.recover().machines
        assert (back.identity, back.state, back.inputs) == (swap.new.identity, (1, 1), 2)
        assert back.code.data == v2 and again.module(V1.identity) == v1
    finally:
        again.close()


def test_damaged_parts_are_a_store_error(tmp_path: Path) -> None:
    """Parts are checked against the digest they are kept under, and a loaded module against
    the identity it is stored as: a damaged store never runs other code, or other names."""
    path = tmp_path / "s.db"
    data = _big(handbuilt.counter_module(), b"damaged")
    store, registry = Store(path), Registry()
    store.log_start(registry.start("counter", load_module(data)))
    store.commit(registry.machines)
    store.close()
    damage = [
        ("UPDATE module_parts SET data = randomblob(length(data)) WHERE part = 1", ()),
        ("DELETE FROM module_parts WHERE part = 1", ()),
        # whole, under the counter's identity: another module
        ("UPDATE modules SET data = ? WHERE identity = ?", (encode_module(V2), V1.identity)),
    ]
    errors = [
        "not the bytes stored",
        r"lacks parts: 2 found, numbered \[0, 2\]",
        f"stored as {V1.identity[:12]} is another",
    ]
    for (sql, args), error in zip(damage, errors, strict=True):
        with closing(sqlite3.connect(path)) as db:  # closed: the store takes it exclusively
            db.execute(sql, args)
            db.commit()
        damaged = Store(path)
        try:
            with pytest.raises(StoreError, match=error):
                damaged.recover()
        finally:
            damaged.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A served node on the big counter (started by --machine: its parts written at start)."""
    big = _big(handbuilt.counter_module(), b"started")
    with Served(tmp_path, {"abacus": big}, trace="off") as node:
        yield node


def test_a_served_upgrade_and_rollback_stage_their_modules_off_the_loop(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade and a rollback of modules in parts: the loop writes their small rows alone,
    the loader thread every part; the rollback's code, stored already, is not
    written again; ``get_module`` and, after the node stops, recovery give the very bytes, and
    the parts of the migrations collected then are discarded."""
    store = served.node.service.store
    v1 = store.module(V1.identity)
    assert v1 is not None and len(v1) > PART_BYTES
    v2 = _big(V2, b"v2")
    forward = _big(handbuilt.upgrade_state_module(), b"forward")
    back = _big(DOWNGRADE, b"back")
    # which thread makes the rows of parts (no SQLite trace callback: a Python callback
    # inside SQLite, on a connection two threads share, can deadlock them on the GIL)
    made: list[bool] = []  # a part taken to be written: on the event loop's thread?
    loop_thread = served._thread
    real_parts = Store._parts

    def parts(digest: str, data: bytes) -> Iterator[tuple[str, int, memoryview]]:
        for row in real_parts(digest, data):
            made.append(threading.current_thread() is loop_thread)
            yield row

    monkeypatch.setattr(Store, "_parts", staticmethod(parts))
    with Client(served.address) as c:
        c.send_raw("abacus", INCR)
        done = c.upgrade("abacus", Upgrade(v1, v2, forward))
        c.send_raw("abacus", INCR)
        assert c.rollback("abacus", back).new == V1.identity  # v1 fetched from its parts
        assert c.status_raw("abacus").inputs == 2
        assert c.module(done.new) == v2 and c.module(load_module(forward).identity) == forward
    served.stop()  # its store closed: every part is in
    assert True not in made  # the loop writes no part
    # v2 and the migrations, 3 parts each; of v1, stored already, the first is looked at only
    assert len(made) == 10
    reopened = Store(tmp_path / "node.sqlite3")
    try:
        (machine,) = reopened.recover().machines
        assert (machine.identity, machine.state, machine.inputs) == (V1.identity, 2, 2)
        assert [c.identity for c in machine.history] == [V1.identity, done.new, V1.identity]
        assert reopened.module(V1.identity) == v1 and reopened.module(done.new) == v2
        sizes = _parts(reopened.db)
        assert len(sizes) == 4 and all(len(s) == 3 for s in sizes.values())  # once each
        # the stop's snapshot passed both migrations: collected, and their parts discarded
        migrations = [load_module(data).identity for data in (forward, back)]
        assert [reopened.module(identity) for identity in migrations] == [None, None]
        reopened.commit({machine.name: machine})  # the first commit collects
        assert reopened.discard() == 6 and len(_parts(reopened.db)) == 2
    finally:
        reopened.close()


def _wait_for(done: Callable[[], bool], what: str) -> None:
    """Wait until ``done()`` (the loader thread's work is over), for 10 s at most."""
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_refused_upgrade_leaves_nothing_referenced(served: Served, tmp_path: Path) -> None:
    """A trial upgrade on a machine with keyed instances passes every check of its modules,
    so they are staged, and is then refused: its parts are deleted off the loop, and no row
    references them; the running code's parts stay."""
    store = served.node.service.store
    v1 = store.module(V1.identity)
    assert v1 is not None
    before = _parts(store.db)
    with Client(served.address) as c:
        c.send_raw("abacus", INCR, key="someone")
        forward = _big(handbuilt.upgrade_state_module(), b"y")
        upgrade = Upgrade(v1, _big(V2, b"x"), forward)
        with pytest.raises(NodeError, match="keyed instance") as refused:
            c.upgrade("abacus", upgrade, trial=3)
        assert refused.value.code == "bad_request"
        assert c.status_raw("abacus").identity == V1.identity
    _wait_for(lambda: store.discarded == 6, "the parts were discarded")  # 3 each, one at a time
    # the node holds its store exclusively: read through its own connection
    assert _parts(store.db) == before
    referencing = [i for i, data in _rows(store.db).items() if data.startswith(PARTS_REFERENCE)]
    assert referencing == [V1.identity]


def test_parts_in_flight_are_kept_and_orphans_collected() -> None:
    """Staged parts are the request's until it is answered: collection and discard keep them.
    Once it is, or when a crash cut a staging short, they go (at the next start, for the
    crash's, before the node serves)."""
    data, crashed = _big(V2, b"in flight"), _big(V2, b"crashed")
    with MemoryNode({"counter": handbuilt.counter_module}) as node:
        store = node.service.store
        assert store.stage(data) and store.stage(crashed)
        store.collect_modules()
        store.commit(node.service.registry.machines)
        assert store.discard() == 0 and len(_parts(store.db)) == 2
        assert store.unstage([data, b"never staged"])  # answered: a discard is due
        assert store.discard() == 3
        assert list(_parts(store.db).values()) == [_sizes(len(crashed))]
        store.collect_modules()
        store.commit(node.service.registry.machines)
        assert store.discard() == 0  # the other is still in flight
        node.reopen()  # killed while staging it, and started again
        assert _parts(node.service.store.db) == {}
        assert node.service.store.discarded == 3


def test_a_staging_failure_is_the_requests_error_and_loses_nothing(tmp_path: Path) -> None:
    """The disk fills while a held upgrade's modules are staged (the store
    database may grow by one part, not two): the upgrade is refused ``overloaded`` and changes
    nothing, its part is deleted, the inputs around it are durable, and the node goes on."""
    with MemoryNode({"abacus": handbuilt.counter_module}, data=tmp_path) as node:
        service, store = node.service, node.service.store
        for rid in (1, 2):
            assert isinstance(service.handle(Send(rid, "abacus", INCR)), Output)
        service.commit()
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        size = store.db.execute("PRAGMA page_size").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages + PART_BYTES // size + 64}")
        v2 = _big(V2, b"full")
        migration = _big(handbuilt.upgrade_state_module(), b"full")
        request = UpgradeRequest(3, "abacus", V1.identity, v2, migration)
        modules = service.to_prepare(request)
        assert modules == [v2, migration]
        _prepare_held(modules, service.registry.fuel, service, request)  # the worker's part
        reply = service.handle(request)
        assert isinstance(reply, Error) and reply.code == "overloaded", reply
        assert "full" in reply.message and "try again later" in reply.message
        assert service.registry.get("abacus").identity == V1.identity
        assert len(_parts(store.db)) == 1  # the first part of the first module
        for data in modules:
            release(data)
        assert store.unstage(modules)
        assert store.discard() == 1 and _parts(store.db) == {}
        service.handle(Send(4, "abacus", INCR))
        service.commit()
        node.reopen()
        assert node.service.registry.get("abacus").inputs == 3


def test_a_module_the_disk_cannot_take_is_refused_before_a_part_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With less free space than twice a module and the reserve, its upgrade is refused
    ``overloaded``, saying how much is free and needed, before anything is written: staging
    never fills the disk that the inputs need (it did: the node then stopped on its next
    commit, and again after each restart)."""
    from hotswap.node import store as store_module  # noqa: PLC0415

    with MemoryNode({"abacus": handbuilt.counter_module}, data=tmp_path) as node:
        service, store = node.service, node.service.store
        before = _parts(store.db)
        v2 = _big(V2, b"room")
        migration = _big(handbuilt.upgrade_state_module(), b"room")
        free = 2 * (len(v2) + len(migration)) + store_module.STAGING_RESERVE - 1  # 1 B short
        usage = shutil.disk_usage(tmp_path)._replace(free=free)
        monkeypatch.setattr(shutil, "disk_usage", lambda _: usage)
        request = UpgradeRequest(1, "abacus", V1.identity, v2, migration)
        modules = service.to_prepare(request)
        _prepare_held(modules, service.registry.fuel, service, request)
        reply = service.handle(request)
        assert isinstance(reply, Error) and reply.code == "overloaded", reply
        assert "MiB free" in reply.message and "free some space" in reply.message
        assert _parts(store.db) == before  # not a part written
        assert service.registry.get("abacus").identity == V1.identity
        for data in modules:
            release(data)
        store.unstage(modules)
        assert isinstance(service.handle(Send(2, "abacus", INCR)), Output)
        service.commit()  # the node goes on


def test_a_large_change_with_a_bad_signature_is_hashed_off_the_loop_and_never_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --trust, the digests of an upgrade's modules were worked out on the event loop
    (11 ms per 16 MiB) to check its signature: a stolen upgrade token could stall the node
    with forged upgrades. The loader thread works them out now, and a change refused for its
    signature is neither loaded nor staged."""
    from hotswap import signing  # noqa: PLC0415
    from hotswap.cam import loaded as loaded_module  # noqa: PLC0415

    hashed: list[tuple[bool, int]] = []  # (on the event loop's thread, bytes)
    loads: list[int] = []
    real_digest, real_preload = signing.digest, loaded_module.preload

    def digest(data: bytes) -> str:
        hashed.append((threading.current_thread() is loop_thread, len(data)))
        return real_digest(data)

    def preload(data: bytes, fuel: int = 0) -> None:
        loads.append(len(data))
        real_preload(data, fuel)

    monkeypatch.setattr("hotswap.node.service.digest", digest)
    monkeypatch.setattr("hotswap.node.server.preload", preload)
    config = NodeConfig(trust=TrustedKeys([generate_key().public_key()]))
    with Served(tmp_path, {"abacus": handbuilt.counter_module}, config=config) as node:
        loop_thread = node._thread
        v2 = _big(V2, b"forged")
        migration = _big(handbuilt.upgrade_state_module(), b"forged")
        forged = UpgradeRequest(1, "abacus", V1.identity, v2, migration, signature=bytes(64))
        with Client(node.address) as c:
            reply = c.request(forged)
            assert isinstance(reply, Error) and reply.code == "forbidden", reply
            assert c.status_raw("abacus").identity == V1.identity
        assert _parts(node.node.service.store.db) == {}
    large = [on_loop for on_loop, size in hashed if size > PART_BYTES]
    assert large and True not in large  # hashed, and never on the loop
    assert not [size for size in loads if size > PART_BYTES]  # never loaded
