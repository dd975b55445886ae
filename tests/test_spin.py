"""Polling for the next message instead of sleeping for it (``--spin`` on the node,
``Client(spin=...)``): what is polled for still arrives however late, large writes on the
client's non-blocking socket go out whole, and a timeout is still a timeout."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from hotswap.client import Client, blocking
from hotswap.client.blocking import SocketTransport
from hotswap.code import Upgrade, module_bytes
from hotswap.errors import NodeError
from hotswap.examples.counter import (
    Count,
    Incr,
    counter_sm,
    counter_sm2,
    downgrade_state,
    upgrade_state,
)
from hotswap.node.cli import add_node_command
from hotswap.node.server import SPIN
from hotswap.node.service import NodeConfig
from hotswap.protocol.events import Status, Upgraded, UpgradeRequest
from served import Served


@pytest.fixture
def peer() -> Iterator[tuple[socket.socket, SocketTransport]]:
    """A listening socket's accepted end, and a polling transport connected to it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = f"127.0.0.1:{server.getsockname()[1]}"
        transport = SocketTransport(address, timeout=5.0, spin=0.001)
        other, _ = server.accept()
        try:
            yield other, transport
        finally:
            other.close()
            transport.close()


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a program of one thread, where the transport polls (pytest's own threads aside)."""
    monkeypatch.setattr(threading, "active_count", lambda: 1)


@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_a_reply_in_or_after_the_polling_window_is_read(
    peer: tuple[socket.socket, SocketTransport], alone: None, delay: float
) -> None:
    other, transport = peer
    assert transport.spin == 0.001 and transport.sock.gettimeout() == 0.0

    def answer() -> None:
        time.sleep(delay)
        other.sendall(b"reply")

    answering = threading.Thread(target=answer)
    answering.start()
    got = transport.recv()
    answering.join()
    assert got == b"reply"


def test_a_write_larger_than_the_socket_buffers_goes_out_whole(
    peer: tuple[socket.socket, SocketTransport],
) -> None:
    """8 MiB through a non-blocking socket that the other end reads slowly: every byte
    arrives, in order."""
    other, transport = peer
    data = bytes(range(256)) * (8 * 4096)
    got = bytearray()

    def read() -> None:
        while len(got) < len(data):
            time.sleep(0.001)
            got.extend(other.recv(1 << 16))

    reading = threading.Thread(target=read)
    reading.start()
    transport.send(data)
    reading.join(30)
    assert bytes(got) == data


def test_no_reply_is_a_timeout_after_the_polling(
    peer: tuple[socket.socket, SocketTransport], alone: None
) -> None:
    _, transport = peer
    transport.timeout = 0.05
    with pytest.raises(TimeoutError):
        transport.recv()


def test_a_closed_connection_reads_as_closed(
    peer: tuple[socket.socket, SocketTransport], alone: None
) -> None:
    other, transport = peer
    other.close()
    assert transport.recv() == b""


def test_with_spin_0_or_no_timeout_the_socket_blocks_as_before(
    peer: tuple[socket.socket, SocketTransport],
) -> None:
    _, transport = peer
    plain = SocketTransport(transport.address, timeout=5.0, spin=0)
    forever = SocketTransport(transport.address, timeout=None)
    try:
        assert plain.spin == 0 and plain.sock.gettimeout() == 5.0
        assert forever.spin == 0 and forever.sock.gettimeout() is None  # no timeout: blocks
    finally:
        plain.close()
        forever.close()


def test_a_node_that_polls_answers_each_request_when_it_comes(tmp_path: Path) -> None:
    """A node polling for a minute after each reply still answers the next request as it
    arrives (it polls for it, not for the time): 50 round trips do not take 50 minutes."""
    config = NodeConfig(spin=60.0)
    with (
        Served(tmp_path, {"counter": counter_sm}, trace="off", config=config) as served,
        Client(served.address) as c,
    ):
        for i in range(50):
            c.send("counter", Incr())
            assert c.send("counter", Count()) == i + 1
        assert c.status("counter").inputs == 100  # Count is an input too


def test_a_new_connection_ends_the_polling_and_two_are_never_polled(tmp_path: Path) -> None:
    """A node polling its one connection for a minute stops when a second connects (it polls
    the listening socket too), and polls neither of two connections: the second client's
    hello and requests are answered while the first is idle."""
    config = NodeConfig(spin=60.0)
    with (
        Served(tmp_path, {"counter": counter_sm}, trace="off", config=config) as served,
        Client(served.address) as first,
        Client(served.address) as second,
    ):
        first.send("counter", Incr())
        for _ in range(20):
            second.send("counter", Incr())
        assert first.status("counter").inputs == 21


def test_the_spin_option_is_microseconds_and_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="hotswap")
    add_node_command(parser.add_subparsers())
    assert parser.parse_args(["node"]).spin == round(SPIN * 1e6) == 200
    assert parser.parse_args(["node", "--spin", "0"]).spin == 0
    for text in ("-1", "100001", "0.5"):
        with pytest.raises(SystemExit):
            parser.parse_args(["node", "--spin", text])
        err = capsys.readouterr().err
        assert "argument --spin: expected the microseconds to poll a lone connection" in err


