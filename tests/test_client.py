"""The client library against an in-memory node (and, where the socket is the point, a
fake node on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest

from hotswap.cam.module import encode_module
from hotswap.client import AsyncClient, Client, Upgrade, connect
from hotswap.errors import HotswapError, NodeError, UpgradeRejected
from hotswap.examples import handbuilt
from hotswap.examples.counter import Count, Incr, counter_sm, counter_sm2, upgrade_state
from hotswap.node.memory import MemoryNode
from hotswap.protocol.connection import ServerConnection
from hotswap.protocol.events import (
    NEED_DATA,
    Hello,
    MachineEntry,
    Machines,
    MachinesReply,
    Welcome,
)


def _counter() -> MemoryNode:
    return MemoryNode({"counter": counter_sm})


def test_async_client_runs_the_seed_demo() -> None:
    """The asyncio API mirrors the blocking one: send, upgrade, status, machines."""
    v1 = encode_module(handbuilt.counter_module())
    v2 = encode_module(handbuilt.counter2_module())
    migrate = encode_module(handbuilt.upgrade_state_module())

    async def demo(node: MemoryNode) -> None:
        client = await AsyncClient.over(node.async_connection())
        try:
            assert await client.send("counter", (0, ())) == (0, ())
            await client.upgrade("counter", Upgrade(v1, v2, migrate))
            assert await client.send("counter", (1, ())) == (1, 0)
            status = await client.status("counter")
            assert status.state == (1, 0) and status.inputs == 2
            assert [name for name, _ in await client.machines()] == ["counter"]
            with pytest.raises(UpgradeRejected):
                await client.upgrade("counter", Upgrade(v1, v2, migrate))
            with pytest.raises(NodeError, match="no machine"):
                await client.send("nope", (0, ()))
        finally:
            await client.close()

    with MemoryNode({"counter": handbuilt.counter_module}) as node:
        asyncio.run(demo(node))


def test_the_blocking_client_over_an_in_memory_node() -> None:
    """The same bytes as over a socket: values by name, status, machines, module fetch."""
    with _counter() as node, Client(transport=node.connection()) as client:
        assert client.node_name == "hotswap-node"
        assert client.send("counter", Incr()) is None
        assert client.status("counter").state == 1
        assert client.machines() == [("counter", counter_sm.identity)]
        assert client.module(counter_sm.identity) == counter_sm.module


def test_a_bad_machine_name_does_not_break_the_connection() -> None:
    """The sans-IO connection failed for good on an unencodable name: one `status("a b")`
    made every later call on that client raise LocalProtocolError."""
    with _counter() as node, Client(transport=node.connection()) as client:
        with pytest.raises(HotswapError, match="bad machine name"):
            client.status("bad name")
        with pytest.raises(HotswapError, match="bad identity"):
            client.module("abc")
        assert client.status("counter").inputs == 0


def test_async_status_after_an_upgrade_made_elsewhere() -> None:
    """AsyncClient.status converted the state with the module it had cached, not the one
    running: ValueTypeError after another client upgraded the machine."""
    with _counter() as node:

        async def scenario() -> None:
            client = await AsyncClient.over(node.async_connection())
            client.session.remember(counter_sm, counter_sm2)
            await client.send("counter", Incr())
            with Client(transport=node.connection()) as other:
                other.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            status = await client.status("counter")
            assert status.state == (1, 0)
            await client.close()

        asyncio.run(scenario())


def test_a_refused_upgrade_over_memory_is_upgrade_rejected() -> None:
    with _counter() as node, Client(transport=node.connection()) as client:
        client.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        with pytest.raises(UpgradeRejected) as info:
            client.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        assert info.value.code == "wrong_version"


def test_the_blocking_and_asyncio_clients_say_the_same_on_a_timeout() -> None:
    """Both clients share one wire: the same messages for the same failures."""
    messages: list[str] = []
    client = connect(_slow_node(0.5), timeout=0.1)
    with pytest.raises(NodeError, match="in time") as info:
        client.machines()
    messages.append(str(info.value))

    async def scenario() -> None:
        aclient = await AsyncClient.connect(_slow_node(0.5), timeout=0.1)
        with pytest.raises(NodeError, match="in time") as ainfo:
            await aclient.machines()
        messages.append(str(ainfo.value))

    asyncio.run(scenario())
    first, second = (m.split(" in time")[0].rsplit(":", 1)[0] for m in messages)
    assert first == second == "no reply from 127.0.0.1"
    # a retry could apply it twice: the message says its outcome is unknown
    assert all("may have been applied or not" in m for m in messages)


def _slow_node(delay: float, every: bool = False) -> str:
    """A fake node that answers its first ``machines`` request (``every`` one) after
    ``delay`` seconds."""
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
                        if first or every:
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


def test_many_tasks_share_one_async_client_over_a_real_socket(tmp_path: Path) -> None:
    """Sixteen tasks send through one AsyncClient at once, each to its own instance: every
    reply is its own task's (each instance counts exactly its task's inputs, in order), and the
    requests made in one turn of the loop reach the node in fewer writes than requests."""
    from served import Served  # noqa: PLC0415

    writes: list[int] = []

    async def scenario(address: str) -> None:
        client = await AsyncClient.connect(address, machines=[counter_sm])
        transport = client.transport
        send = transport.send

        def counted(data: bytes) -> None:
            writes.append(len(data))
            send(data)

        transport.send = counted  # type: ignore[method-assign]

        async def task(i: int) -> list[object]:
            """Instance ``task-i`` counts from ``20 * i``: a reply to another task's Count
            would show another twenty."""
            key = f"task-{i}"
            for _ in range(20 * i):
                await client.send("counter", Incr(), key=key)
            counts = []
            for _ in range(10):
                assert await client.send("counter", Incr(), key=key) is None
                counts.append(await client.send("counter", Count(), key=key))
            return counts

        seen = await asyncio.gather(*(task(i) for i in range(16)))
        assert seen == [[20 * i + k for k in range(1, 11)] for i in range(16)]
        await client.close()

    with Served(tmp_path, {"counter": counter_sm}) as node:
        asyncio.run(scenario(node.address))
    requests = sum(20 * i + 20 for i in range(16)) + 1  # and the code fetched
    assert len(writes) < requests * 3 / 4  # requests made together were written together


def _frames(data: bytes) -> int:
    """How many length-prefixed frames ``data`` holds."""
    count = at = 0
    while at < len(data):
        at += 4 + int.from_bytes(data[at : at + 4])
        count += 1
    assert at == len(data)
    return count


def test_tasks_sharing_an_async_client_go_on_once_half_their_replies_are_in() -> None:
    """Eight tasks share a client, two inputs each. The node answers the first eight requests
    in one chunk; once half of them are handed out, those four tasks send their next inputs
    (written together) before the other four get their replies, so the node has work while
    this process hands out the rest: writes of 8, then 4 and 4, not 8 and 8. Every task
    still gets its own replies."""

    async def scenario() -> list[int]:
        with MemoryNode({"counter": counter_sm}) as node:
            transport = node.async_connection()
            writes: list[int] = []
            send = transport.send

            def counted(data: bytes) -> None:
                writes.append(_frames(data))
                send(data)

            transport.send = counted  # type: ignore[method-assign]
            client = await AsyncClient.over(transport, machines=[counter_sm])
            await client.send("counter", Incr(), key="warm")  # the code fetched
            writes.clear()

            async def task(i: int) -> object:
                for _ in range(2):
                    assert await client.send("counter", Incr(), key=f"t{i}") is None
                return await client.send("counter", Count(), key=f"t{i}")

            assert await asyncio.gather(*(task(i) for i in range(8))) == [2] * 8
            await client.close()
            return writes

    writes = asyncio.run(scenario())
    assert writes[:3] == [8, 4, 4]
    assert sum(writes) == 24


def test_a_timeout_fails_every_request_sharing_the_connection() -> None:
    """Three tasks wait on one client whose node does not answer: each fails (one with the
    timeout, the others because the connection is unusable after it), and so does the next
    request, later; none is left waiting."""

    async def scenario() -> None:
        client = await AsyncClient.connect(_slow_node(5.0), timeout=0.3)
        started = time.monotonic()
        results = await asyncio.gather(
            *(client.machines() for _ in range(3)), return_exceptions=True
        )
        assert time.monotonic() - started < 3
        assert all(isinstance(r, NodeError) for r in results), results
        assert any("in time" in str(r) for r in results)
        with pytest.raises(NodeError, match="unusable"):
            await client.machines()

    asyncio.run(scenario())


def test_closing_a_shared_async_client_fails_the_requests_still_waiting() -> None:
    """A task closes the client while two others wait on the node: they fail at once, naming
    the closed client, instead of waiting out their timeout; a request after it is refused."""

    async def scenario() -> None:
        client = await AsyncClient.connect(_slow_node(5.0), timeout=30)
        waiting = [asyncio.ensure_future(client.machines()) for _ in range(2)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await client.close()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert time.monotonic() - started < 2
        assert all(isinstance(r, NodeError) and "closed" in str(r) for r in results), results
        with pytest.raises(NodeError, match="unusable"):
            await client.machines()

    asyncio.run(scenario())


def test_an_async_client_closed_idle_refuses_later_requests() -> None:
    """After close() with nothing waiting, a request is refused as on a connection made
    unusable, naming the closed client."""

    async def scenario() -> None:
        with MemoryNode({"counter": counter_sm}) as node:
            client = await AsyncClient.over(node.async_connection(), machines=[counter_sm])
            await client.send("counter", Incr())
            await client.close()
            with pytest.raises(NodeError, match=r"unusable after: the client of .* was closed"):
                await client.send("counter", Incr())

    asyncio.run(scenario())


def test_a_write_that_fails_fails_the_requests_it_carried() -> None:
    """The node's side is gone (its store failed): the write of the next request fails, and
    that request raises a NodeError at once rather than the write's error surfacing
    elsewhere."""
    from hotswap.errors import StoreError  # noqa: PLC0415

    unhandled: list[object] = []

    def handler(_: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        unhandled.append(context)

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(handler)
        with MemoryNode({"counter": counter_sm}) as node:
            client = await AsyncClient.over(node.async_connection(), machines=[counter_sm])
            await client.send("counter", Incr())
            node.fail(StoreError("disk gone"))
            with pytest.raises(NodeError) as info:
                await client.send("counter", Incr())
            assert info.value.code == "unreachable"
        assert unhandled == []  # the write's error went to the request, not to the loop

    asyncio.run(scenario())


def test_requests_each_answered_in_time_never_time_out_together() -> None:
    """Six requests in a row, each answered after 0.1 s with a timeout of 0.35 s: together
    they take longer than the timeout, and each is answered (each is due a timeout after it
    was made, not after the first)."""

    async def scenario() -> None:
        client = await AsyncClient.connect(_slow_node(0.1, every=True), timeout=0.35)
        started = time.monotonic()
        for _ in range(6):
            assert (await client.machines())[0][0].startswith("reply-to-")
        assert time.monotonic() - started > 0.35
        await client.close()

    asyncio.run(scenario())
