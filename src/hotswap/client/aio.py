"""The asyncio client: the blocking client's operations (send, upgrade, release, rollback,
dry_run, confirm, revert, status, machines, module), awaited. "Upgrade" here is the user's
:class:`hotswap.code.Upgrade`."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar, cast

from hotswap.address import default_address, parse_address
from hotswap.client.session import (
    DRY_RUN_INPUTS,
    DryRunOutcome,
    Flow,
    Input,
    InstancePage,
    MachineStatus,
    Session,
)
from hotswap.client.wire import DEFAULT_TIMEOUT, FALLBACK_VERSION, Wire, older_node
from hotswap.code import Upgrade
from hotswap.errors import NodeError
from hotswap.protocol.events import (
    NEED_DATA,
    PROTOCOL_VERSION,
    Deleted,
    Deployed,
    Released,
    Request,
    TrialEnded,
    Upgraded,
)
from hotswap.tls import chosen_context

T = TypeVar("T")


def _again(error: BaseException, address: str) -> BaseException:
    """``error`` for another request that waited: a NodeError of its own (each task raises
    its own), a cancellation as the connection's loss."""
    if isinstance(error, NodeError):
        return NodeError(error.code, str(error))
    reason = str(error) or type(error).__name__
    return NodeError("unreachable", f"the connection to {address} is unusable after: {reason}")


class AsyncTransport(Protocol):
    """A byte stream to a node, for asyncio: a TCP stream or an in-memory node's connection."""

    address: str

    def send(self, data: bytes) -> None:
        """Queue all of ``data`` for the node."""

    async def recv(self) -> bytes:
        """Bytes from the node, ``b""`` once it closed; :class:`OSError` if it is gone."""

    def close(self) -> None:
        """Start closing; nothing more is sent."""

    async def wait_closed(self) -> None: ...


class StreamTransport:
    """An asyncio TCP stream."""

    def __init__(self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.address = address
        self.reader = reader
        self.writer = writer
        self.tls = writer.get_extra_info("sslcontext") is not None

    @classmethod
    async def open(cls, address: str, tls: ssl.SSLContext | None = None) -> StreamTransport:
        host, port = parse_address(address)
        if tls is None:
            reader, writer = await asyncio.open_connection(host, port)
        else:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=host.strip("[]")
            )
        return cls(address, reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self) -> bytes:
        return await self.reader.read(1 << 16)

    def close(self) -> None:
        self.writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(OSError):  # the node reset the connection: closed either way
            await self.writer.wait_closed()


