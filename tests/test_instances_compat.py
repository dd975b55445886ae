"""Keyed instances and what came before them: today's clients (recorded frames of the release
before instances, protocol version 2), stores written by that release (schema 2), and the
protocol's version 3 messages and limits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cbor2
import pytest

from hotswap.client import Client
from hotswap.errors import LocalProtocolError, RemoteProtocolError
from hotswap.examples import bank, counter
from hotswap.node.memory import MemoryNode
from hotswap.node.store import SCHEMA_VERSION, Store
from hotswap.protocol.codec import decode_message, decode_schema, encode_message, encode_schema
from hotswap.protocol.events import (
    CodeCount,
    Delete,
    Deleted,
    Deploy,
    Deployed,
    InstancesReply,
    InstancesRequest,
    Send,
    SendChecked,
    Status,
    StatusReply,
    SweepProgress,
    TrappedInstance,
    UpgradeRequest,
)
from instance_machines import Add, tally_v1

FIXTURES = Path(__file__).parent / "fixtures"
#: Written by tests/fixtures/record_pre_instances.py with the release before keyed instances.
FRAMES = FIXTURES / "frames_v2_pre_instances.json"
STORE = FIXTURES / "store_v2_pre_instances.sqlite3"


def _payloads(data: bytes) -> list[Any]:
    """The CBOR maps of the frames in ``data``, history times left out (they differ by run)."""
    out = []
    while data:
        size = int.from_bytes(data[:4])
        item = cbor2.loads(data[4 : 4 + size])
        for entry in item.get("history", []):
            entry.pop("time")
        out.append(item)
        data = data[4 + size :]
    return out


def test_a_client_of_the_previous_protocol_gets_the_same_replies() -> None:
    """Every chunk today's client wrote before keyed instances (hello version 2, sends,
    status, module fetches, an upgrade) gets, from this node, the replies it got then."""
    chunks = json.loads(FRAMES.read_text())
    with MemoryNode({"counter": counter.counter_sm}) as node:
        conn = node.connection()
        for chunk in chunks:
            conn.send(bytes.fromhex(chunk["sent"]))
            got = conn.recv()
            assert _payloads(got) == _payloads(bytes.fromhex(chunk["received"]))
        assert _payloads(got)[0]["type"] == "output"


def test_a_store_written_before_instances_recovers_and_takes_keyed_inputs(
    tmp_path: Path,
) -> None:
    """store_v2_pre_instances.sqlite3 (schema 2: the counter, 4 inputs, the seed's upgrade, 2
    more; the bank, 2 inputs; killed) is upgraded in place, recovers the same states, and then
    hosts keyed instances, across a restart."""
    shutil.copyfile(STORE, tmp_path / "node.sqlite3")
    machines = {"counter": counter.counter_sm, "bank": bank.bank_sm}
    with MemoryNode(machines, data=tmp_path) as node:
        c = Client(transport=node.connection(), machines=[counter.counter_sm2, bank.bank_sm])
        status = c.status("counter")
        assert (status.inputs, status.state, status.identity) == (
            6,
            (4, 1),
            counter.counter_sm2.identity,
        )
        assert c.status("bank").inputs == 2
        c.send("counter", counter.Incr(), key="fresh")
        node.reopen()
        c = Client(transport=node.connection())
        assert c.status("counter", key="fresh").state == (0, 1)
        assert c.status("counter").inputs == 6
        schema = node.service.store.db.execute("SELECT value FROM meta").fetchone()[0]
        assert schema == str(SCHEMA_VERSION) == "8"


def test_a_schema_3_store_reopens_as_it_is(tmp_path: Path) -> None:
    """A store at the current schema is not upgraded again."""
    Store(tmp_path / "s.db").close()
    store = Store(tmp_path / "s.db")
    try:
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
        assert {"log", "instances", "snapshots", "modules", "meta"} <= tables
    finally:
        store.close()


MESSAGES: list[tuple[object, bool]] = [
    (Send(1, "m", b"\x00", True, "user-42"), True),
    (Send(1, "m", b"\x00", False, "é"), True),
    (SendChecked(2, "m", "a" * 64, b"\x00", False, "k"), True),
    (Status(3, "m", "k"), True),
    (InstancesRequest(4, "m", 100), True),
    (InstancesRequest(4, "m", 1000, "user-", "user-1"), True),
    (Delete(5, "m", "k"), True),
    (Deploy(6, "m", b"module"), True),
    (UpgradeRequest(7, "m", "a" * 64, b"x", b"y", check_all=True), True),
    (InstancesReply(4, "m", ("a", "b"), True), False),
    (Deleted(5, "m", "k", 3), False),
    (Deployed(6, "m", "a" * 64, True), False),
    (
        StatusReply(
            3,
            "m",
            "a" * 64,
            b"",
            b"",
            b"",
            b"",
            0,
            (),
            1,
            instances=2,
            codes=(CodeCount("a" * 64, 1), CodeCount("b" * 64, 1)),
            trapped=(TrappedInstance("k", "why"),),
            sweep=SweepProgress(1000, 1, 1, 1),
        ),
        False,
    ),
]


@pytest.mark.parametrize(("message", "from_client"), MESSAGES, ids=repr)
def test_version_3_messages_round_trip(message: Any, from_client: bool) -> None:
    """Each new message and field encodes canonically and decodes to itself."""
    payload = encode_message(message)
    assert decode_message(payload, from_client=from_client) == message


def test_a_key_cannot_be_sent_to_or_read_from_an_older_peer() -> None:
    """A keyed request on a version 2 connection would reach the default instance: it is
    refused on both sides; a reply's version 3 fields are left out for such a peer."""
    with pytest.raises(LocalProtocolError, match="'key': it needs protocol version 3"):
        encode_message(Send(1, "m", b"\x00", True, "k"), version=2)
    with pytest.raises(LocalProtocolError, match="needs protocol version 3"):
        encode_message(InstancesRequest(1, "m", 10), version=2)
    keyed = encode_message(Status(1, "m", "k"))
    with pytest.raises(RemoteProtocolError, match="unknown field"):
        decode_message(keyed, from_client=True, version=2)
    reply = StatusReply(1, "m", "a" * 64, b"", b"", b"", b"", 0, (), 1, instances=5)
    assert decode_message(encode_message(reply, version=2), from_client=False, version=2) == (
        StatusReply(1, "m", "a" * 64, b"", b"", b"", b"", 0, (), 1)
    )


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ({"key": ""}, "not empty"),
        ({"key": "x" * 257}, "at most 256"),
        ({"key": "a\x00"}, "NUL"),
        ({"key": 7}, "expected an instance key"),
    ],
)
def test_bad_keys_on_the_wire_are_protocol_errors(item: dict[str, object], why: str) -> None:
    """The node never sees a key the protocol does not allow."""
    base: dict[str, object] = {"type": "status", "id": 1, "machine": "m"}
    payload = cbor2.dumps(
        dict(sorted({**base, **item}.items(), key=lambda kv: (len(kv[0]), kv[0])))
    )
    with pytest.raises(RemoteProtocolError, match=why):
        decode_message(payload, from_client=True)


