"""Tests for hotswap.protocol.codec: the CBOR payload of every message, strictly checked."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import cbor2
import pytest

from hotswap.errors import LocalProtocolError, RemoteProtocolError
from hotswap.protocol import (
    ConnectionClosed,
    Error,
    ErrorCode,
    GetModule,
    Goodbye,
    Hello,
    HistoryEntry,
    HistoryKind,
    MachineEntry,
    Machines,
    MachinesReply,
    Message,
    ModuleReply,
    Output,
    Send,
    Status,
    StatusReply,
    UnsupportedVersion,
    Upgraded,
    UpgradeRequest,
    Welcome,
    decode_message,
    encode_message,
    frame,
)
from hotswap.protocol.codec import decode_schema, encode_schema

A = "a" * 64
B = "0123456789abcdef" * 4

CLIENT_MESSAGES: list[Message] = [
    Hello(1, 4096, "test"),
    Send(0, "counter", b""),
    Send(2**64 - 1, "a.b-c_D9", bytes(range(256))),
    UpgradeRequest(1, "counter", A, b"\x00module", b"\x00migration"),
    Status(2, "counter"),
    Machines(3),
    GetModule(4, B),
]

SERVER_MESSAGES: list[Message] = [
    Welcome(1, 2**32 - 1, "node software", "node-1"),
    Output(0, b"", b""),
    Output(300, b"\x01" * 70000, b"\x02"),
    Upgraded(1, A, B),
    StatusReply(
        2,
        "counter",
        B,
        b"int",
        b"int x int",
        b"unit + int",
        b"\x07",
        12,
        (
            HistoryEntry(A, HistoryKind.START, 0, 0.0),
            HistoryEntry(B, HistoryKind.UPGRADE, 12, 1700000000.25),
        ),
    ),
    StatusReply(2, "m", B, b"", b"", b"", b"", 0, ()),
    MachinesReply(3, (MachineEntry("a", A), MachineEntry("b", B))),
    MachinesReply(3, ()),
    ModuleReply(4, b"\x00asm"),
    Error(5, ErrorCode.TRAP, "integer overflow in step"),
    Goodbye(ErrorCode.BAD_REQUEST, ""),
]


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=repr)
def test_client_messages_round_trip(message: Message) -> None:
    """Every client message decodes to itself, through both codecs."""
    payload = encode_message(message)
    assert payload == encode_schema(message)
    assert decode_message(payload, from_client=True) == message
    assert decode_schema(payload, from_client=True) == message


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=lambda m: type(m).__name__)
def test_server_messages_round_trip(message: Message) -> None:
    """Every server message decodes to itself, through both codecs."""
    payload = encode_message(message)
    assert payload == encode_schema(message)
    assert decode_message(payload, from_client=False) == message
    assert decode_schema(payload, from_client=False) == message


def test_payloads_are_deterministic_cbor_maps() -> None:
    """The payload is cbor2's canonical encoding of the map, with the wire names."""
    payload = encode_message(Send(7, "counter", b"\x00"))
    assert payload == cbor2.dumps(
        {"id": 7, "type": "send", "input": b"\x00", "machine": "counter"}, canonical=True
    )
    assert (
        payload.hex()
        == "a46269640764747970656473656e6465696e7075744100676d616368696e6567636f756e746572"
    )


def test_documented_output_frame_payload() -> None:
    """The output example of docs/protocol.md is what the encoder produces."""
    payload = encode_message(Output(7, b"\x00", b"\x01"))
    assert (
        payload.hex() == "a4626964076474797065666f7574707574657374617465410166" + "6f75747075744100"
    )


def test_decoded_codes_and_kinds_are_enum_members() -> None:
    """Closed sets decode to their enums, so a match over them can be exhaustive."""
    error = decode_message(encode_message(Error(1, ErrorCode.TRAP, "x")), from_client=False)
    assert isinstance(error, Error)
    assert error.code is ErrorCode.TRAP
    reply = SERVER_MESSAGES[4]
    decoded = decode_message(encode_message(reply), from_client=False)
    assert isinstance(decoded, StatusReply)
    assert decoded.history[1].kind is HistoryKind.UPGRADE


def _send(**changes: Any) -> bytes:
    item: dict[Any, Any] = {"id": 1, "type": "send", "machine": "counter", "input": b"\x01"}
    item.update(changes)
    return cbor2.dumps({k: v for k, v in item.items() if v is not _DROP}, canonical=True)


def _status_reply(**entry_changes: Any) -> bytes:
    entry: dict[str, Any] = {"identity": A, "kind": "start", "seq": 0, "time": 1.5}
    entry.update(entry_changes)
    item = {
        "id": 1,
        "type": "status_reply",
        "machine": "m",
        "identity": A,
        "input_type": b"",
        "state_type": b"",
        "output_type": b"",
        "state": b"",
        "inputs": 0,
        "history": [entry],
    }
    return cbor2.dumps(item, canonical=True)


_DROP = object()
_VALID_SEND = _send()

