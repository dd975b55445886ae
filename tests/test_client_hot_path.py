"""The clients' hot path for an input (``Client.send``, ``AsyncClient.send``) against the long
way (the ``Session.send`` flow through ``request``, the codecs and ``next_event``): every
scenario runs twice, on two fresh in-memory nodes, once each way, and must write the same
bytes, get the same results (of the same classes) and raise the same errors, in the same
order. ``long_way`` turns the hot path off: no lane (``Session.lane``), no quick walk of the
value (``Classes._seen_modules``), no output read beside ``next_event``."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from hotswap.client import AsyncClient, Client, Upgrade
from hotswap.client.convert import Classes
from hotswap.client.session import Session
from hotswap.client.wire import LeanConnection
from hotswap.errors import HotswapError, NodeError, StepTrapped, StoreError
from hotswap.examples import quota_v1
from hotswap.examples.cart import AddItem, Checkout, Total, cart_sm
from hotswap.examples.counter import Count, Incr, counter_sm, counter_sm2, upgrade_state
from hotswap.examples.quota import Use, quota_sm, quota_sm2, upgrade_quota
from hotswap.node.memory import MemoryConnection, MemoryNode
from test_client_classes import Allowed, Take, _upgrade_elsewhere, limiter, limiter_v2

MACHINES: dict[str, object] = {
    "counter": counter_sm,
    "quota": quota_sm,
    "cart": cart_sm,
    "rl": limiter,
}


@contextmanager
def long_way(on: bool) -> Iterator[None]:
    """With ``on``, the clients take the long way for every input."""
    with pytest.MonkeyPatch.context() as patch:
        if on:
            patch.setattr(Session, "lane", lambda self, machine, prefer: None)
            patch.setattr(LeanConnection, "next_output", lambda self: None)
            patch.setattr(Classes, "_seen_modules", lambda self, value: None)
        yield


class Taken:
    """How many inputs the hot path wrote, and outputs it read."""

    def __init__(self, patch: pytest.MonkeyPatch) -> None:
        self.written = self.read = 0
        send_input, next_output = LeanConnection.send_input, LeanConnection.next_output

        def counted_send(conn: LeanConnection, *args: Any) -> bytes | None:
            frame = send_input(conn, *args)
            self.written += frame is not None
            return frame

        def counted_read(conn: LeanConnection) -> Any:
            output = next_output(conn)
            self.read += output is not None
            return output

        patch.setattr(LeanConnection, "send_input", counted_send)
        patch.setattr(LeanConnection, "next_output", counted_read)


class Recorded:
    """A transport that keeps what the client wrote, and can drop writes (a node that never
    answers: the client times out)."""

    def __init__(self, inner: MemoryConnection) -> None:
        self.inner = inner
        self.address = inner.address
        self.written: list[bytes] = []
        self.deaf = False

    def send(self, data: bytes) -> None:
        self.written.append(bytes(data))
        if not self.deaf:
            self.inner.send(data)

    def recv(self) -> bytes:
        return self.inner.recv()

    def close(self) -> None:
        self.inner.close()


class AsyncRecorded(Recorded):
    async def recv(self) -> bytes:  # type: ignore[override]
        while not self.inner.pending and not self.inner.closed:
            await asyncio.sleep(0)
        return self.inner.recv()

    async def wait_closed(self) -> None:
        return None


def outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """What a call gave, comparable across runs: its result and the result's class, or the
    class and message of what it raised; and the warnings it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = call(*args, **kwargs)
            result: object = ("value", value, type(value))
        except HotswapError as e:  # the error is the outcome compared
            result = ("raised", type(e), str(e))
    return result, [(w.category, str(w.message)) for w in caught]