def test_a_timed_out_polling_client_says_so(tmp_path: Path, alone: None) -> None:
    """A node that never answers: the polling client times out as a sleeping one does."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = f"127.0.0.1:{server.getsockname()[1]}"
        accepted: list[socket.socket] = []

        def accept() -> None:
            conn, _ = server.accept()
            accepted.append(conn)
            conn.recv(1 << 16)  # the hello, never answered

        accepting = threading.Thread(target=accept)
        accepting.start()
        with pytest.raises(NodeError, match=r"no reply from .* in time to the hello: nothing") as e:
            Client(address, timeout=0.2)
        assert e.value.code == "timeout"
        accepting.join()
        for conn in accepted:
            conn.close()


@pytest.mark.parametrize("spin", [-1, 0.2, float("nan"), "abc", None, True])
def test_a_bad_spin_is_refused_before_anything_connects(spin: object) -> None:
    """``spin`` is seconds (the node's ``--spin`` is microseconds), from 0 to 0.1."""
    with pytest.raises(ValueError, match=r"spin is the seconds a client polls .* got "):
        Client("127.0.0.1:9", spin=spin)  # type: ignore[arg-type]


def test_the_spin_is_cut_to_the_timeout(peer: tuple[socket.socket, SocketTransport]) -> None:
    _, transport = peer
    short = SocketTransport(transport.address, timeout=0.01, spin=0.1)
    try:
        assert short.spin == 0.01
    finally:
        short.close()


def test_a_read_told_not_to_poll_sleeps_at_once(
    peer: tuple[socket.socket, SocketTransport], alone: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``recv(poll=False)`` never enters the polling loop (which reads the clock each turn):
    it waits for the reply asleep, and the reply still arrives; ``recv()`` polls first."""
    other, transport = peer
    reads: list[float] = []

    def clock() -> float:
        reads.append(0.0)
        return time.perf_counter()

    monkeypatch.setattr(blocking, "time", SimpleNamespace(perf_counter=clock))
    other.sendall(b"late")
    assert transport.recv(poll=False) == b"late"
    assert reads == []
    other.sendall(b"polled")
    assert transport.recv() == b"polled"
    assert reads  # the default still polls


def test_a_client_polls_for_inputs_and_waits_asleep_for_changes_of_code(tmp_path: Path) -> None:
    """Over a real connection, the replies to inputs and status are polled for; those to an
    upgrade and a rollback, which take the node longer, are waited for asleep (a client polling
    for them would take a core from the node and from the clients whose inputs wait on it)."""
    with (
        Served(tmp_path, {"counter": counter_sm}, trace="off") as served,
        Client(served.address) as c,
    ):
        transport = c.transport
        assert isinstance(transport, SocketTransport)
        polls: list[tuple[str, bool]] = []
        read = transport.recv
        doing = ["send"]

        def recv(poll: bool = True) -> bytes:
            polls.append((doing[0], poll))
            return read(poll)

        transport.recv = recv  # type: ignore[method-assign]
        c.send("counter", Incr())
        doing[0] = "status"
        c.status("counter")
        doing[0] = "upgrade"
        c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        doing[0] = "rollback"
        c.rollback("counter", downgrade_state)
        doing[0] = "send"
        assert c.send("counter", Count()) == 0  # version 2 counted afresh, rolled back as that
    by_kind: dict[str, set[bool]] = {}
    for kind, poll in polls:
        by_kind.setdefault(kind, set()).add(poll)
    assert by_kind["send"] == {True} and by_kind["status"] == {True}
    assert False in by_kind["upgrade"] and False in by_kind["rollback"]


class _OwnRecv(SocketTransport):
    """A caller's transport that overrides ``recv`` with the Transport protocol's signature."""

    def recv(self) -> bytes:  # type: ignore[override]
        return super().recv()


def test_a_transport_of_the_callers_is_read_as_the_protocol_says(tmp_path: Path) -> None:
    """A subclass whose ``recv`` takes no ``poll`` still upgrades: only SocketTransport's own
    ``recv`` is told not to poll."""
    with Served(tmp_path, {"counter": counter_sm}, trace="off") as served:
        client = Client(transport=_OwnRecv(served.address, timeout=5.0))
        try:
            client.send("counter", Incr())
            client.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            assert client.send("counter", Count()) == 0
        finally:
            client.close()


def test_in_a_pipeline_a_query_ahead_of_an_upgrade_is_polled_for(tmp_path: Path) -> None:
    """Each reply of a pipeline is read as its own request's would be: a query ahead of an
    upgrade is polled for."""
    with (
        Served(tmp_path, {"counter": counter_sm}, trace="off") as served,
        Client(served.address) as c,
    ):
        transport = c.transport
        assert isinstance(transport, SocketTransport)
        polls: list[bool] = []
        read = transport.recv

        def recv(poll: bool = True) -> bytes:
            polls.append(poll)
            return read(poll)

        transport.recv = recv  # type: ignore[method-assign]
        session = c.session
        upgrade = UpgradeRequest(
            session.request_id(),
            "counter",
            counter_sm.identity,
            module_bytes(counter_sm2, "the new machine"),
            module_bytes(upgrade_state, "the migration"),
        )
        replies = c.pipeline([Status(session.request_id(), "counter"), upgrade])
        assert isinstance(replies[1], Upgraded), replies
    # the status's reply is polled for (it may come with the upgrade's, in one read); with
    # one decision for the whole pipeline, nothing in it was
    assert polls[0] is True