# (payload, sent by the client?, a fragment of the RemoteProtocolError's message)
BAD_PAYLOADS: list[tuple[bytes, bool, str]] = [
    (b"\xff", True, "not a valid CBOR item"),
    (_VALID_SEND[:-1], True, "not a valid CBOR item"),
    (cbor2.dumps([1, 2]), True, "payload is not a map: got array of length 2"),
    (cbor2.dumps("send"), True, "payload is not a map: got text string"),
    (cbor2.dumps({"id": 1}), True, "no 'type' field"),
    (cbor2.dumps({"type": 1}), True, "'type' is integer 1"),
    (cbor2.dumps({"type": "launch"}), True, "unknown message type: 'launch'"),
    (encode_message(Output(1, b"", b"")), True, "wrong direction: clients do not send 'output'"),
    (encode_message(Send(1, "m", b"")), False, "wrong direction: servers do not send 'send'"),
    (_send(input=_DROP), True, "missing field(s) 'input'"),
    (_send(reply=False), True, "unknown field(s) 'reply'"),
    (_send(input="x"), True, "field 'input': expected a byte string, got text string of length 1"),
    (
        _send(id=True),
        True,
        "field 'id': expected an unsigned integer in [0, 18446744073709551615], got boolean True",
    ),
    (
        _send(id=-1),
        True,
        "field 'id': expected an unsigned integer in [0, 18446744073709551615], got integer -1",
    ),
    (
        _send(id=1.0),
        True,
        "field 'id': expected an unsigned integer in [0, 18446744073709551615], got float 1.0",
    ),
    (_send(id=2**64), True, "tags are not allowed"),
    (_send(id=None), True, "got null"),
    (_send(machine="two words"), True, "field 'machine': expected a machine name"),
    (_send(machine=""), True, "field 'machine': expected a machine name"),
    (_send(machine="m" * 65), True, "field 'machine': expected a machine name"),
    (_send(machine=b"counter"), True, "field 'machine': expected a machine name"),
    (_send(input=[b"\x01"]), True, "got array of length 1"),
    (_send(input={"a": 1}), True, "got map of length 1"),
    (_send(input=cbor2.CBORTag(24, b"\x01")), True, "tags are not allowed"),
    (_send(input=cbor2.CBORTag(0, "2020-01-01T00:00:00Z")), True, "tags are not allowed"),
    (_VALID_SEND + b"\x00", True, "1 trailing byte(s) after the map"),
    # id 1 written in two bytes instead of one
    (_VALID_SEND.replace(b"\x62id\x01", b"\x62id\x18\x01"), True, "not in deterministic CBOR"),
    # keys out of canonical order
    (
        cbor2.dumps({"type": "send", "id": 1, "input": b"", "machine": "m"}),
        True,
        "fields out of canonical order",
    ),
    # indefinite-length byte string
    (_VALID_SEND.replace(b"\x41\x01", b"\x5f\x41\x01\xff"), True, "not a valid CBOR item"),
    # duplicate key: a map of 5 entries where "id" appears twice
    (b"\xa5" + _VALID_SEND[1:] + b"\x62id\x02", True, "not a valid CBOR item"),
    # integer key
    (b"\xa5\x01\x02" + _VALID_SEND[1:], True, "not a valid CBOR item"),
    (cbor2.dumps({"type": "hello", "version": 5}), True, "unsupported protocol version 5"),
    (
        cbor2.dumps(
            {"type": "hello", "version": 1, "max_frame": 100, "agent": "x"}, canonical=True
        ),
        True,
        "field 'max_frame': expected an unsigned integer in [4096, 4294967295], got integer 100",
    ),
    (
        cbor2.dumps(
            {
                "type": "upgrade",
                "id": 1,
                "machine": "m",
                "expected": A.upper(),
                "module": b"",
                "migration": b"",
            },
            canonical=True,
        ),
        True,
        "field 'expected': expected an identity",
    ),
    (
        _status_reply(kind="restart"),
        False,
        "field 'history': item 0: field 'kind': expected one of",
    ),
    (_status_reply(time=math.nan), False, "field 'time': expected a finite float, got float nan"),
    (_status_reply(time=math.inf), False, "field 'time': expected a finite float"),
    (_status_reply(time=2), False, "field 'time': expected a finite float, got integer 2"),
    (_status_reply(seq=-1), False, "field 'seq': expected an unsigned integer"),
    (_status_reply(extra=1), False, "item 0: unknown field(s) 'extra'"),
    (_status_reply(seq=[[[0]]]), False, "not a valid CBOR item"),  # nesting depth
    (
        _status_reply().replace(b"\xf9\x3e\x00", b"\xfb\x3f\xf8\x00\x00\x00\x00\x00\x00"),
        False,
        "not in deterministic CBOR",
    ),  # 1.5 as a double instead of a half
    (
        cbor2.dumps(
            {
                "id": 1,
                "type": "machines_reply",
                "machines": [{"name": "b", "identity": A}, {"name": "a", "identity": A}],
            },
            canonical=True,
        ),
        False,
        "name 'a' at index 1 does not follow 'b'",
    ),
    (
        cbor2.dumps({"id": 1, "type": "error", "code": "oops", "message": ""}, canonical=True),
        False,
        "field 'code': expected one of 'unknown_machine'",
    ),
    (
        cbor2.dumps({"id": 1, "type": "error", "code": "trap", "message": 1}, canonical=True),
        False,
        "field 'message': expected a text string",
    ),
    (
        cbor2.dumps({"type": "goodbye", "code": "trap", "message": "", "id": 1}, canonical=True),
        False,
        "unknown field(s) 'id'",
    ),
]