async def async_outcome(call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = await call(*args, **kwargs)
            result: object = ("value", value, type(value))
        except HotswapError as e:  # the error is the outcome compared
            result = ("raised", type(e), str(e))
    return result, [(w.category, str(w.message)) for w in caught]


Scenario = Callable[[Client, MemoryNode, Recorded], list[Any]]


def both_ways(scenario: Scenario) -> list[Any]:
    """The scenario's outcomes, the same the hot way and the long way (and the same bytes
    written); the hot path must have written and read inputs."""
    runs = []
    for long in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            taken = Taken(patch)
            with long_way(long), MemoryNode(MACHINES) as node:
                transport = Recorded(node.connection())
                with Client(transport=transport) as client:
                    seen = scenario(client, node, transport)
            runs.append((seen, transport.written, taken))
    return _same_both_ways(runs)


def _same_both_ways(runs: list[tuple[list[Any], Any, Taken]]) -> list[Any]:
    """What a scenario saw the hot way, once the long way saw the same and wrote the same bytes,
    and only the hot way took the hot path."""
    (hot, hot_bytes, hot_taken), (slow, slow_bytes, slow_taken) = runs
    assert hot == slow
    assert hot_bytes == slow_bytes
    assert hot_taken.written > 0 and hot_taken.read > 0
    assert slow_taken.written == slow_taken.read == 0
    return hot


AsyncScenario = Callable[[AsyncClient, MemoryNode, AsyncRecorded], Awaitable[list[Any]]]


def both_ways_async(scenario: AsyncScenario) -> list[Any]:
    runs = []
    for long in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            taken = Taken(patch)
            with long_way(long), MemoryNode(MACHINES) as node:
                transport = AsyncRecorded(node.connection())

                async def run(transport: AsyncRecorded = transport) -> list[Any]:
                    client = await AsyncClient.over(transport, timeout=0.2)
                    try:
                        return await scenario(client, node, transport)
                    finally:
                        await client.close()

                seen = asyncio.run(run())
            runs.append((seen, transport.written, taken))
    return _same_both_ways(runs)


# --- the scenarios ---------------------------------------------------------------------------


def plain_inputs(c: Client, node: MemoryNode, t: Recorded) -> list[Any]:
    """Inputs to default and keyed instances, outputs of the user's classes, and errors
    raised before anything is sent (a bad key, a bad name) or by the node (no such machine, a
    trap), none of which breaks the connection."""
    seen = [outcome(c.send, "counter", Incr()) for _ in range(3)]
    seen.append(outcome(c.send, "counter", Count()))
    for key in ("user-1", "user-2", "user-1", "é" * 128, "x" * 256):
        seen.append(outcome(c.send, "counter", Incr(), key=key))
        seen.append(outcome(c.send, "counter", Count(), key=key))
    for bad in ("", "a\0b", "é" * 129, "x" * 257, 5, b"k", ["k"]):
        seen.append(outcome(c.send, "counter", Incr(), key=bad))
    for name in ("no such", "nope", "", 7, "x" * 65):
        seen.append(outcome(c.send, name, Incr()))
    seen.append(outcome(c.send, "counter", "not an input"))
    seen.append(outcome(c.send, "counter", Use(3)))  # another machine's class
    seen.append(outcome(c.send, "quota", quota_v1.Use(5)))
    seen.append(outcome(c.send, "quota", quota_v1.Use(5000)))
    seen.append(outcome(c.send, "quota", (quota_v1.Use(1),)))  # not an input
    seen.append(outcome(c.send, "cart", AddItem("book", "A book", 1200, 2), key="u"))
    seen.append(outcome(c.send, "cart", Checkout(), key="u"))
    seen.append(outcome(c.send, "cart", Checkout(), key="u"))  # empty: traps
    seen.append(outcome(c.send, "rl", Take(n=3)))
    seen.append(outcome(c.send, "counter", Count()))
    return seen


def test_inputs_errors_and_classes_are_the_same_either_way() -> None:
    seen = both_ways(plain_inputs)
    assert seen[3] == (("value", 3, int), [])
    totals = [s for s in seen if s[0][0] == "value" and s[0][2] is Total]
    assert totals and seen[-2][0][2] is Allowed
    assert any(s[0][:2] == ("raised", StepTrapped) for s in seen)


def upgraded_elsewhere(c: Client, node: MemoryNode, t: Recorded) -> list[Any]:
    """Inputs encoded for code that another client has since upgraded: the node refuses them
    (wrong_version) and they are encoded by names again for the new code, once."""
    seen = [outcome(c.send, "counter", Incr()) for _ in range(2)]
    seen.append(outcome(c.send, "quota", quota_v1.Use(10), key="k"))
    seen.append(outcome(c.send, "rl", Take(n=1)))
    with Client(transport=node.connection()) as other:
        other.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        other.upgrade("quota", Upgrade(quota_sm, quota_sm2, upgrade_quota))
    _upgrade_elsewhere(node)  # rl: to code whose classes this program lacks
    for _ in range(2):
        seen.append(outcome(c.send, "counter", Incr()))
        seen.append(outcome(c.send, "counter", Count()))
        seen.append(outcome(c.send, "quota", quota_v1.Use(850), key="k"))
        seen.append(outcome(c.send, "quota", Use(1), key="k"))
        seen.append(outcome(c.send, "rl", Take(n=1)))  # a Record, and one warning
    c.session.remember(limiter_v2())  # now its classes
    seen.append(outcome(c.send, "rl", Take(n=1)))
    return seen


def test_a_wrong_version_is_encoded_again_by_names_either_way() -> None:
    seen = both_ways(upgraded_elsewhere)
    assert seen[4] == (("value", None, type(None)), [])  # counter version 2 answers
    warned = [s for s in seen if s[1]]
    assert len(warned) == 1 and "Allowed, Refused" in str(warned[0][1])
    assert type(seen[-1][0][1]).__name__ == "Allowed" and seen[-1][0][2] is not Allowed


def lost_node(c: Client, node: MemoryNode, t: Recorded) -> list[Any]:
    """The node stops (its store failed) between two inputs: the write fails, the input
    raises, and the connection is unusable after it."""
    seen = [outcome(c.send, "counter", Incr())]
    node.fail(StoreError("disk gone"))
    seen.append(outcome(c.send, "counter", Incr()))
    seen.append(outcome(c.send, "counter", Incr()))
    return seen


def test_a_node_lost_mid_request_is_the_same_either_way() -> None:
    seen = both_ways(lost_node)
    assert seen[1][0][:2] == ("raised", NodeError)
    assert "unusable" in str(seen[2][0][2])


def deaf_node(c: Client, node: MemoryNode, t: Recorded) -> list[Any]:
    """A request the node never answers times out; no later request is sent, so no late
    reply can answer it."""
    seen = [outcome(c.send, "counter", Incr())]
    t.deaf = True
    seen.append(outcome(c.send, "counter", Incr()))
    t.deaf = False
    seen.append(outcome(c.send, "counter", Count()))
    seen.append(outcome(lambda: c.status("counter").state))
    return seen


def test_a_timeout_mid_request_is_the_same_either_way() -> None:
    seen = both_ways(deaf_node)
    assert "in time" in str(seen[1][0][2]) or "no reply" in str(seen[1][0][2])
    assert "unusable" in str(seen[2][0][2]) and "unusable" in str(seen[3][0][2])


def test_request_ids_stay_in_order_and_the_connection_in_step() -> None:
    """The hot path takes request ids as the flow does and leaves the protocol connection as
    ``send`` and ``next_event`` would: nothing awaiting a reply between inputs, and the long
    way's requests (status, upgrade) still work in between."""
    with MemoryNode(MACHINES) as node, Client(transport=node.connection()) as c:
        conn = c.wire.conn
        for i in range(30):
            assert c.send("counter", Incr(), key=f"k{i % 3}") is None
            assert conn.pending == ()
        first = c.session.request_id()
        assert c.send("counter", Count()) == 0
        assert c.session.request_id() == first + 2  # one request for the input
        assert c.status("counter", key="k1").state == 10
        c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        assert c.send("counter", Incr()) is None and c.send("counter", Count()) == 1
        assert conn.pending == () and conn.state.value == "READY"


# --- the asyncio client ----------------------------------------------------------------------


async def async_inputs(c: AsyncClient, node: MemoryNode, t: AsyncRecorded) -> list[Any]:
    seen = [await async_outcome(c.send, "counter", Incr()) for _ in range(3)]
    for key in ("a", "b", "a", "", "\0", 9):
        seen.append(await async_outcome(c.send, "counter", Incr(), key=key))
        seen.append(await async_outcome(c.send, "counter", Count(), key=key))
    seen.append(await async_outcome(c.send, "nope", Incr()))
    seen.append(await async_outcome(c.send, "bad name", Incr()))
    seen.append(await async_outcome(c.send, "counter", 1.5))
    seen.append(await async_outcome(c.send, "cart", Checkout(), key="u"))  # traps
    seen.append(await async_outcome(c.send, "quota", quota_v1.Use(5)))
    seen.append(await async_outcome(c.send, "rl", Take(n=2)))
    with Client(transport=node.connection()) as other:
        other.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        other.upgrade("quota", Upgrade(quota_sm, quota_sm2, upgrade_quota))
    _upgrade_elsewhere(node)
    for _ in range(2):
        seen.append(await async_outcome(c.send, "counter", Incr()))
        seen.append(await async_outcome(c.send, "counter", Count()))
        seen.append(await async_outcome(c.send, "quota", quota_v1.Use(900)))
        seen.append(await async_outcome(c.send, "rl", Take(n=2)))

    async def task(i: int) -> list[Any]:  # tasks sharing the client, pipelined
        out = []
        for n in range(5):
            value = Incr() if n % 2 else Count()
            out.append(await async_outcome(c.send, "counter", value, key=f"t{i}"))
        out.append(await async_outcome(state, f"t{i}"))
        return out

    async def state(key: str) -> Any:
        return (await c.status("counter", key=key)).state

    seen.extend(await asyncio.gather(*(task(i) for i in range(16))))
    t.deaf = True  # then a node that never answers: every task waiting fails
    seen.extend(await asyncio.gather(*(async_outcome(c.send, "counter", Incr()) for _ in range(3))))
    t.deaf = False
    seen.append(await async_outcome(c.send, "counter", Incr()))
    return seen


def test_the_async_client_is_the_same_either_way() -> None:
    seen = both_ways_async(async_inputs)
    assert seen[0] == (("value", None, type(None)), [])
    assert any(isinstance(s, list) and len(s) == 6 for s in seen)
    assert "unusable" in str(seen[-1][0][2])


@dataclass(frozen=True)
class Holder:
    item: Take
    more: tuple[Take, ...]


@dataclass(frozen=True)
class Named:
    n: int


def test_the_quick_walk_learns_what_learn_value_learns() -> None:
    """``Classes.learn_value`` on values it can walk quickly and values it cannot (unseen
    classes, dicts, named tuples, classes themselves, long lists): the same modules in the
    same order, and the same classes learned, as with the quick walk off."""
    from collections import namedtuple  # noqa: PLC0415

    Pair = namedtuple("Pair", "a b")
    values: list[Any] = [
        Take(n=1),
        Take(n=1),
        (0, ()),
        None,
        "text",
        [Take(n=1), Allowed(remaining=2)],
        Holder(Take(n=1), (Take(n=2), Take(n=3))),
        Holder(Take(n=1), (Take(n=2), Take(n=3))),
        {"k": Take(n=1)},
        {"k": Take(n=1), Named(5): [Named(3), {"x": Take(n=2)}]},
        {"k": Take(n=1), Named(5): [Named(3), {"x": Take(n=2)}]},
        {n: n for n in range(40)},
        Pair(Take(n=1), 2),
        Take,
        [1] * 100,
        [Named(1)] * 70,
        (Named(2), Incr(), Take(n=4)),
        (Named(2), Incr(), Take(n=4)),
        Use(3),
        (Use(3), quota_v1.Use(4)),
    ]
    quick, slow = Classes(), Classes()
    learned = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(slow, "_seen_modules", lambda value: None)
        for value in values:
            learned.append(slow.learn_value(value))
            assert quick.learn_value(value) == learned[-1], value
            assert quick.version == slow.version
            assert quick._given == slow._given and quick._learned == slow._learned
            assert quick._by_module == slow._by_module and quick._seen == slow._seen
    for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17):  # all seen now: the quick walk's
        assert quick._seen_modules(values[i]) == learned[i], values[i]
    assert learned[0] == ("test_client_classes",)
    assert learned[9] == ("test_client_classes", __name__)


async def async_lost_node(c: AsyncClient, node: MemoryNode, t: AsyncRecorded) -> list[Any]:
    """The node stops between two inputs of tasks sharing the client: every one waiting fails
    (``unreachable``), and so does the next."""
    seen = [await async_outcome(c.send, "counter", Incr(), key=f"k{i}") for i in range(3)]
    node.fail(StoreError("disk gone"))
    seen.extend(
        await asyncio.gather(*(async_outcome(c.send, "counter", Count()) for _ in range(3)))
    )
    seen.append(await async_outcome(c.send, "counter", Incr()))
    return seen


def test_a_node_lost_under_the_async_client_is_the_same_either_way() -> None:
    seen = both_ways_async(async_lost_node)
    assert all(s[0][:2] == ("raised", NodeError) for s in seen[3:])
    assert "unusable" in str(seen[-1][0][2])