def test_a_page_is_bounded() -> None:
    """``limit`` is 1 to 1000 on the wire: a stranger cannot ask for every key at once."""
    for limit in (0, 1001):
        payload = cbor2.dumps({"id": 1, "type": "instances", "limit": limit, "machine": "m"})
        with pytest.raises(RemoteProtocolError, match=r"\[1, 1000\]"):
            decode_message(payload, from_client=True)


def test_keyed_inputs_on_a_served_node_need_no_state_reply() -> None:
    """The client's keyed send asks for no state, as the default one does."""
    with MemoryNode({"tally": tally_v1}) as node:
        c = Client(transport=node.connection(), machines=[tally_v1])
        sent: list[bytes] = []
        real = c.transport.send

        def spy(data: bytes) -> None:
            sent.append(data)
            real(data)

        c.transport.send = spy  # type: ignore[method-assign]
        assert c.send("tally", Add(2), key="k") == 2
        request = decode_message(sent[-1][4:], from_client=True)
        assert isinstance(request, SendChecked) and request.key == "k" and not request.state


@pytest.mark.parametrize("key", ["k", "user-42", "é" * 128, "\U0010ffff", "a b\tc", "x" * 256])
@pytest.mark.parametrize("state", [True, False])
def test_the_fast_codec_agrees_with_the_reference_on_keyed_sends(key: str, state: bool) -> None:
    """Keyed sends take the hand-written codec; it writes and reads what the reference does,
    and every truncation or one-byte change is read alike (or left to the reference)."""
    for event in (
        Send(300, "counter", b"\x01\x02", state, key),
        SendChecked(7, "counter", "c" * 64, b"", state, key),
    ):
        payload = encode_schema(event)
        assert encode_message(event) == payload
        assert decode_message(payload, from_client=True) == event
        for cut in range(len(payload)):
            _agree(payload[:cut])
        for i in range(0, len(payload), 3):
            _agree(payload[:i] + bytes([payload[i] ^ 0x01]) + payload[i + 1 :])


def _agree(payload: bytes) -> None:
    try:
        want: object = decode_schema(payload, from_client=True)
    except RemoteProtocolError:
        want = None
    try:
        got: object = decode_message(payload, from_client=True)
    except RemoteProtocolError:
        got = None
    assert got == want
