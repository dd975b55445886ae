"""Reading ahead: a connection reads the inputs already in its buffer ahead of answering them
(``ServerConnection.look_ahead``), and the node reads the checkpoints of the instances they go
to in one query (``Service.prefetch``, ``Store.prefetch``). What it reads must be exactly what
each input would have read itself, whatever comes in between."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hotswap.errors import StoreError
from hotswap.examples import handbuilt
from hotswap.node import store as store_module
from hotswap.node.memory import MemoryNode
from hotswap.node.service import Conversation, NodeConfig, Service
from hotswap.node.store import Store
from hotswap.protocol import ClientConnection, Hello, ServerConnection, Status, Welcome
from hotswap.protocol.codec import encode_message
from hotswap.protocol.events import (
    NEED_DATA,
    Delete,
    Error,
    ErrorCode,
    InstancesRequest,
    Machines,
    Output,
    Request,
    Send,
    StatusReply,
)
from hotswap.protocol.framing import frame

INCR, COUNT = b"\x00", b"\x01"


def _ready() -> tuple[ClientConnection, ServerConnection]:
    client, server = ClientConnection(), ServerConnection()
    server.receive_data(client.send(Hello()))
    hello = server.next_event()
    assert isinstance(hello, Hello)
    client.receive_data(server.send(Welcome(version=hello.version)))
    assert isinstance(client.next_event(), Welcome)
    return client, server


def test_inputs_read_ahead_are_handed_out_in_order_up_to_the_first_other_frame() -> None:
    client, server = _ready()
    sends = [Send(i, "counter", INCR, key=f"k{i}") for i in range(1, 6)]
    data = b"".join(client.send(s) for s in sends) + client.send(Machines(9))
    one = 4 + int.from_bytes(data[:4], "big")  # the first frame
    server.receive_data(data[:one])
    assert not server.look_ahead(3)  # one frame: nothing to read ahead (next_input reads it)
    server.receive_data(data[one:-3])  # the last frame is not whole yet
    ahead = server.look_ahead(3)
    assert [fields[0] for _, fields in ahead] == [1, 2, 3]
    assert server.buffered == len(data) - 3  # nothing taken from the buffer
    assert len(server.look_ahead(100)) == 3  # nothing more read while some are left
    taken = []

    def take() -> None:
        fields = server.next_input()
        assert fields is not None
        taken.append((fields[0], fields[5]))
        server.expect(fields[0], False)
        server.send(Error(fields[0], ErrorCode.TRAP, "answered"))

    for _ in range(3):
        take()
    server.receive_data(data[-3:])
    assert [fields[0] for _, fields in server.look_ahead(100)] == [4, 5]  # up to the Machines
    take()
    take()
    assert server.next_input() is None
    assert taken == [(i, f"k{i}") for i in range(1, 6)]
    assert server.next_event() == Machines(9)


def test_a_frame_taken_as_an_event_drops_what_was_read_ahead() -> None:
    """While a reply is owed nothing is read ahead, and an event taken from the buffer (here
    because the caller chose the long way) takes the first frame, read ahead or not."""
    client, server = _ready()
    sends = [Send(i, "counter", INCR) for i in range(1, 4)]
    server.receive_data(b"".join(client.send(s) for s in sends))
    assert len(server.look_ahead(10)) == 3
    first = server.next_event()
    assert first == sends[0]
    assert not server.ahead
    assert not server.look_ahead(10)  # the Send taken as an event is owed a reply
    server.send(Error(1, ErrorCode.TRAP, "answered"))
    assert [fields[0] for _, fields in server.look_ahead(10)] == [2, 3]
    fields = server.next_input()
    assert fields is not None and fields[0] == 2


def test_a_keyed_input_is_not_read_ahead_before_version_3() -> None:
    client, server = ClientConnection(), ServerConnection()
    server.receive_data(client.send(Hello(version=2)))
    hello = server.next_event()
    assert isinstance(hello, Hello)
    client.receive_data(server.send(Welcome(version=2)))
    client.next_event()
    server.receive_data(
        frame(_encode(Send(1, "counter", INCR), 2))
        + frame(_encode(Send(2, "counter", INCR, key="k"), 3))
    )
    assert [fields[0] for _, fields in server.look_ahead(10)] == [1]


def _encode(request: Request, version: int) -> bytes:
    return encode_message(request, version)


def test_a_checkpoint_read_ahead_is_the_row_and_is_read_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Store.prefetch`` reads the rows of many keys in one statement; ``load_instance`` then
    takes each without one of its own (a key with no row too), once."""
    with MemoryNode({"counter": handbuilt.counter_module}) as node:
        service = node.service
        for i in range(6):
            for _ in range(i + 1):
                service.take(i, "counter", None, INCR, True, f"k{i}")
        service.store.flush(everything=True)
        service.commit()
        store = service.store
        machine = service.registry.machines["counter"]
        direct = {k: store.load_instance(machine, k) for k in ("k1", "k4")}
        statements: list[str] = []
        store.db.set_trace_callback(statements.append)
        store.prefetch(machine, ["k1", "k4", "k1", "nobody"])
        assert len(statements) == 1 and " IN (" in statements[0]
        statements.clear()
        for key, instance in direct.items():
            read = store.load_instance(machine, key)
            assert read is not None and instance is not None
            assert (read.state, read.inputs, read.generation, read.seq) == (
                instance.state,
                instance.inputs,
                instance.generation,
                instance.seq,
            )
        assert store.load_instance(machine, "nobody") is None
        assert statements == []
        assert store.load_instance(machine, "k1") is not None  # taken: read again
        assert len(statements) == 1 and " IN (" not in statements[0]
        store.db.set_trace_callback(None)


