"""Properties of hotswap.protocol: round trips, fast paths, and hostile bytes."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotswap.errors import RemoteProtocolError
from hotswap.protocol import (
    NEED_DATA,
    ClientConnection,
    Connection,
    ConnectionClosed,
    Error,
    ErrorCode,
    Event,
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
    Release,
    Released,
    ReleasedEntry,
    ReleaseItem,
    Reply,
    Request,
    Send,
    SendChecked,
    ServerConnection,
    State,
    Status,
    StatusReply,
    Upgraded,
    UpgradeRequest,
    Welcome,
    decode_message,
    encode_message,
    frame,
)
from hotswap.protocol.codec import decode_schema, encode_schema
from hotswap.protocol.states import ERROR_CODES, GOODBYE_CODES

# --- strategies -----------------------------------------------------------------------------

uints = st.one_of(
    st.integers(0, 30),
    st.sampled_from([23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]),
    st.integers(0, 2**64 - 1),
)
names = st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)
identities = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
blobs = st.binary(max_size=300)
texts = st.text(max_size=60)
short_texts = st.text(max_size=256)
times = st.floats(allow_nan=False, allow_infinity=False)
frame_limits = st.integers(4096, 2**32 - 1)

history_entries = st.builds(HistoryEntry, identities, st.sampled_from(HistoryKind), uints, times)
machine_lists = st.lists(st.tuples(names, identities), unique_by=lambda t: t[0], max_size=5).map(
    lambda entries: tuple(MachineEntry(n, i) for n, i in sorted(entries))
)
release_items = st.lists(
    st.tuples(names, identities, blobs, blobs), unique_by=lambda t: t[0], max_size=3
).map(lambda items: tuple(ReleaseItem(*item) for item in sorted(items)))
released_entries = st.lists(
    st.tuples(names, identities, identities), unique_by=lambda t: t[0], max_size=3
).map(lambda entries: tuple(ReleasedEntry(*entry) for entry in sorted(entries)))


def requests(request_id: int) -> st.SearchStrategy[Request]:
    """Any request with the given id."""
    return st.one_of(
        st.builds(Send, st.just(request_id), names, blobs),
        st.builds(SendChecked, st.just(request_id), names, identities, blobs),
        st.builds(UpgradeRequest, st.just(request_id), names, identities, blobs, blobs),
        st.builds(Release, st.just(request_id), release_items),
        st.builds(Status, st.just(request_id), names),
        st.builds(Machines, st.just(request_id)),
        st.builds(GetModule, st.just(request_id), identities),
    )


def replies(request: Request) -> st.SearchStrategy[Reply]:
    """Any reply that may answer ``request``: its success message or an allowed error."""
    rid = st.just(request.id)
    error = st.builds(Error, rid, st.sampled_from(sorted(ERROR_CODES[type(request)])), texts)
    success: st.SearchStrategy[Reply]
    match request:
        case Send() | SendChecked():
            success = st.builds(Output, rid, blobs, blobs)
        case UpgradeRequest():
            success = st.builds(Upgraded, rid, identities, identities)
        case Release():
            success = st.builds(Released, rid, released_entries)
        case Status():
            success = st.builds(
                StatusReply,
                rid,
                names,
                identities,
                blobs,
                blobs,
                blobs,
                blobs,
                uints,
                st.lists(history_entries, max_size=4).map(tuple),
            )
        case Machines():
            success = st.builds(MachinesReply, rid, machine_lists)
        case GetModule():
            success = st.builds(ModuleReply, rid, blobs)
    return st.one_of(success, error)


client_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Hello, st.just(1), frame_limits, short_texts),
    uints.flatmap(requests),
)
server_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Welcome, st.just(1), frame_limits, short_texts, short_texts),
    uints.flatmap(requests).flatmap(replies),
    st.builds(Goodbye, st.sampled_from(sorted(GOODBYE_CODES)), texts),
)

# --- round trips ----------------------------------------------------------------------------


@given(client_messages)
def test_client_messages_round_trip(message: Message) -> None:
    """decode(encode(m)) == m, and the fast and reference codecs agree on the bytes."""
    payload = encode_message(message)
    assert payload == encode_schema(message)
    assert decode_message(payload, from_client=True) == message
    assert decode_schema(payload, from_client=True) == message


@given(server_messages)
def test_server_messages_round_trip(message: Message) -> None:
    """decode(encode(m)) == m, and the fast and reference codecs agree on the bytes."""
    payload = encode_message(message)
    assert payload == encode_schema(message)
    assert decode_message(payload, from_client=False) == message
    assert decode_schema(payload, from_client=False) == message


@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[Request], list[Reply]]:
    """Requests with distinct ids and one fitting reply for each."""
    ids = draw(st.lists(uints, unique=True, max_size=12))
    sent = [draw(requests(request_id)) for request_id in ids]
    return sent, [draw(replies(request)) for request in sent]


def feed(receiver: Connection, stream: bytes, cuts: list[int]) -> list[Event]:
    """Feed ``stream`` cut at ``cuts`` and collect every event."""
    events: list[Event] = []
    bounds = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    for start, end in itertools.pairwise(bounds):
        receiver.receive_data(stream[start:end])
        while (event := receiver.next_event()) is not NEED_DATA:
            events.append(event)
    return events


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(conversations(), st.lists(st.integers(0, 10**6), max_size=8))
def test_every_event_crosses_a_connection_unchanged(
    conversation: tuple[list[Request], list[Reply]], cuts: list[int]
) -> None:
    """Pipelined requests and their replies arrive equal and in order, however cut."""
    sent, answers = conversation
    client, server = ClientConnection(), ServerConnection()
    server.receive_data(client.send(Hello()))
    assert server.next_event() == Hello()
    client.receive_data(server.send(Welcome(node="n")))
    assert client.next_event() == Welcome(node="n")
    to_server = b"".join(client.send(request) for request in sent)
    assert feed(server, to_server, cuts) == sent
    to_client = b"".join(server.send(reply) for reply in answers)
    assert feed(client, to_client, cuts) == answers
    assert client.pending == server.pending == ()
    assert client.state is server.state is State.READY


# --- the fast paths agree with the reference codec ------------------------------------------


def agree(payload: bytes, from_client: bool) -> None:
    """decode_message and decode_schema accept the same payloads with the same result."""
    try:
        expected: Message | Exception = decode_schema(payload, from_client=from_client)
    except RemoteProtocolError as exc:
        expected = exc
    try:
        actual: Message | Exception = decode_message(payload, from_client=from_client)
    except RemoteProtocolError as exc:
        actual = exc
    if isinstance(expected, Exception):
        assert isinstance(actual, Exception), (payload.hex(), actual)
        assert str(actual) == str(expected)
    else:
        assert actual == expected


@st.composite
def mutations(draw: st.DrawFn, payload: bytes) -> bytes:
    """``payload`` with a few bytes changed, inserted, deleted, or cut off."""
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["set", "insert", "delete", "truncate"])):
            case "set" if position < len(data):
                data[position] = draw(st.integers(0, 255))
            case "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=3))
            case "delete":
                del data[position : position + draw(st.integers(1, 3))]
            case _:
                del data[position:]
    return bytes(data)


#: Instance keys: none (the default instance), or 1 to 256 bytes of UTF-8 without NUL.
instance_keys = st.none() | st.text(
    st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), min_size=1, max_size=40
).filter(lambda k: len(k.encode()) <= 256)
sends = uints.flatmap(
    lambda i: st.builds(Send, st.just(i), names, blobs, st.booleans(), instance_keys)
)
checked_sends = uints.flatmap(
    lambda i: st.builds(
        SendChecked, st.just(i), names, identities, blobs, st.booleans(), instance_keys
    )
)
outputs = uints.flatmap(lambda i: st.builds(Output, st.just(i), blobs, blobs))


@given(sends.map(encode_message).flatmap(mutations))
def test_fast_send_decoder_agrees_with_the_reference(payload: bytes) -> None:
    """On mutated send payloads both decoders accept or reject alike."""
    agree(payload, from_client=True)


@given(checked_sends.map(encode_message).flatmap(mutations))
def test_fast_send_checked_decoder_agrees_with_the_reference(payload: bytes) -> None:
    """On mutated send_checked payloads both decoders accept or reject alike."""
    agree(payload, from_client=True)


def test_a_checked_code_is_read_the_same_however_often_it_comes() -> None:
    """The hot path keeps the identities it has read (a lookup in place of matching 64 hex
    digits); the same identity, read again, gives the same event, and one that differs only
    in its case is still refused, the long way, with the reference's error."""
    good = "0a" * 32
    event = SendChecked(7, "m", good, b"\x01", True, None)
    payload = encode_message(event)
    for _ in range(3):
        assert decode_message(payload, from_client=True) == event
    agree(payload.replace(good.encode(), good.upper().encode()), from_client=True)
    with pytest.raises(RemoteProtocolError):
        decode_message(payload.replace(good.encode(), good.upper().encode()), from_client=True)