@pytest.mark.parametrize(("payload", "from_client", "reason"), BAD_PAYLOADS)
def test_bad_payloads_are_rejected_with_a_reason(
    payload: bytes, from_client: bool, reason: str
) -> None:
    """Every deviation raises RemoteProtocolError naming what was wrong, on both codecs."""
    with pytest.raises(RemoteProtocolError) as caught:
        decode_message(payload, from_client=from_client)
    assert reason in str(caught.value)
    with pytest.raises(RemoteProtocolError) as caught:
        decode_schema(payload, from_client=from_client)
    assert reason in str(caught.value)


def test_hello_of_another_version_is_unsupported_whatever_its_fields() -> None:
    """A future hello may have other fields; the version alone decides."""
    payload = cbor2.dumps({"type": "hello", "version": 7, "features": ["x"]}, canonical=True)
    with pytest.raises(UnsupportedVersion) as caught:
        decode_message(payload, from_client=True)
    assert caught.value.version == 7


_HISTORY_AS_LIST: Any = [HistoryEntry(A, HistoryKind.START, 0, 0.0)]

BAD_EVENTS: list[tuple[object, str]] = [
    (Send(-1, "m", b""), "field 'id'"),
    (Send(True, "m", b""), "field 'id'"),
    (Send(1, "no spaces", b""), "field 'machine'"),
    (Send(1, "m", "text"), "field 'input'"),  # type: ignore[arg-type]
    (Output(1, b"", bytearray(b"x")), "field 'state'"),  # type: ignore[arg-type]
    (UpgradeRequest(1, "m", "abc", b"", b""), "field 'expected'"),
    (Error(1, "nope", ""), "field 'code'"),  # type: ignore[arg-type]
    (Hello(1, 10, "x"), "field 'max_frame'"),
    (Welcome(1, 4096, "x" * 257, ""), "field 'agent'"),
    (
        StatusReply(1, "m", A, b"", b"", b"", b"", 0, _HISTORY_AS_LIST),
        "field 'history': expected a tuple of HistoryEntry, got list",
    ),
    (
        StatusReply(1, "m", A, b"", b"", b"", b"", 0, (HistoryEntry(A, HistoryKind.START, 0, 0),)),
        "item 0: field 'time': expected a finite float, got integer 0",
    ),
    (MachinesReply(1, (MachineEntry("b", A), MachineEntry("b", A))), "'b' at index 1"),
    (MachinesReply(1, (A,)), "item 0: expected a MachineEntry, got str"),  # type: ignore[arg-type]
    (ConnectionClosed(), "ConnectionClosed is not a message"),
    (Status, "type is not a message"),
]


@pytest.mark.parametrize(("event", "reason"), BAD_EVENTS, ids=repr)
def test_bad_events_cannot_be_encoded(event: Message, reason: str) -> None:
    """Our own ill-typed events raise LocalProtocolError naming the field."""
    with pytest.raises(LocalProtocolError, match=None) as caught:
        encode_message(event)
    assert reason in str(caught.value)


DOC = Path(__file__).parent.parent / "docs" / "protocol.md"

DOCUMENTED_FRAMES: list[tuple[Message, bool]] = [
    (Hello(version=2), True),
    (Welcome(version=2, node="node-a"), False),
    (Send(7, "counter", b"\x00"), True),
    (Output(7, b"\x00", b"\x01"), False),
    (Error(8, ErrorCode.TRAP, "overflow"), False),
    (Error(8, ErrorCode.TRAP, "overflow", trap="overflow"), False),
    (Goodbye(ErrorCode.UNSUPPORTED_VERSION, "speaks 1"), False),
]
DOCUMENTED_FRAMES.append((Send(9, "counter", b"\x00", False, "user-42"), True))  # version 3


def documented_frames() -> list[bytes]:
    """The annotated frames of docs/protocol.md, section 12: hex before each ``--``."""
    frames: list[bytes] = []
    for block in re.findall(r"```text\n(.*?)```", DOC.read_text(), flags=re.DOTALL):
        lines = [line.split("--")[0] for line in block.splitlines() if not line.startswith("--")]
        frames.append(bytes.fromhex("".join(lines)))
    return frames


def test_documented_frames_are_what_the_encoder_writes() -> None:
    """The spec's examples are real: each block is exactly one of the frames below."""
    written = [frame(encode_message(message)) for message, _ in DOCUMENTED_FRAMES]
    assert documented_frames() == written
    for block, (message, from_client) in zip(documented_frames(), DOCUMENTED_FRAMES, strict=True):
        assert decode_message(block[4:], from_client=from_client) == message
