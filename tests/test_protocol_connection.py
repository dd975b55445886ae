"""Tests for hotswap.protocol.connection: two ends wired together in memory."""

from __future__ import annotations

import ast
from pathlib import Path

import cbor2
import pytest

import hotswap.protocol
from hotswap.errors import LocalProtocolError, RemoteProtocolError
from hotswap.protocol import (
    HANDSHAKE_MAX_FRAME,
    NEED_DATA,
    PROTOCOL_VERSION,
    ClientConnection,
    Connection,
    ConnectionClosed,
    Error,
    ErrorCode,
    Event,
    FrameTooLarge,
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
    Reply,
    Request,
    Send,
    ServerConnection,
    State,
    Status,
    StatusReply,
    UnsupportedVersion,
    Upgraded,
    UpgradeRequest,
    Welcome,
    encode_message,
    frame,
)
from hotswap.protocol.states import TRANSITIONS, Role

A = "a" * 64
B = "b" * 64


def drain(connection: Connection) -> list[Event]:
    """Every event available now."""
    events: list[Event] = []
    while (event := connection.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


def connected(
    client_max: int = HANDSHAKE_MAX_FRAME * 4, server_max: int = HANDSHAKE_MAX_FRAME * 4
) -> tuple[ClientConnection, ServerConnection]:
    """A client and a server that have shaken hands."""
    client, server = ClientConnection(), ServerConnection()
    server.receive_data(client.send(Hello(max_frame=client_max, agent="test-client")))
    assert drain(server) == [Hello(PROTOCOL_VERSION, client_max, "test-client")]
    client.receive_data(server.send(Welcome(max_frame=server_max, node="node-1")))
    assert drain(client) == [Welcome(PROTOCOL_VERSION, server_max, "hotswap-python/0.1", "node-1")]
    return client, server


def test_handshake_agrees_on_version_and_limits() -> None:
    """Each side enforces its own announced limit and respects the peer's."""
    client, server = ClientConnection(), ServerConnection()
    assert (client.state, server.state) == (State.HELLO, State.HELLO)
    assert client.our_max_frame == server.our_max_frame == HANDSHAKE_MAX_FRAME
    server.receive_data(client.send(Hello(max_frame=8192)))
    assert client.state is State.WELCOME
    assert drain(server) == [Hello(max_frame=8192)]
    assert server.state is State.WELCOME
    assert server.their_max_frame == 8192
    client.receive_data(server.send(Welcome(max_frame=10_000, node="n")))
    assert drain(client) == [Welcome(max_frame=10_000, node="n")]
    assert (client.state, server.state) == (State.READY, State.READY)
    assert (client.version, server.version) == (PROTOCOL_VERSION, PROTOCOL_VERSION)
    assert (client.our_max_frame, client.their_max_frame) == (8192, 10_000)
    assert (server.our_max_frame, server.their_max_frame) == (10_000, 8192)


EXCHANGES: list[tuple[Request, Reply]] = [
    (Send(1, "counter", b"\x01"), Output(1, b"\x02", b"\x03")),
    (Send(2, "counter", b"\x01"), Error(2, ErrorCode.TRAP, "overflow")),
    (Send(3, "nope", b""), Error(3, ErrorCode.UNKNOWN_MACHINE, "no machine 'nope'")),
    (Send(4, "counter", b"\xff"), Error(4, ErrorCode.BAD_INPUT, "does not decode")),
    (UpgradeRequest(5, "counter", A, b"mod", b"mig"), Upgraded(5, A, B)),
    (
        UpgradeRequest(6, "counter", A, b"mod", b"mig"),
        Error(6, ErrorCode.WRONG_VERSION, "running b"),
    ),
    (UpgradeRequest(7, "counter", B, b"?", b""), Error(7, ErrorCode.BAD_MODULE, "bad magic")),
    (
        UpgradeRequest(8, "counter", B, b"m", b"m"),
        Error(8, ErrorCode.ILL_TYPED_UPGRADE, "int != pair"),
    ),
    (UpgradeRequest(9, "counter", B, b"m", b"m"), Error(9, ErrorCode.MIGRATION_TRAP, "overflow")),
    (
        Status(10, "counter"),
        StatusReply(
            10,
            "counter",
            B,
            b"i",
            b"s",
            b"o",
            b"\x02",
            2,
            (
                HistoryEntry(A, HistoryKind.START, 0, 1.0),
                HistoryEntry(B, HistoryKind.UPGRADE, 2, 2.5),
            ),
        ),
    ),
    (Machines(11), MachinesReply(11, (MachineEntry("counter", B),))),
    (GetModule(12, A), ModuleReply(12, b"module bytes")),
    (GetModule(13, B), Error(13, ErrorCode.UNKNOWN_MODULE, "not stored")),
    (Machines(14), Error(14, ErrorCode.OVERLOADED, "busy")),
    (Status(15, "x"), Error(15, ErrorCode.INTERNAL, "bug")),
]


@pytest.mark.parametrize(("request_", "reply"), EXCHANGES, ids=repr)
def test_every_request_gets_its_reply(request_: Request, reply: Reply) -> None:
    """Each request and each kind of answer crosses the connection unchanged."""
    client, server = connected()
    server.receive_data(client.send(request_))
    unread = server.pending
    assert drain(server) == [request_]
    assert (unread, client.pending, server.pending) == ((), (request_.id,), (request_.id,))
    client.receive_data(server.send(reply))
    assert drain(client) == [reply]
    assert len(client.pending) == len(server.pending) == 0


def test_pipelined_requests_are_answered_in_order() -> None:
    """A client may send many requests before reading; replies come back in request order."""
    client, server = connected()
    requests = [request for request, _ in EXCHANGES]
    server.receive_data(b"".join(client.send(request) for request in requests))
    assert drain(server) == requests
    assert server.pending == tuple(request.id for request in requests)
    replies = [reply for _, reply in EXCHANGES]
    client.receive_data(b"".join(server.send(reply) for reply in replies))
    assert drain(client) == replies
    assert client.pending == ()


def test_request_ids_may_be_reused_once_answered() -> None:
    """Only outstanding ids must be unique."""
    client, server = connected()
    for _ in range(3):
        server.receive_data(client.send(Send(0, "m", b"")))
        assert drain(server) == [Send(0, "m", b"")]
        client.receive_data(server.send(Output(0, b"", b"")))
        assert drain(client) == [Output(0, b"", b"")]


def conversation_bytes() -> tuple[bytes, bytes, list[Event], list[Event]]:
    """Both directions of a whole conversation, and the events each side should see."""
    client, server = ClientConnection(), ServerConnection()
    client_events: list[Event] = [Hello(), *(request for request, _ in EXCHANGES)]
    server_events: list[Event] = [Welcome(node="n"), *(reply for _, reply in EXCHANGES)]
    to_server = client.send(Hello())
    server.receive_data(to_server)
    drain(server)
    to_client = server.send(Welcome(node="n"))
    client.receive_data(to_client)
    drain(client)
    for request, _ in EXCHANGES:
        sent = client.send(request)
        server.receive_data(sent)
        to_server += sent
    assert drain(server) == client_events[1:]
    for _, reply in EXCHANGES:
        to_client += server.send(reply)
    return to_server, to_client, client_events, server_events


def respond(receiver: Connection, event: Event) -> None:
    """What the ends of ``conversation_bytes`` did after each event, so the streams fit."""
    if isinstance(receiver, ServerConnection) and isinstance(event, Hello):
        receiver.send(Welcome(node="n"))
    if isinstance(receiver, ClientConnection) and isinstance(event, Welcome):
        for request, _ in EXCHANGES:
            receiver.send(request)


def receive_in_pieces(receiver: Connection, pieces: list[bytes]) -> list[Event]:
    """Feed ``pieces`` one by one, collecting events and responding as the original ends did."""
    received: list[Event] = []
    for piece in pieces:
        if not piece:
            continue  # b"" would mean end of input
        receiver.receive_data(piece)
        while (event := receiver.next_event()) is not NEED_DATA:
            received.append(event)
            respond(receiver, event)
    return received


def fresh_server() -> Connection:
    """A server that has not seen anything."""
    return ServerConnection()


def fresh_client() -> Connection:
    """A client that has said hello."""
    client = ClientConnection()
    client.send(Hello())
    return client


def test_split_at_every_offset() -> None:
    """Cutting either byte stream in two anywhere yields the same events."""
    to_server, to_client, client_events, server_events = conversation_bytes()
    for stream, make, expected in (
        (to_server, fresh_server, client_events),
        (to_client, fresh_client, server_events),
    ):
        for cut in range(len(stream) + 1):
            received = receive_in_pieces(make(), [stream[:cut], stream[cut:]])
            assert received == expected, f"cut at {cut}"


def test_byte_by_byte_feeding() -> None:
    """One byte at a time, both ends see every message."""
    to_server, to_client, client_events, server_events = conversation_bytes()
    pieces = [bytes([byte]) for byte in to_server]
    assert receive_in_pieces(fresh_server(), pieces) == client_events
    pieces = [bytes([byte]) for byte in to_client]
    assert receive_in_pieces(fresh_client(), pieces) == server_events


# --- violations -----------------------------------------------------------------------------


def raw(item: dict[str, object]) -> bytes:
    """A frame carrying ``item`` as a deterministic CBOR map, whatever the connection thinks."""
    return frame(cbor2.dumps(item, canonical=True))


def assert_sticky(connection: Connection, error: type[Exception]) -> None:
    """The connection stays in ERROR: receiving raises ``error`` again, sending raises too."""
    assert connection.state is State.ERROR
    with pytest.raises(error, match="ERROR state after"):
        connection.next_event()
    assert connection.state is State.ERROR


def test_request_before_hello_is_rejected() -> None:
    """The first message must be hello."""
    server = ServerConnection()
    server.receive_data(frame(encode_message(Send(1, "m", b""))))
    with pytest.raises(
        RemoteProtocolError, match="client sent Send in state HELLO; allowed: hello"
    ):
        server.next_event()
    assert_sticky(server, RemoteProtocolError)
    assert server.failure == Goodbye(ErrorCode.BAD_REQUEST, str(server._error))


def test_client_may_not_send_requests_before_welcome() -> None:
    """Requests wait for the server's welcome."""
    client = ClientConnection()
    client.send(Hello())
    with pytest.raises(LocalProtocolError, match="client sent Send in state WELCOME"):
        client.send(Send(1, "m", b""))
    assert_sticky(client, LocalProtocolError)
    with pytest.raises(LocalProtocolError, match="cannot send Machines after"):
        client.send(Machines(2))


def test_duplicate_outstanding_id_is_rejected_by_the_server() -> None:
    """Two requests awaiting replies may not share an id."""
    client, server = connected()
    server.receive_data(client.send(Send(5, "m", b"")))
    drain(server)
    server.receive_data(raw({"type": "status", "id": 5, "machine": "m"}))
    with pytest.raises(RemoteProtocolError, match="duplicate request id 5"):
        server.next_event()
    assert_sticky(server, RemoteProtocolError)


def test_duplicate_outstanding_id_is_refused_to_the_client() -> None:
    """The client cannot send a second request with an outstanding id."""
    client, _ = connected()
    client.send(Send(5, "m", b""))
    with pytest.raises(LocalProtocolError, match="duplicate request id 5"):
        client.send(Machines(5))
    assert client.state is State.ERROR


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Output(9, b"", b""), "reply to unknown request id 9"),
        (Output(2, b"", b""), "reply to request 2 out of order: request 1 came first"),
        (Upgraded(1, A, B), "Upgraded cannot answer Send 1"),
        (Error(1, ErrorCode.WRONG_VERSION, ""), "error code 'wrong_version' cannot answer Send 1"),
    ],
)
def test_client_rejects_replies_that_answer_nothing(reply: Reply, reason: str) -> None:
    """A reply must answer the oldest outstanding request, with a message fit for it."""
    client, _ = connected()
    client.send(Send(1, "m", b""))
    client.send(Send(2, "m", b""))
    client.receive_data(frame(encode_message(reply)))
    with pytest.raises(RemoteProtocolError, match=reason):
        client.next_event()
    assert_sticky(client, RemoteProtocolError)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Output(9, b"", b""), "reply to unknown request id 9"),
        (ModuleReply(1, b""), "ModuleReply cannot answer Send 1"),
        (Error(1, ErrorCode.UNKNOWN_MODULE, ""), "error code 'unknown_module' cannot answer"),
    ],
)
def test_server_may_not_send_replies_that_answer_nothing(reply: Reply, reason: str) -> None:
    """The node's own mistakes are LocalProtocolErrors, and nothing may follow them."""
    client, server = connected()
    server.receive_data(client.send(Send(1, "m", b"")))
    drain(server)
    with pytest.raises(LocalProtocolError, match=reason):
        server.send(reply)
    assert server.failure is None
    with pytest.raises(LocalProtocolError, match="cannot send Output after"):
        server.send(Output(1, b"", b""))
    with pytest.raises(LocalProtocolError, match="cannot send Goodbye after"):
        server.send(Goodbye(ErrorCode.INTERNAL, "bug"))


