"""Regression tests for bugs found reviewing the node, the client and the CLI.

Each test failed before its fix; the docstring says what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from hotswap import cli
from hotswap.cam.loaded import load
from hotswap.client import AsyncClient, Upgrade, connect
from hotswap.errors import HotswapError, InternalError, NodeError, StoreError
from hotswap.examples import handbuilt
from hotswap.examples.counter import Count, Incr, counter_sm, counter_sm2, upgrade_state
from hotswap.node.main import NodeOptions, prepare
from hotswap.node.registry import Registry
from hotswap.node.server import Node, NodeConfig
from hotswap.node.store import Store
from hotswap.node.trace import Trace
from hotswap.protocol import ClientConnection, Hello
from hotswap.protocol.connection import ServerConnection
from hotswap.protocol.events import (
    NEED_DATA,
    ConnectionClosed,
    MachineEntry,
    Machines,
    MachinesReply,
    Output,
    Request,
    Send,
    Status,
    Welcome,
)
from nodeproc import NodeProcess

COUNTER = "hotswap.examples.counter:counter_sm"
INCR = b"\x00"  # Incr() at the counter's input type (Bool: false is the left injection)


# --- helpers --------------------------------------------------------------------------------


def _options(tmp_path: Path, **machines: str) -> NodeOptions:
    return NodeOptions(data=tmp_path / "data", machines=tuple(machines.items()))


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
    node = prepare(_options(tmp_path, counter=COUNTER), Trace("seed", out))

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
        node.store.close()
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


# --- the store ------------------------------------------------------------------------------


def test_a_failed_write_is_a_store_error_and_the_store_stays_usable(tmp_path: Path) -> None:
    """A full disk at INSERT time escaped as a raw sqlite3 error, left the queued inputs queued
    and the transaction flag set although SQLite had rolled back: every later commit failed
    (UNIQUE constraint on log.seq) even once space was back, and later writes ran outside any
    transaction."""
    store = Store(tmp_path / "db")
    registry = Registry()
    machine = registry.start("counter", load(handbuilt.counter_module()))
    store.log_start(machine)
    store.commit(registry.machines)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now full
    for _ in range(2):
        for _ in range(2000):
            stepped = registry.step("counter", INCR)
            store.log_input(machine, INCR, stepped.identity)
        with pytest.raises(StoreError, match="full"):
            store.commit(registry.machines)
        assert not store.db.in_transaction
    store.db.execute("PRAGMA max_page_count = 1000000")  # space is back
    machine.inputs = 0  # what a node restarted from the store would run on
    stepped = registry.step("counter", INCR)
    store.log_input(machine, INCR, stepped.identity)
    store.commit(registry.machines)
    store.close()
    reopened = Store(tmp_path / "db")
    try:
        (back,) = reopened.recover().machines
    finally:
        reopened.close()
    assert back.inputs == 1  # the failed batches are gone, the later input is there


# --- the server -----------------------------------------------------------------------------


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
        real_commit = node.store.commit

        def failing(machines: object) -> None:
            node.store.commit = real_commit  # type: ignore[method-assign]
            raise StoreError("commit to the store failed: database or disk is full")

        node.store.commit = failing  # type: ignore[method-assign]
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


def test_a_client_that_never_reads_its_replies_is_not_read_from(tmp_path: Path) -> None:
    """There was no back-pressure: the node kept reading, applying and buffering replies for
    a client that read none, so its memory grew without bound (200 MB in 20 s)."""
    total = 300_000
    applied: list[int] = []

    async def scenario(node: Node, address: str) -> None:
        _, writer, conn = await _handshake(address, rcvbuf=4096)
        # One input in ten, so that the machine's input count tells how many were read.
        requests: list[Request]
        requests = [
            Send(i, "counter", INCR) if i % 10 == 0 else Status(i, "counter") for i in range(total)
        ]
        writer.write(b"".join(conn.send(r) for r in requests))
        machine = node.registry.get("counter")
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


def test_sigterm_delivers_the_replies_of_committed_inputs(tmp_path: Path) -> None:
    """On SIGTERM the node committed and exited with replies still in its buffers: a
    pipelining client lost replies of durable inputs and saw a frame cut in half."""
    with NodeProcess(tmp_path / "data", {"counter": COUNTER}, "--trace", "off") as node:
        host, port = node.address.split(":")
        sock = socket.create_connection((host, int(port)))
        conn = ClientConnection()
        sock.sendall(conn.send(Hello()))
        while not isinstance(conn.next_event(), Welcome):
            conn.receive_data(sock.recv(1 << 16))
        requests = b"".join(conn.send(Send(i, "counter", INCR)) for i in range(200_000))
        threading.Thread(target=_send_quietly, args=(sock, requests), daemon=True).start()
        time.sleep(1.0)
        node.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # replies pile up in the node's buffers meanwhile
        replies, end = 0, None
        sock.settimeout(30)
        while end is None:
            conn.receive_data(sock.recv(1 << 16))
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, Output):
                    replies += 1
                else:
                    end = event
                    break
        assert isinstance(end, ConnectionClosed)
        assert node.proc.wait(20) == 0
        sock.close()
    assert _recover(tmp_path)[0] == replies


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the node stopped reading and closed
        sock.sendall(data)


# --- starting a node ------------------------------------------------------------------------


def test_a_machine_name_the_protocol_cannot_carry_is_refused(tmp_path: Path) -> None:
    """`--machine "bad name=..."` started a node whose `machines` reply could not be encoded:
    `hotswap status` then failed for everyone and the node logged a traceback."""
    with pytest.raises(HotswapError, match="bad machine name 'bad name'"):
        prepare(_options(tmp_path, **{"bad name": COUNTER}), Trace("off", io.StringIO()))


def test_a_node_name_the_protocol_cannot_carry_is_refused(tmp_path: Path) -> None:
    """`--name` longer than 256 characters made every handshake fail (welcome unencodable)."""
    options = NodeOptions(
        data=tmp_path / "data", machines=(("counter", COUNTER),), config=NodeConfig(name="x" * 300)
    )
    with pytest.raises(HotswapError, match="node name"):
        prepare(options, Trace("off", io.StringIO()))


def test_machine_flag_with_other_code_for_a_stored_machine_says_so(tmp_path: Path) -> None:
    """A `--machine` whose code differs from the stored machine's was ignored silently."""
    prepare(_options(tmp_path, counter=COUNTER), Trace("off", io.StringIO())).store.close()
    out = io.StringIO()
    node = prepare(
        _options(tmp_path, counter="hotswap.examples.counter:counter_sm2"), Trace("off", out)
    )
    node.store.close()
    assert "keeps running" in out.getvalue() and "hotswap upgrade" in out.getvalue()