@given(checked_sends)
def test_fast_send_checked_encoder_agrees_with_the_reference(event: SendChecked) -> None:
    assert encode_message(event) == encode_schema(event)


@given((sends | checked_sends).filter(lambda e: e.key is None))  # keys are version 3
def test_a_send_without_state_is_version_2_only(event: Send | SendChecked) -> None:
    """``state: false`` travels only to a version 2 node; a version 1 node gets the plain
    message (and sends the state, which the client ignores), and refuses the field."""
    payload = encode_message(event)
    assert encode_message(event, 1) == encode_schema(replace(event, state=True), 1)
    assert decode_message(payload, from_client=True) == event
    if not event.state:
        with pytest.raises(RemoteProtocolError, match="state"):
            decode_message(payload, from_client=True, version=1)


@given(outputs.map(encode_message).flatmap(mutations))
def test_fast_output_decoder_agrees_with_the_reference(payload: bytes) -> None:
    """On mutated output payloads both decoders accept or reject alike."""
    agree(payload, from_client=False)


# --- hostile bytes --------------------------------------------------------------------------

cbor_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.binary(max_size=8)
    | st.text(max_size=8)
)
cbor_items = st.recursive(
    cbor_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=9), inner),
    max_leaves=12,
)
message_like = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "hello",
                "send",
                "upgrade",
                "status",
                "machines",
                "get_module",
                "welcome",
                "output",
                "error",
                "goodbye",
                "status_reply",
            ]
        )
    },
    optional={
        "id": cbor_items | uints,
        "machine": cbor_items | names,
        "input": cbor_items,
        "version": cbor_items,
        "max_frame": cbor_items,
        "agent": cbor_items,
        "history": cbor_items,
        "code": cbor_items | st.sampled_from(ErrorCode),
    },
)