def test_welcome_must_answer_the_version_asked_for() -> None:
    """A welcome for another version is the server's violation."""
    client = ClientConnection()
    client.send(Hello())
    client.receive_data(
        raw({"type": "welcome", "version": 1, "max_frame": 4096, "agent": "a", "node": "n"})
    )
    with pytest.raises(RemoteProtocolError, match="welcome for version 1 answers hello for 4"):
        client.next_event()


def test_unsupported_version_gets_a_goodbye_saying_so() -> None:
    """A hello for version 5 makes the server say goodbye with unsupported_version."""
    client, server = ClientConnection(), ServerConnection()
    with pytest.raises(LocalProtocolError, match="version 5 is not supported"):
        ClientConnection().send(Hello(version=5))
    client.send(Hello())  # the client believes it asked for version 4
    server.receive_data(raw({"type": "hello", "version": 5, "max_frame": 4096, "agent": "x"}))
    with pytest.raises(UnsupportedVersion, match="unsupported protocol version 5"):
        server.next_event()
    goodbye = server.failure
    assert goodbye is not None
    assert goodbye.code is ErrorCode.UNSUPPORTED_VERSION
    client.receive_data(server.send(goodbye))
    assert drain(client) == [goodbye]
    assert client.state is State.CLOSED
    assert server.failure is None  # said once
    with pytest.raises(LocalProtocolError, match="cannot send Goodbye after"):
        server.send(goodbye)


