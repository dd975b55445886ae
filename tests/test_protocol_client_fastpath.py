"""The client's hot path in the protocol: ``send_checked`` frames written from their fixed
parts (``fastpath.send_checked_parts`` / ``send_checked_frame``), outputs read without the event
(``fastpath.read_output``), and ``LeanConnection``, whose ``send_input`` and ``next_output``
must leave the connection exactly as ``send`` and ``next_event`` would, or do nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotswap.client.wire import LEAN_VERSION, LeanConnection
from hotswap.errors import RemoteProtocolError
from hotswap.protocol import (
    ClientConnection,
    Error,
    ErrorCode,
    Hello,
    Output,
    SendChecked,
    ServerConnection,
    Status,
    Welcome,
    encode_message,
    frame,
)
from hotswap.protocol.codec import encode_schema
from hotswap.protocol.fastpath import (
    decode_output,
    read_output,
    send_checked_frame,
    send_checked_parts,
)
from test_protocol_properties import blobs, identities, instance_keys, mutations, names, uints

NO_LIMIT = 2**32 - 1


@given(uints, names, identities, blobs, instance_keys)
def test_a_frame_from_parts_is_the_reference_encoding(
    rid: int, machine: str, code: str, data: bytes, key: str | None
) -> None:
    parts = send_checked_parts(machine, code, key)
    assert parts is not None
    event = SendChecked(rid, machine, code, data, False, key)
    assert send_checked_frame(parts, rid, data, NO_LIMIT) == frame(encode_schema(event))


@pytest.mark.parametrize("rid", [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1])
@pytest.mark.parametrize("size", [0, 23, 24, 255, 256, 65535, 65536])
def test_frames_at_every_head_boundary(rid: int, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for key in (None, "k", "é" * 128):
        parts = send_checked_parts("counter", "a" * 64, key)
        assert parts is not None
        event = SendChecked(rid, "counter", "a" * 64, data, False, key)
        expected = frame(encode_schema(event))
        assert send_checked_frame(parts, rid, data, NO_LIMIT) == expected
        assert send_checked_frame(parts, rid, data, len(expected) - 4) == expected
        assert send_checked_frame(parts, rid, data, len(expected) - 5) is None  # too large


def test_fields_not_of_their_kind_have_no_parts() -> None:
    good = "a" * 64
    for machine, code, key in [
        ("bad name", good, None),
        ("", good, None),
        ("x" * 65, good, None),
        (7, good, None),
        ("m", "A" * 64, None),
        ("m", "a" * 63, None),
        ("m", "é" * 64, None),
        ("m", good, ""),
        ("m", good, "a\0"),
        ("m", good, "x" * 257),
        ("m", good, b"k"),
    ]:
        assert send_checked_parts(machine, code, key) is None  # type: ignore[arg-type]
    parts = send_checked_parts("m", good, None)
    assert parts is not None
    assert send_checked_frame(parts, -1, b"", NO_LIMIT) is None
    assert send_checked_frame(parts, 2**64, b"", NO_LIMIT) is None


outputs = uints.flatmap(lambda i: st.builds(Output, st.just(i), blobs, blobs))


@given(outputs.map(encode_message).flatmap(mutations))
def test_read_output_agrees_with_decode_output(payload: bytes) -> None:
    """On mutated output payloads: the same acceptance, the same fields."""
    event = decode_output(payload)
    fields = read_output(payload)
    if event is None:
        assert fields is None
    else:
        assert fields == (event.id, event.output, event.state)


def ready(
    lean: type[ClientConnection], version: int = 4
) -> tuple[ClientConnection, ServerConnection]:
    client, server = lean(), ServerConnection()
    server.receive_data(client.send(Hello(version=version)))
    server.next_event()
    client.receive_data(server.send(Welcome(version=version)))
    client.next_event()
    return client, server


def test_send_input_is_send_and_next_output_is_next_event() -> None:
    """Side by side with a plain ClientConnection: the same bytes out, the same events in, the
    same requests awaiting replies."""
    lean, server = ready(LeanConnection)
    plain, _ = ready(ClientConnection)
    assert isinstance(lean, LeanConnection)
    parts = send_checked_parts("counter", "b" * 64, "user-1")
    assert parts is not None
    for rid in (1, 2, 3):
        got = lean.send_input(parts, rid, b"\x00", LEAN_VERSION)
        event = SendChecked(rid, "counter", "b" * 64, b"\x00", False, "user-1")
        assert got == plain.send(event)
        assert lean.pending == plain.pending
        server.receive_data(got)
        assert server.next_event() == event
    for reply in (Output(1, b"\x01", b""), Output(2, b"\x02", b"\x03")):
        data = server.send(reply)
        lean.receive_data(data)
        plain.receive_data(data)
        assert lean.next_output() == plain.next_event() == reply
        assert lean.pending == plain.pending
    error = Error(3, ErrorCode.WRONG_VERSION, "stale", running="c" * 64, generation=2)
    data = server.send(error)
    lean.receive_data(data)
    plain.receive_data(data)
    assert lean.next_output() is None  # not an output: next_event reads it
    assert lean.next_event() == plain.next_event() == error
    assert lean.pending == plain.pending == ()


def test_the_hot_path_leaves_anything_unusual_to_the_long_way() -> None:
    lean, server = ready(LeanConnection)
    assert isinstance(lean, LeanConnection)
    parts = send_checked_parts("counter", "b" * 64, None)
    assert parts is not None
    assert lean.send_input(parts, 1, b"", 5) is None  # a version newer than agreed on
    assert lean.next_output() is None  # nothing awaited
    status = Status(7, "counter")
    server.receive_data(lean.send(status))
    server.next_event()
    assert lean.send_input(parts, 7, b"", LEAN_VERSION) is None  # id 7 awaits its reply
    frame_ = lean.send_input(parts, 8, b"", LEAN_VERSION)
    assert frame_ is not None
    server.receive_data(frame_)
    server.next_event()
    lean.receive_data(frame(encode_schema(Output(8, b"", b""))))  # as no node may send it
    assert lean.next_output() is None  # answers 8, but 7 came first: next_event says so
    with pytest.raises(RemoteProtocolError, match="out of order"):
        lean.next_event()
    assert lean.send_input(parts, 9, b"", LEAN_VERSION) is None  # the connection is broken
    assert lean.next_output() is None


def test_no_hot_path_before_the_welcome_or_after_a_violation() -> None:
    lean = LeanConnection()
    parts = send_checked_parts("counter", "b" * 64, None)
    assert parts is not None
    assert lean.send_input(parts, 1, b"", LEAN_VERSION) is None
    lean.send(Hello())
    assert lean.send_input(parts, 1, b"", LEAN_VERSION) is None  # no welcome yet
    assert lean.next_output() is None
    assert lean.pending == ()
