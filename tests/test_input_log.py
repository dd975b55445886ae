"""The input log (``hotswap.node.inputlog``): a commit of a few inputs appends them to
``DATA/node.inputs`` and SQLite takes them later; opening the store joins the two before
anything reads the log, and refuses an input log that does not follow SQLite's last entry.
A store of schema 7 (``tests/fixtures/store_v7.sqlite3``, written by that release:
``tests/fixtures/record_schema7.py``) opens at schema 8 and recovers exactly."""

from __future__ import annotations

import errno
import io
import os
import shutil
import sqlite3
import struct
import time
import zlib
from pathlib import Path

import pytest

from hotswap.cam.loaded import load
from hotswap.client import Client
from hotswap.errors import StoreError
from hotswap.examples import counter, handbuilt
from hotswap.node import store as store_module
from hotswap.node.inputlog import HEADER, InputLog
from hotswap.node.main import NodeOptions, open_service
from hotswap.node.memory import MemoryNode
from hotswap.node.registry import Machine, Registry
from hotswap.node.service import NodeConfig
from hotswap.node.store import LOG_BATCH, LOG_ROWS, SCHEMA_VERSION, Store
from hotswap.node.trace import Trace
from instance_machines import Add, tally_v1
from nodeproc import NodeProcess
from served import Served
from test_store_schema7 import KNOWN, MACHINES, WANT, _more, _oracle, _seen

INCR = b"\x00"
FIXTURE_V7 = Path(__file__).parent / "fixtures" / "store_v7.sqlite3"


def _started(path: Path) -> tuple[Store, Registry, Machine]:
    store = Store(path)
    registry = Registry()
    machine = registry.start("counter", load(handbuilt.counter_module()))
    store.log_start(machine)
    store.commit(registry.machines)
    return store, registry, machine


def _lone_inputs(store: Store, registry: Registry, machine: Machine, count: int) -> None:
    """``count`` inputs, each committed alone (a lone client's)."""
    for _ in range(count):
        store.log_input(machine, INCR, registry.step("counter", INCR).identity)
        store.commit(registry.machines)