def test_second_hello_is_out_of_place_whatever_its_version() -> None:
    """Only the first message may be a hello; a later one is a bad request."""
    for version in (1, 2):
        _, server = connected()
        server.receive_data(
            raw({"type": "hello", "version": version, "max_frame": 4096, "agent": ""})
        )
        with pytest.raises(RemoteProtocolError, match="client sent Hello in state READY") as caught:
            server.next_event()
        assert not isinstance(caught.value, UnsupportedVersion)
        assert server.failure is not None
        assert server.failure.code is ErrorCode.BAD_REQUEST


def test_server_answers_what_it_received_before_the_clients_violation() -> None:
    """After the client's garbage the server may still reply in order, then say goodbye."""
    client, server = connected()
    server.receive_data(client.send(Send(1, "m", b"")) + client.send(Machines(2)) + b"\x00" * 4)
    assert drain_until_error(server) == [Send(1, "m", b""), Machines(2)]
    to_client = server.send(Output(1, b"o", b"s"))
    to_client += server.send(MachinesReply(2, ()))
    goodbye = server.failure
    assert goodbye is not None
    assert goodbye.code is ErrorCode.BAD_REQUEST
    assert "frame length is 0" in goodbye.message
    to_client += server.send(goodbye)
    client.receive_data(to_client)
    assert drain(client) == [Output(1, b"o", b"s"), MachinesReply(2, ()), goodbye]
    assert client.state is State.CLOSED