def test_a_prefetch_leaves_out_keys_whose_newest_checkpoint_is_in_memory() -> None:
    """A key whose checkpoint waits in the write-back (newer than the table's row) is not read
    ahead: ``load_instance`` finds the held one."""
    with MemoryNode({"counter": handbuilt.counter_module}, config=NodeConfig(cache=1)) as node:
        service = node.service
        for key in ("a", "b", "a", "b", "c"):
            service.take(1, "counter", None, INCR, True, key)
            service.commit()
        store: Store = service.store
        machine = service.registry.machines["counter"]
        held = [key for key in ("a", "b") if store._write_back.get(("counter", key))]
        assert held  # evicted on their own generation: held, not written
        statements: list[str] = []
        store.db.set_trace_callback(statements.append)
        store.prefetch(machine, ["a", "b"])
        store.db.set_trace_callback(None)
        assert statements == []  # both held (or queued): nothing to read
        instance = store.load_instance(machine, "a")
        assert instance is not None and instance.inputs == 2


def _replies(node: MemoryNode, requests: list[Request], chunk: int) -> list[object]:
    """What ``node`` answers to ``requests`` arriving ``chunk`` frames at a time, each chunk
    committed before the next (as a server commits a turn)."""
    conversation, client = Conversation(node.service), ClientConnection()
    fed = conversation.receive(client.send(Hello()))
    out: list[object] = []

    def read(replies: list[bytes]) -> None:
        client.receive_data(b"".join(replies))
        while (event := client.next_event()) is not NEED_DATA:
            out.append(event)

    read(fed.replies)
    out.clear()
    for start in range(0, len(requests), chunk):
        fed = conversation.receive(
            b"".join(client.send(r) for r in requests[start : start + chunk])
        )
        assert fed.failure is None
        node.service.commit()
        read(fed.replies)
        while fed.more:
            fed = conversation.proceed()
            node.service.commit()
            read(fed.replies)
    return out


def _workload(seed: int, count: int) -> list[Request]:
    """Keyed inputs to a few keys with deletes, status reads and listings among them."""
    rng = random.Random(seed)
    keys = [f"u{i}" for i in range(12)]
    requests: list[Request] = []
    for rid in range(1, count + 1):
        roll = rng.random()
        key = rng.choice(keys)
        if roll < 0.06:
            requests.append(Delete(rid, "counter", key))
        elif roll < 0.1:
            requests.append(Status(rid, "counter", key))
        elif roll < 0.12:
            requests.append(InstancesRequest(rid, "counter", 100))
        else:
            requests.append(Send(rid, "counter", INCR if rng.random() < 0.8 else COUNT, key=key))
    return requests


