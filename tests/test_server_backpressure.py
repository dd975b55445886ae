"""Back-pressure while a chunk of pipelined requests is handled: a batch stops once its replies
reach a budget of bytes, or once it has had its turn of time, and the requests after it wait in
the connection's buffer until the replies are sent; and one peer's failed write costs no other
peer its replies."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hotswap.cam.loaded import load_module
from hotswap.cam.module import encode_module
from hotswap.examples import handbuilt
from hotswap.node.memory import MemoryNode
from hotswap.node.server import Node
from hotswap.node.service import Conversation, Service
from hotswap.protocol import ClientConnection, Hello
from hotswap.protocol.events import (
    NEED_DATA,
    ConnectionClosed,
    GetModule,
    ModuleReply,
    Output,
    Send,
    Status,
    StatusReply,
    Welcome,
)
from served import Served

INCR = b"\x00"
#: The handbuilt counter with a custom section of 1 MiB: its module is a large reply.
LARGE = encode_module(replace(handbuilt.counter_module(3), custom=(("pad", bytes(1 << 20)),)))


@pytest.fixture
def service() -> Iterator[Service]:
    with MemoryNode({"counter": handbuilt.counter_module, "large": LARGE}) as node:
        yield node.service


def _open(
    service: Service, budget: int | None = None, turn: float | None = None
) -> tuple[Conversation, ClientConnection]:
    conversation = Conversation(service, budget=budget, turn=turn)
    client = ClientConnection()
    client.receive_data(b"".join(conversation.receive(client.send(Hello())).replies))
    assert isinstance(client.next_event(), Welcome)
    return conversation, client


def _events(client: ClientConnection, frames: list[bytes]) -> list[object]:
    if not frames:
        return []  # (receiving b"" would mean the node closed)
    client.receive_data(b"".join(frames))
    out: list[object] = []
    while (event := client.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def test_a_batch_stops_once_its_replies_reach_the_budget(service: Service) -> None:
    """Ten requests for a module of 1 MiB with a budget of 2.5 MiB: three replies a batch, the
    others buffered, in order, until ``proceed``."""
    conversation, client = _open(service, budget=5 * (1 << 19))
    identity = load_module(LARGE).identity
    fed = conversation.receive(b"".join(client.send(GetModule(i, identity)) for i in range(10)))
    batches: list[int] = []
    while len(batches) < 10:
        replies = _events(client, fed.replies)
        batches.append(len(replies))
        assert all(isinstance(r, ModuleReply) and r.module == LARGE for r in replies)
        if not fed.more:
            break
        assert conversation.conn.buffered > 0  # the rest wait, undecoded
        fed = conversation.proceed()
    assert batches == [3, 3, 3, 1]
    assert client.pending == ()


def test_a_batch_stops_once_it_has_had_its_turn(service: Service) -> None:
    """With a turn of no time at all, each batch answers one request: the server lets the
    other connections in between."""
    conversation, client = _open(service, turn=0.0)
    fed = conversation.receive(b"".join(client.send(Send(i, "counter", INCR)) for i in range(5)))
    outputs: list[object] = []
    for _ in range(6):  # the last batch finds nothing more
        replies = _events(client, fed.replies)
        assert len(replies) == (1 if len(outputs) < 5 else 0)
        outputs += replies
        fed = conversation.proceed()
    assert not fed.more and not fed.replies
    assert [type(r) for r in outputs] == [Output] * 5
    assert service.registry.get("counter").inputs == 5


class _Peer:
    """What ``Node.commit`` needs of a peer; ``broken`` ones fail to write."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.written: list[bytes] = []
        self.closing = False
        self.dropped = False

    def write(self, data: bytes) -> None:
        if self.broken:
            raise RuntimeError("the transport is gone")
        self.written.append(data)

    def close_now(self) -> None:
        self.dropped = True

    def close_soon(self) -> None:
        pass


def test_a_failed_write_to_one_peer_drops_no_other_peers_replies(service: Service) -> None:
    node = Node(service)
    first, broken, last = _Peer(), _Peer(broken=True), _Peer()
    for peer in (first, broken, last):
        node.queue(peer, [b"reply"])  # type: ignore[arg-type]
    node.commit()
    assert first.written == [b"reply"] and last.written == [b"reply"]
    assert broken.dropped and not first.dropped and node.failure is None


def test_a_client_that_pipelines_large_replies_and_half_closes_gets_them_all(
    tmp_path: Path,
) -> None:
    """Over a socket: forty requests for a module of 1 MiB, then the client shuts its side;
    the node answers them all, a few at a time as the client reads, then closes."""
    served = Served(tmp_path, {"counter": handbuilt.counter_module, "large": LARGE})
    try:
        host, port = served.address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
        sock.settimeout(30)
        client = ClientConnection()
        identity = load_module(LARGE).identity
        requests = [GetModule(i, identity) for i in range(40)] + [Status(40, "counter")]
        sock.sendall(client.send(Hello()))
        replies = _read(sock, client, until=Welcome)
        sock.sendall(b"".join(client.send(r) for r in requests))
        sock.shutdown(socket.SHUT_WR)
        replies += _read(sock, client, until=ConnectionClosed)
        sock.close()
    finally:
        served.stop()
    assert isinstance(replies[0], Welcome)
    assert [type(r) for r in replies[1:-1]] == [ModuleReply] * 40 + [StatusReply]


def _read(sock: socket.socket, client: ClientConnection, until: type) -> list[object]:
    """Events from the node, up to the first ``until``."""
    out: list[object] = []
    while True:
        event = client.next_event()
        if event is NEED_DATA:
            client.receive_data(sock.recv(1 << 20))
            continue
        out.append(event)
        if isinstance(event, until):
            return out