def drain_until_error(connection: Connection) -> list[Event]:
    """Events before the connection raised RemoteProtocolError (which it must)."""
    events: list[Event] = []
    with pytest.raises(RemoteProtocolError):
        while (event := connection.next_event()) is not NEED_DATA:
            events.append(event)
    return events


def test_goodbye_carries_only_connection_codes() -> None:
    """A goodbye explains the end of a connection, not a failed step."""
    _, server = connected()
    with pytest.raises(LocalProtocolError, match="goodbye cannot carry code 'trap'"):
        server.send(Goodbye(ErrorCode.TRAP, ""))


def test_goodbye_leaves_unanswered_requests_pending() -> None:
    """The client learns which requests never got a reply."""
    client, server = connected()
    server.receive_data(client.send(Send(1, "m", b"")) + client.send(Send(2, "m", b"")))
    drain(server)
    client.receive_data(server.send(Output(1, b"", b"")))
    client.receive_data(server.send(Goodbye(ErrorCode.OVERLOADED, "shutting down")))
    assert drain(client) == [Output(1, b"", b""), Goodbye(ErrorCode.OVERLOADED, "shutting down")]
    assert client.pending == (2,)
    assert client.state is State.CLOSED
    client.receive_data(b"")
    assert drain(client) == [ConnectionClosed()]