def only_remote_errors(receiver: Connection, stream: bytes) -> None:
    """Feeding ``stream`` yields events or RemoteProtocolError, never another exception."""
    receiver.receive_data(stream)
    receiver.receive_data(b"")
    try:
        while not isinstance(receiver.next_event(), ConnectionClosed):
            pass
    except RemoteProtocolError:
        assert receiver.state is State.ERROR


def ready_server() -> ServerConnection:
    """A server past the handshake."""
    server = ServerConnection()
    server.receive_data(frame(encode_message(Hello())))
    server.next_event()
    server.send(Welcome())
    return server


def ready_client() -> ClientConnection:
    """A client past the handshake, with requests 0 to 3 outstanding."""
    client = ClientConnection()
    client.send(Hello())
    client.receive_data(frame(encode_message(Welcome())))
    client.next_event()
    for request_id in range(4):
        client.send(Send(request_id, "m", b""))
    return client


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_remote_errors(stream: bytes) -> None:
    """Garbage at any phase of either end is the peer's fault, reported as such."""
    only_remote_errors(ServerConnection(), stream)
    only_remote_errors(ready_server(), stream)
    only_remote_errors(ready_client(), stream)


@given(st.lists(cbor_items | message_like, min_size=1, max_size=4))
def test_arbitrary_cbor_raises_only_remote_errors(items: list[Any]) -> None:
    """Well-framed CBOR that is not a valid message is rejected as the peer's fault."""
    stream = b"".join(frame(cbor2.dumps(item)) for item in items)
    only_remote_errors(ServerConnection(), stream)
    only_remote_errors(ready_server(), stream)
    only_remote_errors(ready_client(), stream)


@given(server_messages.map(encode_message).flatmap(mutations))
def test_mutated_server_messages_raise_only_remote_errors(payload: bytes) -> None:
    """Near-misses of valid replies are rejected as the peer's fault."""
    only_remote_errors(ready_client(), frame(payload))
    agree(payload, from_client=False)


@given(client_messages.map(encode_message).flatmap(mutations))
def test_mutated_client_messages_raise_only_remote_errors(payload: bytes) -> None:
    """Near-misses of valid requests are rejected as the peer's fault."""
    only_remote_errors(ready_server(), frame(payload))
    agree(payload, from_client=True)


@pytest.mark.parametrize("rid", [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1])
def test_request_ids_at_every_head_boundary_take_the_fast_path_exactly(rid: int) -> None:
    """The hot path reads and writes ids of one to nine bytes inline: at each boundary of the
    head's length the bytes are the reference codec's, both ways."""
    for event in (Send(rid, "counter", b"\x00"), SendChecked(rid, "c", "a" * 64, b"", False)):
        payload = encode_message(event)
        assert payload == encode_schema(event)
        assert decode_message(payload, from_client=True) == event
    output = Output(rid, b"\x01", b"")
    assert encode_message(output) == encode_schema(output)
    assert decode_message(encode_schema(output), from_client=False) == output
