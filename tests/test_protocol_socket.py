"""The protocol over real sockets on loopback: the sans-IO ends driven by blocking I/O."""

from __future__ import annotations

import socket
import threading

from hotswap.protocol import (
    NEED_DATA,
    ClientConnection,
    Connection,
    ConnectionClosed,
    Error,
    ErrorCode,
    Event,
    Goodbye,
    Hello,
    Machines,
    MachinesReply,
    Output,
    Send,
    ServerConnection,
    State,
    Welcome,
)

TIMEOUT = 10.0


def next_event(connection: Connection, sock: socket.socket) -> Event:
    """Block until ``connection`` has an event, reading from ``sock`` as needed."""
    while (event := connection.next_event()) is NEED_DATA:
        connection.receive_data(sock.recv(65536))
    return event


def serve_counter(sock: socket.socket) -> None:
    """A one-machine node: ``counter`` adds each input byte to its state and outputs it."""
    server = ServerConnection()
    count = 0
    with sock:
        while True:
            event = next_event(server, sock)
            match event:
                case Hello():
                    sock.sendall(server.send(Welcome(node="loopback")))
                case Send(id=request_id, machine="counter", input=data) if len(data) == 1:
                    count += data[0]
                    state = count.to_bytes(8)
                    sock.sendall(server.send(Output(request_id, data, state)))
                case Send(id=request_id):
                    reply = Error(request_id, ErrorCode.UNKNOWN_MACHINE, "only 'counter' here")
                    sock.sendall(server.send(reply))
                case Machines(id=request_id):
                    sock.sendall(server.send(MachinesReply(request_id, ())))
                case ConnectionClosed():
                    assert server.state is State.DRAINING
                    sock.sendall(server.send(Goodbye(ErrorCode.OVERLOADED, "bye")))
                    return
                case _:
                    raise AssertionError(event)


def test_pipelined_sends_over_loopback_tcp() -> None:
    """A client pipelines 500 inputs over TCP, then half-closes, and gets every reply."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            accepted, _ = listener.accept()
            accepted.settimeout(TIMEOUT)
            node = threading.Thread(target=serve_counter, args=(accepted,))
            node.start()
            try:
                client = ClientConnection()
                sock.sendall(client.send(Hello()))
                assert next_event(client, sock) == Welcome(node="loopback")
                inputs = [bytes([i % 7]) for i in range(500)]
                sock.sendall(
                    b"".join(client.send(Send(i, "counter", data)) for i, data in enumerate(inputs))
                    + client.send(Send(500, "other", b""))
                    + client.send(Machines(501))
                )
                sock.shutdown(socket.SHUT_WR)
                total = 0
                for i, data in enumerate(inputs):
                    total += data[0]
                    assert next_event(client, sock) == Output(i, data, total.to_bytes(8))
                reply = next_event(client, sock)
                assert isinstance(reply, Error)
                assert reply.code is ErrorCode.UNKNOWN_MACHINE
                assert next_event(client, sock) == MachinesReply(501, ())
                assert next_event(client, sock) == Goodbye(ErrorCode.OVERLOADED, "bye")
                assert next_event(client, sock) == ConnectionClosed()
                assert client.pending == ()
            finally:
                node.join(TIMEOUT)
            assert not node.is_alive()


def test_handshake_over_a_socketpair() -> None:
    """The same ends work over a socketpair, one thread driving both."""
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(TIMEOUT)
        right.settimeout(TIMEOUT)
        client, server = ClientConnection(), ServerConnection()
        left.sendall(client.send(Hello(max_frame=1 << 20)))
        assert next_event(server, right) == Hello(max_frame=1 << 20)
        right.sendall(server.send(Welcome(node="pair")))
        assert next_event(client, left) == Welcome(node="pair")
        left.sendall(client.send(Send(1, "counter", bytes(100_000))))
        assert next_event(server, right) == Send(1, "counter", bytes(100_000))
        right.sendall(server.send(Output(1, b"", bytes(150_000))))
        assert next_event(client, left) == Output(1, b"", bytes(150_000))