def test_data_after_goodbye_is_a_violation() -> None:
    """Nothing follows a goodbye."""
    client, _ = connected()
    client.send(Send(1, "m", b""))
    client.receive_data(frame(encode_message(Goodbye(ErrorCode.OVERLOADED, ""))))
    client.receive_data(frame(encode_message(Output(1, b"", b""))))
    with pytest.raises(RemoteProtocolError, match="server sent Output in state CLOSED"):
        drain(client)


def test_oversized_frames_are_rejected_by_limit_of_the_phase() -> None:
    """Before the handshake the limit is 4096 bytes; after it, the announced max_frame."""
    server = ServerConnection()
    server.receive_data((4097).to_bytes(4))
    with pytest.raises(RemoteProtocolError, match="frame length 4097 exceeds the limit of 4096"):
        server.next_event()
    client, server = connected(server_max=5000)
    server.receive_data((5001).to_bytes(4))
    with pytest.raises(RemoteProtocolError, match="frame length 5001 exceeds the limit of 5000"):
        server.next_event()
    client.receive_data((HANDSHAKE_MAX_FRAME * 4 + 1).to_bytes(4))
    with pytest.raises(RemoteProtocolError, match="exceeds the limit of 16384"):
        client.next_event()


def test_too_large_an_event_is_refused_without_harm() -> None:
    """FrameTooLarge rejects one event and leaves the connection as it was."""
    client, server = connected(client_max=5000, server_max=6000)
    with pytest.raises(FrameTooLarge, match="peer accepts at most 6000"):
        client.send(UpgradeRequest(1, "m", A, bytes(6000), b""))
    assert client.state is State.READY
    assert client.pending == ()
    server.receive_data(client.send(Send(1, "m", b"")))
    assert drain(server) == [Send(1, "m", b"")]
    with pytest.raises(FrameTooLarge, match="peer accepts at most 5000"):
        server.send(Output(1, bytes(5000), b""))
    assert server.pending == (1,)
    client.receive_data(server.send(Error(1, ErrorCode.TOO_LARGE, "output of 5000 bytes")))
    assert drain(client) == [Error(1, ErrorCode.TOO_LARGE, "output of 5000 bytes")]


# --- end of input ---------------------------------------------------------------------------


def test_client_eof_lets_the_server_drain() -> None:
    """After the client closes its side the server still answers what it received."""
    client, server = connected()
    server.receive_data(client.send(Send(1, "m", b"")))
    server.receive_data(b"")
    assert drain(server) == [Send(1, "m", b""), ConnectionClosed()]
    assert server.state is State.DRAINING
    assert server.next_event() == ConnectionClosed()  # and again
    client.receive_data(server.send(Output(1, b"", b"")))
    assert drain(client) == [Output(1, b"", b"")]