def _timeless(reply: object) -> object:
    """``reply`` without the times of the history a status carries (each node has its own)."""
    if isinstance(reply, StatusReply):
        return replace(reply, history=tuple(replace(h, time=0.0) for h in reply.history))
    return reply


def _rows(data: Path) -> list[tuple[str, bytes, int]]:
    """The checkpoints of the store in ``data`` (of a node stopped cleanly: every instance)."""
    with closing(sqlite3.connect(data / "node.sqlite3")) as db:
        return db.execute("SELECT key, state, inputs FROM instances ORDER BY key").fetchall()


@pytest.mark.parametrize("seed", range(6))
def test_pipelined_inputs_read_ahead_answer_as_inputs_one_at_a_time(
    seed: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same requests, pipelined in chunks (read ahead, checkpoints prefetched) and one a
    turn (nothing to read ahead), on a cache of 2 instances and a small replay window (the
    write-back busy): the same replies, and the same instances once the nodes stop."""
    monkeypatch.setattr(store_module, "REPLAY_WINDOW", 200)
    requests = _workload(seed, 700)
    fetched: list[int] = []
    prefetch = Store.prefetch

    def counting(self: Store, machine: object, keys: list[str]) -> None:
        fetched.append(len(keys))
        prefetch(self, machine, keys)  # type: ignore[arg-type]

    config = NodeConfig(cache=2)
    with MemoryNode(
        {"counter": handbuilt.counter_module}, data=tmp_path / "1", config=config
    ) as one:
        alone = _replies(one, requests, 1)
    assert not fetched
    monkeypatch.setattr(Store, "prefetch", counting)
    with MemoryNode(
        {"counter": handbuilt.counter_module}, data=tmp_path / "n", config=config
    ) as many:
        together = _replies(many, requests, 1 + seed * 7 + 9)
    assert fetched  # read ahead, for many keys at a time
    assert [_timeless(r) for r in together] == [_timeless(r) for r in alone]
    assert _rows(tmp_path / "n") == _rows(tmp_path / "1") != []
    assert sum(isinstance(r, Output) for r in alone) > len(requests) // 2  # inputs answered
    assert any(isinstance(r, StatusReply) for r in alone)


def test_a_failed_read_ahead_is_a_store_error_naming_the_machine() -> None:
    """A failed read ahead is the store's error, named, as a failed read of one key is."""
    with MemoryNode({"counter": handbuilt.counter_module}) as node:
        store = node.service.store
        machine = node.service.registry.machines["counter"]
        db = store.db
        store.db = sqlite3.connect(":memory:")  # no instances table: every read fails
        try:
            with pytest.raises(StoreError, match="reading instances of 'counter'"):
                store.prefetch(machine, ["a", "b"])
        finally:
            store.db.close()
            store.db = db


def _make(service: Service, count: int) -> None:
    """Instances ``k0`` to ``k{count - 1}`` of the counter, an input each, committed."""
    for i in range(count):
        service.take(i, "counter", None, INCR, False, f"k{i}")
    service.commit()


def test_rows_read_ahead_for_inputs_refused_stay_bounded() -> None:
    """Inputs refused before their instance is read (a checked send to other code, say) leave
    the rows read for them: however many come between two commits, the store keeps at most
    ``PREFETCH_KEPT`` and a query's worth."""
    with MemoryNode({"counter": handbuilt.counter_module}) as node:
        service = node.service
        _make(service, 3000)
        store = service.store
        machine = service.registry.machines["counter"]
        largest = 0
        for start in range(0, 3000, 256):
            store.prefetch(machine, [f"k{i}" for i in range(start, start + 256)])
            largest = max(largest, len(store._prefetched))
        assert store_module.PREFETCH_KEPT < largest <= store_module.PREFETCH_KEPT + 256
        forgotten = store.load_instance(machine, "k0")  # read ahead, forgotten: read again
        assert forgotten is not None and forgotten.inputs == 1


class _FailingReads:
    """A store's connection whose ``key IN (...)`` reads fail (a disk's I/O error, say); every
    other statement goes through."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if " IN (" in sql:
            raise sqlite3.OperationalError("disk I/O error")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)


def test_a_read_ahead_that_fails_stops_the_conversation_as_a_failed_read_would() -> None:
    """The store failing under a read ahead is fail-stop: :attr:`Fed.failure` names it, no
    reply of the batch is sent and nothing after the failure is applied (before, the error
    came out of ``receive`` as an exception, past the node's handling of failures)."""
    with MemoryNode({"counter": handbuilt.counter_module}, config=NodeConfig(cache=1)) as node:
        service = node.service
        _make(service, 8)
        conversation, client = Conversation(service), ClientConnection()
        client.receive_data(b"".join(conversation.receive(client.send(Hello())).replies))
        assert isinstance(client.next_event(), Welcome)
        store = service.store
        real, seq = store.db, store.last_seq
        store.db = _FailingReads(real)  # type: ignore[assignment]
        try:
            sends = [Send(10 + i, "counter", INCR, key=f"k{i}") for i in range(8)]
            fed = conversation.receive(b"".join(client.send(s) for s in sends))
        finally:
            store.db = real
        assert isinstance(fed.failure, StoreError)
        assert "reading instances of 'counter'" in str(fed.failure)
        assert fed.replies == [] and conversation.over
        assert store.last_seq == seq + 1  # the input before the read ahead, never acknowledged


def test_states_read_ahead_and_left_are_bounded_in_bytes_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row read ahead is a whole state: a prefetch stops at the row that takes the states
    read ahead since the store last forgot them past ``PREFETCH_KEPT_BYTES``, the next one
    forgets them first, and what it left out is read one key at a time, exactly: a key of
    the query it stopped in is not taken for one without a row."""
    monkeypatch.setattr(store_module, "PREFETCH_KEPT_BYTES", 64)
    with MemoryNode({"counter": handbuilt.counter_module}) as node:
        service = node.service
        _make(service, 600)
        store = service.store
        machine = service.registry.machines["counter"]
        wanted = [key for i in range(150) for key in (f"k{i}", f"none{i}")]  # half have rows
        store.prefetch(machine, wanted)
        first = dict(store._prefetched)
        assert 0 < len(first) < 100 and () not in first.values()  # stopped within the query
        assert store._prefetched_bytes > 64
        for i in range(150):  # before any commit: those read ahead, and those left out
            instance = store.load_instance(machine, f"k{i}")
            assert instance is not None and instance.inputs == 1, i
            assert store.load_instance(machine, f"none{i}") is None
        store.prefetch(machine, [f"k{i}" for i in range(300, 600)])
        assert not any(key == f"k{i}" for _, key in store._prefetched for i in range(300))
        service.commit()
        assert store._prefetched == {}  # the commit forgets what is past the bound
        for i in (0, 299, 599):
            instance = store.load_instance(machine, f"k{i}")
            assert instance is not None and instance.inputs == 1


def test_inputs_checked_against_other_code_are_not_read_ahead() -> None:
    """A ``send_checked`` naming code the machine does not run is refused before its instance
    is read: reading ahead leaves its key out."""
    with MemoryNode({"counter": handbuilt.counter_module}, config=NodeConfig(cache=1)) as node:
        service = node.service
        _make(service, 8)
        running = service.registry.machines["counter"].identity
        other = "0" * 64
        inputs = [
            (i, ("counter", other if i % 2 else running, INCR, False, f"k{i}")) for i in range(8)
        ]
        service.prefetch([(i, (i, *fields)) for i, fields in inputs])
        kept = {key for _, key in service.store._prefetched}
        assert kept == {f"k{i}" for i in range(0, 8, 2)}