class AsyncClient:
    """An asyncio connection to one node: ``await AsyncClient.connect(address)``, or
    ``await AsyncClient.over(transport)`` for another transport. Values come back as the
    classes of ``machines`` and of the values sent, as with :class:`hotswap.client.Client`.

    Many tasks may use one client at once: their requests are pipelined on its connection, in
    the order they are made, the requests made in one turn of the event loop written together,
    and each task gets its own reply (the node answers in order). Once half of the requests in
    flight have their replies, the loop runs the tasks those woke (and writes their next
    requests) before the rest are handed out, so that the node has work while this process
    has the rest. A request that gets no reply in time (or whose task is cancelled) leaves the
    connection unusable, as for one task: every request still waiting then fails with the
    same error, and later ones are refused."""

    def __init__(
        self,
        transport: AsyncTransport,
        timeout: float = DEFAULT_TIMEOUT,
        machines: Iterable[object] = (),
        token: str | None = None,
    ) -> None:
        self.transport = transport
        self.timeout = timeout
        self.wire = Wire(transport.address, token)
        self.wire.tls = getattr(transport, "tls", False)
        self.wire.session.remember(*machines)
        self.address = transport.address
        self.node_name = ""
        #: The replies awaited, in the order of the requests (the reader resolves them).
        self._waiting: deque[asyncio.Future[object]] = deque()
        #: When each of them is due (the loop's time), and the one timer that watches them.
        self._deadlines: deque[float] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._reader: asyncio.Task[None] | None = None
        #: Requests made this turn of the loop, written together at its end (None: none).
        self._unwritten: list[bytes] | None = None

    @property
    def session(self) -> Session:
        """The client-side state of this connection: module cache, conversions, request ids."""
        return self.wire.session

    @classmethod
    async def connect(
        cls,
        address: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        machines: Iterable[object] = (),
        token: str | None = None,
        tls: ssl.SSLContext | bool | None = None,
    ) -> AsyncClient:
        """A client for the node at ``address`` (default: ``$HOTSWAP_NODE``); ``token`` and
        ``tls`` as :func:`hotswap.client.connect` takes them."""
        machines = tuple(machines)
        Session().remember(*machines)  # a wrong machine is refused before connecting
        address = address or default_address()
        parse_address(address)  # a bad address is the caller's mistake, not an unreachable node
        context = chosen_context(tls)
        version = PROTOCOL_VERSION
        while True:
            try:
                opening = StreamTransport.open(address, context)
                transport = await asyncio.wait_for(opening, timeout)
            except (OSError, TimeoutError) as e:
                raise Wire(address).cannot_reach(e, tls=context is not None) from None
            try:
                return await cls.over(
                    transport, timeout=timeout, machines=machines, token=token, version=version
                )
            except NodeError as e:
                if not older_node(e, version):
                    raise
                version = FALLBACK_VERSION  # a node of the previous release: a new connection

    @classmethod
    async def over(
        cls,
        transport: AsyncTransport,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        machines: Iterable[object] = (),
        token: str | None = None,
        version: int = PROTOCOL_VERSION,
    ) -> AsyncClient:
        """A client on an open transport, once the node has answered its hello (of
        ``version``)."""
        try:
            client = cls(transport, timeout, machines, token)
        except BaseException:
            transport.close()
            raise
        try:
            transport.send(client.wire.hello(version))
            client.node_name = client.wire.welcome(await client._next()).node
        except BaseException:
            transport.close()
            raise
        return client

    async def close(self) -> None:
        """Close the connection; requests still waiting for their replies fail (``unreachable``)
        and later ones are refused."""
        self._abandon(NodeError("unreachable", f"the client of {self.address} was closed"))
        self.transport.close()  # (closed already, unless the connection was unusable before)
        if self._reader is not None:
            self._reader.cancel()
        await self.transport.wait_closed()

    async def _next(self) -> object:
        deadline = time.monotonic() + self.timeout
        while True:
            event = self.wire.next_event()
            if event is not NEED_DATA:
                return event
            remaining = deadline - time.monotonic()
            try:
                data = await asyncio.wait_for(self.transport.recv(), max(remaining, 0.001))
            except TimeoutError:
                raise self.wire.timed_out() from None
            except OSError as e:
                raise self.wire.lost(e) from None
            self.wire.receive(data)

    async def request(self, event: Request) -> object:
        """Send one request and return its reply event (an Error reply is returned, not raised).
        Other tasks may make requests meanwhile (see the class)."""
        return await self._reply(self.wire.encode((event,)))

    async def _reply(self, data: bytes) -> object:
        """Write the bytes of a request the connection has taken, and await its reply."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[object] = loop.create_future()
        deadline = loop.time() + self.timeout
        self._waiting.append(waiter)
        self._deadlines.append(deadline)
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._overdue)
        try:
            self._write(data, loop)
            if self._reader is None:
                self._reader = loop.create_task(self._read())
            return await waiter
        except NodeError:
            raise  # the connection failed (or timed out) for every request: _abandon said so
        except BaseException as e:  # cancellation: the reply may still come, late
            self._abandon(e)
            raise

    def _overdue(self) -> None:
        """The watchdog of the oldest request waiting (replies come in request order, so it
        is the first due): past its deadline, the connection times out; else it waits on
        for it. One timer for all the requests in flight, not one each."""
        self._watchdog = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        due = self._deadlines[0]
        if loop.time() >= due:
            self._abandon(self.wire.timed_out())
        else:
            self._watchdog = loop.call_at(due, self._overdue)

    def _write(self, data: bytes, loop: asyncio.AbstractEventLoop) -> None:
        """Write ``data`` with the other requests made in this turn of the loop, at its end:
        one write for all, not one each. A write to a socket is a system call that wakes the
        node (300 us of CPU on a small virtual machine), and the node then reads them as one
        chunk, commits them together and answers them in one write."""
        if self._unwritten is None:
            self._unwritten = [data]
            loop.call_soon(self._flush)
        else:
            self._unwritten.append(data)

    def _flush(self) -> None:
        unwritten, self._unwritten = self._unwritten, None
        if unwritten and self.wire.broken is None:
            try:
                self.transport.send(b"".join(unwritten))
            except (OSError, RuntimeError) as e:  # the transport is gone: so are the replies
                self._abandon(self.wire.lost(e))

    async def _read(self) -> None:
        """Hand each reply to the request it answers, while replies are awaited."""
        conn = self.wire.conn
        try:
            handed = 0  # replies handed out since the loop last ran the tasks they woke
            while self._waiting:
                if 2 * handed >= len(self._waiting) + handed >= 4:
                    # Half of the requests in flight are answered: their tasks go on (and
                    # send their next requests, written together) before the other half's
                    # replies are handed out, so the node works on those while this process
                    # works on the rest, instead of each waiting for the other in turn.
                    handed = 0
                    await asyncio.sleep(0)
                    continue
                # an output first (the hot path); nothing to read yet (next_event would say
                # NEED_DATA): straight to recv
                event: object = conn.next_output()
                if event is None:
                    event = NEED_DATA if conn.drained else self.wire.next_event()
                if event is NEED_DATA:
                    try:
                        data = await self.transport.recv()
                    except OSError as e:
                        raise self.wire.lost(e) from None
                    self.wire.receive(data)
                    handed = 0  # recv let the loop run them
                    continue
                waiter = self._waiting.popleft()
                self._deadlines.popleft()
                handed += 1
                if not waiter.done():
                    waiter.set_result(event)
        except NodeError as e:  # the node said goodbye, closed or broke the protocol
            self._abandon(e)
        finally:
            self._reader = None

    def _abandon(self, error: BaseException) -> None:
        """A request got no reply: the connection may never be used again, and every request
        still waiting fails with ``error``."""
        if self.wire.broken is None:
            self.wire.unanswered(error)
            self.transport.close()
        waiting, self._waiting = self._waiting, deque()
        self._deadlines.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for waiter in waiting:
            if not waiter.done():
                waiter.set_exception(_again(error, self.address))
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()

    async def _run(self, flow: Flow[T]) -> T:
        try:
            event = next(flow)
            while True:
                event = flow.send(await self.request(event))
        except StopIteration as done:
            return cast(T, done.value)

    async def send(self, machine: str, value: Any, *, key: str | None = None) -> Any:
        # The hot path, as Client.send's: Session.send's steps with a lane, anything unusual
        # handed to the flow from that point on.
        wire = self.wire
        sent = wire.session.start(machine, value, key)
        if not isinstance(sent, Input):
            return await self._run(sent)
        frame = wire.send_input(sent)
        reply = await (self.request(sent.event()) if frame is None else self._reply(frame))
        done, rest = wire.session.finish(sent, reply)
        return rest if done else await self._run(rest)

    async def upgrade(
        self,
        machine: str,
        upgrade: Upgrade,
        *,
        trial: int = 0,
        trial_seconds: int = 0,
        check_all: bool = False,
    ) -> Upgraded:
        flow = self.wire.session.upgrade(machine, upgrade, trial, trial_seconds, check_all)
        return await self._run(flow)

    async def dry_run(
        self, machine: str, upgrade: Upgrade, *, inputs: int = DRY_RUN_INPUTS
    ) -> DryRunOutcome:
        return await self._run(self.wire.session.dry_run(machine, upgrade, inputs))

    async def confirm(self, machine: str) -> TrialEnded:
        return await self._run(self.wire.session.end_trial(machine, revert=False))

    async def revert(self, machine: str) -> TrialEnded:
        return await self._run(self.wire.session.end_trial(machine, revert=True))

    async def release(self, upgrades: Mapping[str, Upgrade]) -> Released:
        return await self._run(self.wire.session.release(upgrades))

    async def rollback(
        self, machine: str, migration: object | None = None, *, check_all: bool = False
    ) -> Upgraded:
        return await self._run(self.wire.session.rollback(machine, migration, check_all))

    async def status(self, machine: str, *, key: str | None = None) -> MachineStatus:
        return await self._run(self.wire.session.status(machine, key))

    async def instances(
        self,
        machine: str,
        prefix: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> InstancePage:
        return await self._run(self.wire.session.instances(machine, prefix, after, limit))

    async def delete(self, machine: str, key: str) -> Deleted:
        return await self._run(self.wire.session.delete(machine, key))

    async def deploy(self, name: str, machine: object) -> Deployed:
        return await self._run(self.wire.session.deploy(name, machine))

    async def machines(self) -> list[tuple[str, str]]:
        return await self._run(self.wire.session.machines())

    async def module(self, identity: str) -> bytes:
        return await self._run(self.wire.session.fetch(identity))
