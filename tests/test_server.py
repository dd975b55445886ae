"""The asyncio server (``server.py``): group commit, fail-stop, back-pressure, a broken trace.

Each test runs the real server on a loopback port in this process and drives it with real
sockets; the docstrings say which bug each test caught.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from hotswap.cam.loaded import is_loaded, load, load_module
from hotswap.cam.module import encode_module
from hotswap.client import AsyncClient, Client, connect
from hotswap.errors import HotswapError, InternalError, NodeError, StoreError
from hotswap.examples import handbuilt
from hotswap.examples.counter import Count, Incr, counter_sm
from hotswap.node.main import NodeOptions, open_service
from hotswap.node.server import Node
from hotswap.node.store import Store
from hotswap.node.trace import Trace
from hotswap.protocol import ClientConnection, Hello
from hotswap.protocol.events import (
    NEED_DATA,
    Output,
    Request,
    Send,
    Status,
    UpgradeRequest,
    Welcome,
)
from served import Served

COUNTER = "hotswap.examples.counter:counter_sm"
INCR = b"\x00"  # Incr() at the counter's input type (Bool: false is the left injection)


async def _serving(node: Node, out: io.StringIO) -> tuple[asyncio.Task[None], str]:
    """Start ``node.serve`` on a free port; the task and the address."""
    task = asyncio.create_task(node.serve("127.0.0.1", 0))
    for _ in range(500):
        for line in out.getvalue().splitlines():
            if line.startswith("Listening on "):
                return task, line.removeprefix("Listening on ")
        await asyncio.sleep(0.01)
    raise AssertionError(f"node did not start: {out.getvalue()!r}")


def _run_node(
    tmp_path: Path,
    scenario: Callable[[Node, str], Awaitable[None]],
    trace_out: io.StringIO | None = None,
    failure: type[HotswapError] = StoreError,
) -> Node:
    """Run ``scenario(node, address)`` against an in-process node, then stop the node."""
    out = trace_out if trace_out is not None else io.StringIO()
    options = NodeOptions(data=tmp_path / "data", machines=(("counter", COUNTER),))
    node = Node(open_service(options, Trace("seed", out)))

    async def main() -> None:
        task, address = await _serving(node, out)
        try:
            await scenario(node, address)
        finally:
            node.stopped.set()
            failed = getattr(node, "failure", None) is not None
            with pytest.raises(failure) if failed else contextlib.nullcontext():
                await asyncio.wait_for(task, 30)

    try:
        asyncio.run(main())
    finally:
        node.service.store.close()
    return node


async def _handshake(
    address: str, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ClientConnection]:
    host, port = address.rsplit(":", 1)
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    conn = ClientConnection()
    writer.write(conn.send(Hello()))
    while True:
        event = conn.next_event()
        if isinstance(event, Welcome):
            return reader, writer, conn
        assert event is NEED_DATA
        conn.receive_data(await reader.read(1 << 16))


def _recover(tmp_path: Path) -> tuple[int, object]:
    store = Store(tmp_path / "data" / "node.sqlite3")
    try:
        (machine,) = store.recover().machines
        return machine.inputs, machine.state
    finally:
        store.close()


def test_a_failed_commit_acknowledges_nothing_and_stops_the_node(tmp_path: Path) -> None:
    """When a commit failed the node closed one connection and carried on with the
    non-durable inputs applied in memory: the next client was told a count that included an
    input the store had lost, and a crash then went back on that acknowledgement."""
    acknowledged: list[int] = []

    async def scenario(node: Node, address: str) -> None:
        client = await AsyncClient.connect(address, timeout=5)
        client.session.remember(counter_sm)
        await client.send("counter", Incr())
        acknowledged.append(1)
        real_commit = node.service.store.commit

        def failing(machines: object) -> None:
            node.service.store.commit = real_commit  # type: ignore[method-assign]
            raise StoreError("commit to the store failed: database or disk is full")

        node.service.store.commit = failing  # type: ignore[method-assign]
        with pytest.raises(NodeError):
            await client.send("counter", Incr())
        try:
            other = await AsyncClient.connect(address, timeout=5)
            other.session.remember(counter_sm)
            acknowledged.append(await other.send("counter", Count()))
        except NodeError:
            pass  # the node is gone: fine, it acknowledged nothing
        stopped.append(node.stopped.is_set())

    stopped: list[bool] = []
    _run_node(tmp_path, scenario)
    assert acknowledged[1:] in ([], [1])  # never 2: the second Incr was never durable
    assert stopped == [True]
    assert _recover(tmp_path) == (1, 1)


@pytest.mark.long
def test_a_client_that_never_reads_its_replies_is_not_read_from(tmp_path: Path) -> None:
    """There was no back-pressure: the node kept reading, applying and buffering replies for
    a client that read none, so its memory grew without bound (200 MB in 20 s)."""
    total = 150_000
    applied: list[int] = []

    async def scenario(node: Node, address: str) -> None:
        _, writer, conn = await _handshake(address, rcvbuf=4096)
        # One input in ten, so that the machine's input count tells how many were read.
        requests: list[Request]
        requests = [
            Send(i, "counter", INCR) if i % 10 == 0 else Status(i, "counter") for i in range(total)
        ]
        writer.write(b"".join(conn.send(r) for r in requests))
        machine = node.service.registry.get("counter")
        last, deadline = -1, time.monotonic() + 30
        while machine.inputs != last and time.monotonic() < deadline:
            last = machine.inputs
            await asyncio.sleep(0.5)
        applied.append(machine.inputs * 10)
        writer.transport.abort()

    _run_node(tmp_path, scenario)
    assert applied[0] < total // 2, f"the node read {applied[0]} of {total} requests"


class _Breaks(io.StringIO):
    """A stream that fails like a closed pipe once ``broken`` is set."""

    broken = False

    def write(self, s: str) -> int:
        if self.broken:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(s)

    def flush(self) -> None:
        if self.broken:
            raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_trace_output_does_not_stop_replies(tmp_path: Path) -> None:
    """With the node's stdout a closed pipe (`hotswap node | head`), every input was applied
    and logged, then the trace write raised and the client's connection was dropped without a
    reply."""
    out = _Breaks()
    outputs: list[object] = []

    async def scenario(node: Node, address: str) -> None:
        out.broken = True
        client = await AsyncClient.connect(address, timeout=5)
        client.session.remember(counter_sm)
        for _ in range(3):
            outputs.append(await client.send("counter", Incr()))
        outputs.append(await client.send("counter", Count()))
        await client.close()

    _run_node(tmp_path, scenario, trace_out=out)
    assert outputs == [None, None, None, 3]


def test_a_bug_while_handling_a_request_stops_the_node_cleanly(tmp_path: Path) -> None:
    """An unexpected exception in a handler may leave a machine half changed: the node
    acknowledges nothing more, stops, and reports it; the store keeps what was durable."""
    outcome: list[str] = []

    async def scenario(node: Node, address: str) -> None:
        client = await AsyncClient.connect(address, timeout=5)
        client.session.remember(counter_sm)
        await client.send("counter", Incr())

        def broken(*request: object) -> object:
            raise RuntimeError("a bug")

        # inputs take the hot path (``take``), other requests ``handle``: a bug in either
        node.service.handle = broken  # type: ignore[method-assign, assignment]
        node.service.take = broken  # type: ignore[method-assign, assignment]
        try:
            await client.send("counter", Incr())
        except NodeError as e:
            outcome.append(e.code)
        await asyncio.wait_for(node.stopped.wait(), 5)

    node = _run_node(tmp_path, scenario, failure=InternalError)
    assert outcome == ["unreachable"]
    assert isinstance(node.failure, InternalError) and "a bug" in str(node.failure)
    assert _recover(tmp_path) == (1, 1)


def test_an_upgrades_modules_are_loaded_off_the_loop_and_its_connection_stays_in_order(
    tmp_path: Path,
) -> None:
    """Decoding, verifying and compiling an upgrade's modules happens before the machine stops
    taking inputs (on a worker thread, this connection's later requests waiting their turn):
    a burst around an upgrade with modules the node has never loaded is still answered in
    order, the later inputs by the new code, while another client is served meanwhile."""
    fresh = os.urandom(8).hex().encode()  # custom sections: new bytes, the same code
    v1 = handbuilt.counter_module()
    v2 = encode_module(replace(handbuilt.counter2_module(), custom=(("t", fresh),)))
    migrate = encode_module(replace(handbuilt.upgrade_state_module(), custom=(("t", fresh),)))
    assert not is_loaded(v2) and not is_loaded(migrate)
    with (
        Served(tmp_path, {"counter": handbuilt.counter_module}, trace="off") as node,
        connect(node.address) as client,
        connect(node.address) as other,
    ):
        rid = client.session.request_id
        burst: list[Request] = [
            Send(rid(), "counter", b"\x00"),
            UpgradeRequest(rid(), "counter", load(v1).identity, v2, migrate),
            Send(rid(), "counter", b"\x00"),
            Send(rid(), "counter", b"\x01"),
        ]
        replies = client.pipeline(burst)
        assert other.status_raw("counter").identity == load_module(v2).identity
    assert [type(r).__name__ for r in replies] == ["Output", "Upgraded", "Output", "Output"]
    states = [r.state for r in replies if isinstance(r, Output)]
    assert states == [b"\x01", b"\x01\x01", b"\x01\x01"]
    assert is_loaded(v2)


def test_a_request_held_for_its_modules_is_not_applied_once_the_node_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while an upgrade's modules loaded: the node had half-closed the connection,
    then applied the held upgrade and the inputs after it and committed them, with nobody to
    tell: a client that retried applied them twice."""
    import hotswap.node.server as server_module  # noqa: PLC0415

    loading, release = threading.Event(), threading.Event()
    real = server_module._load_all

    def slow(modules: list[bytes], fuel: int) -> None:
        loading.set()
        release.wait(10)
        real(modules, fuel)

    monkeypatch.setattr(server_module, "_load_all", slow)
    fresh = (("t", os.urandom(8).hex().encode()),)
    v2 = encode_module(replace(handbuilt.counter2_module(), custom=fresh))
    migrate = encode_module(replace(handbuilt.upgrade_state_module(), custom=fresh))
    identity = load(handbuilt.counter_module()).identity
    node = Served(tmp_path, {"counter": handbuilt.counter_module}, trace="off")
    client = connect(node.address, timeout=5)
    burst: list[Request] = [
        UpgradeRequest(1, "counter", identity, v2, migrate),
        Send(2, "counter", INCR),
    ]
    sender = threading.Thread(target=lambda: _pipeline_quietly(client, burst), daemon=True)
    sender.start()
    assert loading.wait(10)
    # A client that reads none of its replies keeps the stopping node waiting for it (up to
    # its grace period), so the loading ends while the loop still runs.
    host, port = node.address.split(":")
    idle = socket.socket()
    idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    idle.connect((host, int(port)))
    conn = ClientConnection()
    idle.sendall(conn.send(Hello()))
    while not isinstance(conn.next_event(), Welcome):
        conn.receive_data(idle.recv(4096))
    idle.sendall(b"".join(conn.send(Status(i, "counter")) for i in range(20_000)))
    time.sleep(0.3)
    stopper = threading.Thread(target=node.stop)
    stopper.start()
    time.sleep(0.2)  # the node has stopped reading and half-closed; the loading goes on
    release.set()
    time.sleep(0.3)  # the loaded request would be applied now, were it going to be
    idle.close()  # so the node need not wait out its grace period for this client
    stopper.join(30)
    sender.join(10)
    client.close()
    store = Store(tmp_path / "node.sqlite3")
    try:
        (machine,) = store.recover().machines
        assert (machine.identity, machine.inputs) == (identity, 0)
    finally:
        store.close()


def _pipeline_quietly(client: Client, burst: list[Request]) -> None:
    with contextlib.suppress(NodeError):  # the node closes without answering: expected
        client.pipeline(burst)