def _sqlite_inputs(path: Path) -> int:
    """The inputs the database (with its write-ahead log) holds, read by a connection of its
    own: the store is closed."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM log WHERE kind = 'input'").fetchone()[0])
    finally:
        db.close()


def test_frames_read_back_as_written(tmp_path: Path) -> None:
    """Default and keyed inputs, a key and a machine name beyond ASCII, an empty payload, no
    generation: every field reads back as it was appended, in order."""
    log = InputLog(tmp_path / "node.inputs", fsync=False)
    assert log.read().inputs == []  # a new file: its header is written
    inputs = [(7, "counter", "ab" * 32, INCR, 3, 1.5), (9, "zähler", "cd" * 32, b"", 4, 2.25)]
    keyed = [
        (8, "tally", "ef" * 32, b"\x01\x02", 3.0, "user-42", 0),
        (10, "tally", "ef" * 32, b"\x03", 4.0, "ключ", None),
    ]
    log.append(inputs, keyed)
    log.append([(11, "counter", "ab" * 32, INCR, 5, 5.0)], [])
    log.close()
    again = InputLog(tmp_path / "node.inputs", fsync=False)
    read = again.read()
    assert read.inputs == [*inputs, (11, "counter", "ab" * 32, INCR, 5, 5.0)]
    assert read.keyed == keyed
    assert read.dropped == 0
    again.close()


def test_lone_inputs_wait_in_the_input_log_and_a_kill_loses_none(tmp_path: Path) -> None:
    """Inputs committed one at a time go to the input log, not SQLite; a store closed as a
    killed node leaves it recovers every one, with SQLite holding them and the input log cut
    back to its header."""
    path = tmp_path / "node.sqlite3"
    store, registry, machine = _started(path)
    _lone_inputs(store, registry, machine, 25)
    assert store.logged == 25
    store.close()  # no settle, no checkpoint: as a kill leaves it
    assert (tmp_path / "node.inputs").stat().st_size > len(HEADER) + 25 * 80
    assert _sqlite_inputs(path) == 0
    reopened = Store(path)
    try:
        assert (tmp_path / "node.inputs").read_bytes() == HEADER
        assert reopened.logged == 0 and reopened.last_seq == 26
        (back,) = reopened.recover().machines
        assert (back.inputs, back.state) == (25, 25)
    finally:
        reopened.close()
    assert _sqlite_inputs(path) == 25


def test_settle_writes_the_input_log_into_sqlite(tmp_path: Path) -> None:
    """``settle`` writes what the input log holds into SQLite in one transaction and cuts the
    file back; a second settle has nothing to do."""
    path = tmp_path / "node.sqlite3"
    store, registry, machine = _started(path)
    _lone_inputs(store, registry, machine, 10)
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    store.settle()
    store.settle()
    store.db.set_trace_callback(None)
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
    assert sum("INSERT INTO log" in s for s in statements) == 10
    assert store.logged == 0
    assert (tmp_path / "node.inputs").read_bytes() == HEADER
    store.close()
    assert _sqlite_inputs(path) == 10


def test_a_large_batch_goes_to_sqlite_and_the_log_is_bounded(tmp_path: Path) -> None:
    """A commit of more than LOG_BATCH inputs is written into SQLite at once, with what the
    input log held; and once the input log holds LOG_ROWS inputs, the next commit writes them
    all into SQLite, whoever calls ``settle``."""
    path = tmp_path / "node.sqlite3"
    store, registry, machine = _started(path)
    _lone_inputs(store, registry, machine, 3)
    for _ in range(LOG_BATCH + 1):
        store.log_input(machine, INCR, registry.step("counter", INCR).identity)
    store.commit(registry.machines)
    assert store.logged == 0
    assert (tmp_path / "node.inputs").read_bytes() == HEADER
    _lone_inputs(store, registry, machine, LOG_ROWS)
    assert store.logged == LOG_ROWS
    _lone_inputs(store, registry, machine, 1)
    assert store.logged == 0
    assert (tmp_path / "node.inputs").read_bytes() == HEADER
    store.close()
    assert _sqlite_inputs(path) == 3 + LOG_BATCH + 1 + LOG_ROWS + 1


def test_a_torn_frame_at_the_end_is_dropped(tmp_path: Path) -> None:
    """The half of a frame at the end (a write torn by power loss: never acknowledged) is
    dropped; every whole frame before it is recovered."""
    path = tmp_path / "node.sqlite3"
    store, registry, machine = _started(path)
    _lone_inputs(store, registry, machine, 5)
    store.close()
    log = tmp_path / "node.inputs"
    frames = log.read_bytes()[len(HEADER) :]
    one = len(frames) // 5
    with log.open("ab") as f:
        f.write(frames[: one // 2])
    reopened = Store(path)
    try:
        assert reopened.log_dropped == one // 2
        (back,) = reopened.recover().machines
        assert back.inputs == 5
    finally:
        reopened.close()


@pytest.mark.parametrize("damage", ["last", "middle", "header"])
def test_damage_inside_the_input_log_is_refused_until_the_loss_is_accepted(
    tmp_path: Path, damage: str
) -> None:
    """A whole frame whose bytes changed fails its checksum, in the last frame or in the middle
    (valid frames after it: damage, never taken for a write cut short), and a file of another
    format is refused, the store left as it was, with or without the position file. With
    ``accept_loss`` the entries before the damage are kept, the file's bytes are kept aside as
    they were, and the input log starts again."""
    path = tmp_path / "node.sqlite3"
    store, registry, machine = _started(path)
    _lone_inputs(store, registry, machine, 5)
    store.close()
    log = tmp_path / "node.inputs"
    data = bytearray(log.read_bytes())
    one = (len(data) - len(HEADER)) // 5
    kept = {"last": 4, "middle": 2, "header": 0}[damage]
    if damage == "header":
        data[:8] = b"garbage!"
    else:
        data[len(HEADER) + kept * one + 20] ^= 0xFF  # inside that frame's body
    log.write_bytes(bytes(data))
    (tmp_path / "node.position").unlink()  # what the input log says alone
    with pytest.raises(StoreError) as refused:
        Store(path)
    message = str(refused.value)
    if damage == "header":
        assert (
            "does not begin with the line 'hotswap-inputs 1' (it begins with 'garbage!" in message
        )
    else:
        assert f"the frame at byte {len(HEADER) + kept * one:,} does not check" in message
    assert "changed nothing" in message and "--accept-loss" in message
    assert log.read_bytes() == bytes(data)  # refusing changed nothing
    assert _sqlite_inputs(path) == 0
    accepted = Store(path, accept_loss=True)
    try:
        assert accepted.log_damage is not None and accepted.log_set_aside is not None
        assert accepted.log_set_aside.read_bytes() == bytes(data)
        (back,) = accepted.recover().machines
        assert back.inputs == kept
    finally:
        accepted.close()
    assert log.read_bytes() == HEADER


def test_zeros_at_the_end_are_a_write_cut_short(tmp_path: Path) -> None:
    """Space a file system allocated and never wrote (power loss) reads as zeros: a torn end,
    dropped, not damage."""
    path = tmp_path / "node.sqlite3"
    store, registry, machine = _started(path)
    _lone_inputs(store, registry, machine, 3)
    store.close()
    with (tmp_path / "node.inputs").open("ab") as f:
        f.write(bytes(300))
    reopened = Store(path)
    try:
        assert reopened.log_dropped == 300
        (back,) = reopened.recover().machines
        assert back.inputs == 3
    finally:
        reopened.close()


def test_an_input_log_after_a_gap_is_refused_until_the_loss_is_accepted(tmp_path: Path) -> None:
    """Entries in the input log that do not follow SQLite's last (the database put back from an
    older copy, or its write-ahead log lost, while the input log survived) are refused with the
    missing entries named; ``accept_loss`` keeps what the database holds and the entries before
    the gap."""
    path = tmp_path / "node.sqlite3"
    store, registry, machine = _started(path)
    store.close()
    shutil.copyfile(path, tmp_path / "old.sqlite3")  # the start alone
    store = Store(path)
    registry = Registry()
    (machine,) = store.recover().machines
    registry.restore(machine)
    _lone_inputs(store, registry, machine, 4)
    store.settle()  # entries 2 to 5 in SQLite
    _lone_inputs(store, registry, machine, 3)  # 6 to 8 in the input log
    store.close()
    shutil.copyfile(tmp_path / "old.sqlite3", path)
    with pytest.raises(StoreError) as refused:
        Store(path)
    message = str(refused.value)
    assert "its log ends at entry 1, but its input log" in message
    assert "holds entries from 6 to 8" in message and "entries 2 to 5 are missing" in message
    assert "--accept-loss" in message
    accepted = Store(path, accept_loss=True)
    try:
        assert accepted.lost == (1, 8)
        (back,) = accepted.recover().machines
        assert back.inputs == 0
    finally:
        accepted.close()
    assert (tmp_path / "node.inputs").read_bytes() == HEADER


def test_a_failed_write_of_the_input_log_acknowledges_nothing_and_leaves_no_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at the input log's write is a store error; what was queued is dropped (it
    was never acknowledged), its seqs are given out again, and what the input log held before
    is still recovered."""
    path = tmp_path / "node.sqlite3"
    store, registry, machine = _started(path)
    _lone_inputs(store, registry, machine, 2)

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    store.log_input(machine, INCR, registry.step("counter", INCR).identity)
    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        with pytest.raises(StoreError, match=r"writing the input log .* No space left"):
            store.commit(registry.machines)
    assert store.last_seq == 3
    machine.inputs -= 1  # what a node restarted from the store would run on
    _lone_inputs(store, registry, machine, 1)
    store.close()
    reopened = Store(path)
    try:
        (back,) = reopened.recover().machines
        assert back.inputs == 3
    finally:
        reopened.close()