def test_a_reference_to_a_function_with_arguments_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--to os.path:join` called join() and escaped the CLI as a TypeError traceback."""
    argv = ["upgrade", "c", "--to", "os.path:join", "--migration", "os.path:join"]
    assert cli.main([*argv, "--node", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "takes arguments" in err


# --- the client -----------------------------------------------------------------------------


def test_a_bad_machine_name_does_not_break_the_connection(tmp_path: Path) -> None:
    """The sans-IO connection failed for good on an unencodable name: one `status("a b")`
    made every later call on that client raise LocalProtocolError."""
    with NodeProcess(tmp_path / "data", {"counter": COUNTER}, "--trace", "off") as node:
        client = connect(node.address)
        with pytest.raises(HotswapError, match="bad machine name"):
            client.status("bad name")
        with pytest.raises(HotswapError, match="bad identity"):
            client.module("abc")
        assert client.status("counter").inputs == 0
        client.close()


def test_async_status_after_an_upgrade_made_elsewhere(tmp_path: Path) -> None:
    """AsyncClient.status converted the state with the module it had cached, not the one
    running: ValueTypeError after another client upgraded the machine."""
    with NodeProcess(tmp_path / "data", {"counter": COUNTER}, "--trace", "off") as node:

        async def scenario() -> None:
            client = await AsyncClient.connect(node.address)
            client.session.remember(counter_sm, counter_sm2)
            await client.send("counter", Incr())
            with connect(node.address) as other:
                other.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            status = await client.status("counter")
            assert status.state == (1, 0)
            await client.close()

        asyncio.run(scenario())


def _slow_node(delay: float) -> str:
    """A fake node that answers its first ``machines`` request after ``delay`` seconds."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        sock, _ = listener.accept()
        conn, first = ServerConnection(), True
        with sock, contextlib.suppress(OSError):  # the client may hang up on a late reply
            while data := sock.recv(1 << 16):
                conn.receive_data(data)
                while (event := conn.next_event()) is not NEED_DATA:
                    if isinstance(event, Hello):
                        sock.sendall(conn.send(Welcome()))
                    elif isinstance(event, Machines):
                        if first:
                            time.sleep(delay)
                            first = False
                        entry = MachineEntry(f"reply-to-{event.id}", "a" * 64)
                        sock.sendall(conn.send(MachinesReply(event.id, (entry,))))
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"127.0.0.1:{listener.getsockname()[1]}"


def test_a_late_reply_never_answers_the_next_request() -> None:
    """After a timeout the client kept using the connection, so the late reply to the
    timed-out request was returned as the answer to the next one (a send could return the
    output of the previous input)."""
    client = connect(_slow_node(0.6), timeout=0.2)
    with pytest.raises(NodeError, match="in time"):
        client.machines()
    time.sleep(0.8)
    with pytest.raises(NodeError, match="unusable"):
        client.machines()


def test_a_late_reply_never_answers_the_next_request_async() -> None:
    """The same for AsyncClient."""

    async def scenario() -> None:
        client = await AsyncClient.connect(_slow_node(0.6), timeout=0.2)
        with pytest.raises(NodeError, match="in time"):
            await client.machines()
        await asyncio.sleep(0.8)
        with pytest.raises(NodeError, match="unusable"):
            await client.machines()

    asyncio.run(scenario())


def test_a_bug_while_handling_a_request_stops_the_node_cleanly(tmp_path: Path) -> None:
    """An unexpected exception in a handler may leave a machine half changed: the node
    acknowledges nothing more, stops, and reports it; the store keeps what was durable."""
    outcome: list[str] = []

    async def scenario(node: Node, address: str) -> None:
        client = await AsyncClient.connect(address, timeout=5)
        client.session.remember(counter_sm)
        await client.send("counter", Incr())

        def broken(event: object) -> object:
            raise RuntimeError("a bug")

        node.handle = broken  # type: ignore[method-assign, assignment]
        try:
            await client.send("counter", Incr())
        except NodeError as e:
            outcome.append(e.code)
        await asyncio.wait_for(node.stopped.wait(), 5)

    node = _run_node(tmp_path, scenario, failure=InternalError)
    assert outcome == ["unreachable"]
    assert isinstance(node.failure, InternalError) and "a bug" in str(node.failure)
    assert _recover(tmp_path) == (1, 1)