def test_server_eof_closes_the_client() -> None:
    """A server that closes ends the conversation; pending requests stay visible."""
    client, _ = connected()
    client.send(Machines(3))
    client.receive_data(b"")
    assert drain(client) == [ConnectionClosed()]
    assert client.state is State.CLOSED
    assert client.pending == (3,)
    with pytest.raises(LocalProtocolError, match="client sent Machines in state CLOSED"):
        client.send(Machines(4))


def test_eof_inside_a_frame_is_a_violation() -> None:
    """Closing mid-frame loses a message: the peer is told how much arrived."""
    client, server = connected()
    server.receive_data(client.send(Send(1, "m", b"abc"))[:-1])
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match=r"closed inside a frame \(38 byte\(s\)"):
        server.next_event()
    assert_sticky(server, RemoteProtocolError)


def test_receive_after_eof_is_our_mistake() -> None:
    """Bytes cannot follow the end of input."""
    server = ServerConnection()
    server.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after end of input"):
        server.receive_data(b"x")
    assert_sticky(server, LocalProtocolError)


def test_eof_before_anything_closes_quietly() -> None:
    """A client that connects and leaves is not an error."""
    server = ServerConnection()
    server.receive_data(b"")
    assert drain(server) == [ConnectionClosed()]
    assert server.state is State.CLOSED


# --- layering -------------------------------------------------------------------------------

ALLOWED_IMPORTS = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "io",
    "math",
    "re",
    "struct",
    "typing",
    "cbor2",
    "hotswap.errors",
    "hotswap.protocol",
}


def test_protocol_imports_no_io_and_nothing_above_it() -> None:
    """The protocol package is sans-IO: no socket, no asyncio, no cam, node or client."""
    package = Path(hotswap.protocol.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                allowed = any(name == a or name.startswith(a + ".") for a in ALLOWED_IMPORTS)
                assert allowed, f"{path.name} imports {name}"


def test_every_message_class_is_exported() -> None:
    """The package's __all__ names every event a node or client handles."""
    exported = set(hotswap.protocol.__all__)
    for cls in (
        Hello,
        Welcome,
        Send,
        UpgradeRequest,
        Status,
        Machines,
        GetModule,
        Output,
        Upgraded,
    ):
        assert cls.__name__ in exported
    for cls2 in (StatusReply, MachinesReply, ModuleReply, Error, Goodbye, ConnectionClosed):
        assert cls2.__name__ in exported
    assert all(hasattr(hotswap.protocol, name) for name in exported)
    assert isinstance(Message, object)


def test_documented_conversation_table_is_the_implemented_one() -> None:
    """docs/protocol.md section 5 lists exactly the transitions of states.TRANSITIONS."""
    text = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    section = text.split("## 5. Conversation")[1].split("Anything else")[0]
    kinds = {
        "`hello`": "hello",
        "`welcome`": "welcome",
        "`goodbye`": "goodbye",
        "any request": "request",
        "any reply": "reply",
    }
    documented: dict[tuple[State, Role, str], State] = {}
    rows = [row for row in section.splitlines() if row.startswith("|")][2:]  # skip the header
    assert len(rows) == 11
    for row in rows:
        states, sender, what, after = (cell.strip() for cell in row.strip("|").split("|"))
        role = Role.CLIENT if sender == "client" else Role.SERVER
        kind = "eof" if what.startswith("end of its stream") else kinds[what]
        befores: list[State]
        if states == "any but ERROR":
            befores = [state for state in State if state is not State.ERROR]
        else:
            befores = [State[name.strip()] for name in states.split(",")]
        for before in befores:
            documented[before, role, kind] = State[after]
    implemented = {key: value for key, value in TRANSITIONS.items() if key[0] is not State.ERROR}
    assert documented == implemented


def test_an_event_that_cannot_be_encoded_changes_nothing() -> None:
    """A bad field is refused before anything is sent; the connection stays usable."""
    client, server = connected()
    with pytest.raises(LocalProtocolError, match="machine"):
        client.send(Status(1, "bad name"))
    assert client.state is not State.ERROR and client.pending == ()
    server.receive_data(client.send(Status(1, "counter")))
    assert server.next_event() == Status(1, "counter")