def test_a_store_written_by_schema_7_opens_at_schema_8_and_recovers_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fixture of schema 7 (the requests of schema 6's fixture, killed) opens at schema 8
    without a copy of anything, recovers every instance with the generation, code, state and
    input count it had, and runs on as a new node does, across a kill that leaves inputs in
    the input log."""
    before, outputs, after = _oracle()
    assert before == WANT
    fixture = sqlite3.connect(FIXTURE_V7)
    assert fixture.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("7",)
    log = fixture.execute("SELECT * FROM log ORDER BY seq").fetchall()
    instances = fixture.execute("SELECT * FROM instances ORDER BY machine, key").fetchall()
    fixture.close()
    shutil.copyfile(FIXTURE_V7, tmp_path / "node.sqlite3")
    capsys.readouterr()
    with MemoryNode(MACHINES, data=tmp_path, config=NodeConfig(sweep_rate=0)) as node:
        assert "Upgraded the store from schema 7 to 8 in place" in capsys.readouterr().out
        db = node.service.store.db
        assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION) == "8"
        assert db.execute("SELECT * FROM log ORDER BY seq").fetchall() == log
        assert db.execute("SELECT * FROM instances ORDER BY machine, key").fetchall() == instances
        assert _seen(node) == WANT
        c = Client(transport=node.connection(), machines=KNOWN)
        assert _more(c) == outputs
        assert _seen(node) == after
        for _ in range(3):
            c.send("tally", Add(1))  # the default instance: lone commits, in the input log
        assert node.service.store.logged >= 3
        tally = c.status("tally").state
        node.reopen()  # a kill
        assert _seen(node) == after
        c = Client(transport=node.connection(), machines=KNOWN)
        assert c.status("tally").state == tally


def test_a_memory_node_killed_with_keyed_inputs_in_the_input_log_recovers_them(
    tmp_path: Path,
) -> None:
    """Keyed inputs committed alone wait in the input log with their key and generation; a
    kill loses none of them."""
    config = NodeConfig(sweep_rate=0)
    with MemoryNode({"tally": tally_v1}, data=tmp_path, config=config) as node:
        c = Client(transport=node.connection(), machines=[tally_v1])
        for key in ("a", "b"):
            c.send("tally", Add(1), key=key)  # each made: a checkpoint, a full commit
        node.service.store.settle()
        for n in range(2, 12):
            c.send("tally", Add(n), key="a" if n % 2 else "b")
        assert node.service.store.logged == 10
        node.reopen()
        c = Client(transport=node.connection(), machines=[tally_v1])
        assert c.status("tally", key="a").state == 1 + 3 + 5 + 7 + 9 + 11
        assert c.status("tally", key="b").state == 1 + 2 + 4 + 6 + 8 + 10
        assert c.status("tally", key="a").inputs == 6


def test_the_served_node_settles_its_input_log_soon_after_a_commit(tmp_path: Path) -> None:
    """The served node writes a lone client's inputs into SQLite ``SETTLE_AFTER`` seconds
    after their commit, so the input log stays short without any full commit."""
    served = Served(tmp_path, {"counter": counter.counter_sm}, trace="off")
    try:
        with Client(served.address) as c:
            for _ in range(5):
                c.send("counter", counter.Incr())
            store = served.node.service.store
            waited = 0.0
            while store.logged and waited < 10:  # within the settle delay on an idle machine
                time.sleep(store_module.SETTLE_AFTER)
                waited += store_module.SETTLE_AFTER
            assert store.logged == 0
            assert c.status("counter").inputs == 5
    finally:
        served.stop()


def test_a_write_cut_short_leaves_a_prefix_of_its_entries(tmp_path: Path) -> None:
    """A batch's frames go in seq order whatever their kind, so a write cut short (a kill in
    it, power lost) leaves entries 2, then 2 and 3, never 2 and 4 without 3 (a gap, which
    would read as lost work)."""
    path = tmp_path / "node.inputs"
    log = InputLog(path, fsync=False)
    log.read()
    ident = "ab" * 32
    log.append(
        [(2, "m", ident, b"\x00", 1, 1.0), (4, "m", ident, b"\x00", 2, 1.0)],
        [(3, "t", ident, b"\x01", 1.0, "k", 0)],
    )
    log.close()
    data = path.read_bytes()
    at, order, starts = len(HEADER), [], []
    while at < len(data):
        starts.append(at)
        order.append(int.from_bytes(data[at + 9 : at + 17], "little", signed=True))
        at += 8 + int.from_bytes(data[at : at + 4], "little")
    assert order == [2, 3, 4]
    path.write_bytes(data[: starts[2] + 5])  # the first two frames, and 5 bytes of the third
    cut = InputLog(path, fsync=False)
    read = cut.read()
    cut.close()
    assert [r[0] for r in read.inputs] == [2] and [r[0] for r in read.keyed] == [3]
    assert read.dropped == 5


def test_a_frame_that_checks_but_does_not_read_is_a_store_error(tmp_path: Path) -> None:
    """A frame whose checksum holds but whose fields are not an input (only another writer
    makes one: a machine name that is not UTF-8 here) is refused as damage, at its byte,
    not read and not raised as a decoding error."""
    path = tmp_path / "node.sqlite3"
    store, _, _ = _started(path)
    store.close()
    body = struct.pack("<BqqdHBI", 1, 2, 1, 1.0, 2, 0, 0) + b"\xff\xfe"
    with (tmp_path / "node.inputs").open("ab") as f:
        f.write(struct.pack("<II", len(body), zlib.crc32(body)) + body)
    with pytest.raises(StoreError, match=r"node.inputs, the frame at byte 17 checks but is not"):
        Store(path)


def test_a_torn_end_is_noted_at_start(tmp_path: Path) -> None:
    """The node says at start that it dropped the torn end of its input log, and recovers
    every whole entry before it."""
    store, registry, machine = _started(tmp_path / "node.sqlite3")
    _lone_inputs(store, registry, machine, 3)
    store.close()  # as a kill leaves it
    with (tmp_path / "node.inputs").open("ab") as f:
        f.write(b"\x10\x00")
    out = io.StringIO()
    options = NodeOptions(data=tmp_path, machines=(("counter", handbuilt.counter_module()),))
    service = open_service(options, Trace("off", out))
    try:
        assert service.registry.get("counter").inputs == 3
    finally:
        service.store.close()
    assert "the input log ended in 2 bytes that are not a whole entry" in out.getvalue()


def test_a_real_node_killed_right_after_lone_inputs_keeps_every_one(tmp_path: Path) -> None:
    """A lone client's inputs, each acknowledged before the next, to the default instance
    and to keyed ones, then SIGKILL at once (the last of them still in the input log, most
    runs: SQLite takes them 10 ms after their commit): the restarted node has exactly every
    acknowledged input, each once, and its input log is cut back to its header."""
    counter_ref = "hotswap.examples.counter:counter_sm"
    node = NodeProcess(tmp_path, {"counter": counter_ref}, "--trace", "off")
    try:
        with Client(node.address) as c:
            for i in range(300):
                c.send("counter", counter.Incr())
                c.send("counter", counter.Incr(), key=f"k{i % 7}")
    finally:
        node.kill()
    with NodeProcess(tmp_path, {"counter": counter_ref}, "--trace", "off") as again:
        assert (tmp_path / "node.inputs").read_bytes() == HEADER  # all of it in SQLite now
        with Client(again.address) as c:
            assert c.send("counter", counter.Count()) == 300
            assert [c.status("counter", key=f"k{k}").state for k in range(7)] == [
                len(range(k, 300, 7)) for k in range(7)
            ]
        assert again.stop() == 0
    assert (tmp_path / "node.inputs").read_bytes() == HEADER  # a clean stop leaves none
