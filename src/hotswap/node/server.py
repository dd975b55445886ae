"""The node's network shell: asyncio around the pure registry, the store and the protocol.

One event loop owns everything, so requests are applied one at a time in arrival order: an
upgrade happens between two inputs by construction, and inputs that arrive while it is checked
wait in their sockets' buffers. Replies are held until the store has committed what they
acknowledge (group commit): the loop applies every request it has read, commits once, then
writes all the replies, in request order per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from typing import cast

from hotswap.cam.values import encode_type, encode_value, value_encoder
from hotswap.errors import NodeError, ProtocolError, UpgradeRejected
from hotswap.node.registry import Registry
from hotswap.node.store import Store
from hotswap.node.trace import Trace
from hotswap.protocol.connection import FrameTooLarge, ServerConnection
from hotswap.protocol.events import (
    NEED_DATA,
    ConnectionClosed,
    Error,
    ErrorCode,
    GetModule,
    Goodbye,
    Hello,
    HistoryEntry,
    MachineEntry,
    Machines,
    MachinesReply,
    Message,
    ModuleReply,
    Output,
    Send,
    Status,
    StatusReply,
    Upgrade,
    Upgraded,
    Welcome,
)

#: Pause reading from a client whose unread replies exceed this many bytes.
HIGH_WATER = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str = "hotswap-node"
    max_frame: int = 64 * 1024 * 1024
    idle_timeout: float | None = None
    #: A client that has not said hello within this many seconds is disconnected.
    handshake_timeout: float = 10.0


class Node:
    """Serves one registry over TCP, persisting to one store."""

    def __init__(
        self, registry: Registry, store: Store, trace: Trace, config: NodeConfig | None = None
    ) -> None:
        self.registry = registry
        self.store = store
        self.trace = trace
        self.config = config or NodeConfig()
        self._waiting: dict[_Peer, list[bytes]] = {}
        self.stopped = asyncio.Event()

    # --- requests ---------------------------------------------------------------------------

    def handle(self, event: Message) -> Message:
        """Apply one request; the reply (possibly an Error) is what the client will receive."""
        match event:
            case Send(id=rid, machine=name, input=data):
                try:
                    machine = self.registry.get(name)
                    stepped = self.registry.step_value(
                        machine, self.registry.decode_input(machine, data)
                    )
                except NodeError as e:
                    return Error(rid, ErrorCode(e.code), str(e))
                self.store.log_input(machine, data, stepped.identity)
                sig = machine.code.machine
                assert sig is not None
                self.trace.step(machine.code, stepped.output, stepped.state)
                return Output(
                    rid,
                    value_encoder(sig.output)(stepped.output),
                    value_encoder(sig.state)(stepped.state),
                )
            case Upgrade(id=rid, machine=name, expected=expected, module=new, migration=mig):
                try:
                    upgraded = self.registry.upgrade(name, expected, new, mig)
                except UpgradeRejected as e:
                    self.trace.rejected(e.code, e.reason)
                    return Error(rid, ErrorCode(e.code), str(e))
                except NodeError as e:
                    return Error(rid, ErrorCode(e.code), str(e))
                self.store.log_upgrade(self.registry.get(name), upgraded)
                self.trace.upgraded(upgraded.notes)
                return Upgraded(rid, upgraded.old, upgraded.new.identity)
            case Status(id=rid, machine=name):
                try:
                    machine = self.registry.get(name)
                except NodeError as e:
                    return Error(rid, ErrorCode(e.code), str(e))
                sig = machine.code.machine
                assert sig is not None
                history = tuple(
                    HistoryEntry(c.identity, c.kind, c.seq, c.time) for c in machine.history
                )
                return StatusReply(
                    rid,
                    name,
                    machine.identity,
                    encode_type(sig.input),
                    encode_type(sig.state),
                    encode_type(sig.output),
                    encode_value(machine.state, sig.state),
                    machine.inputs,
                    history,
                )
            case Machines(id=rid):
                entries = tuple(
                    MachineEntry(name, self.registry.machines[name].identity)
                    for name in sorted(self.registry.machines)
                )
                return MachinesReply(rid, entries)
            case GetModule(id=rid, identity=identity):
                module = self.store.module(identity)
                if module is None:
                    return Error(rid, ErrorCode.UNKNOWN_MODULE, f"no module {identity}")
                return ModuleReply(rid, module)
        raise NodeError(ErrorCode.BAD_REQUEST, f"unexpected {type(event).__name__}")

    # --- group commit -----------------------------------------------------------------------

    def queue(self, peer: _Peer, data: bytes) -> None:
        """Hold ``data`` for ``peer`` until the next commit."""
        self._waiting.setdefault(peer, []).append(data)

    def commit(self) -> None:
        """Make everything applied durable, then release the replies that acknowledge it.

        Called after each chunk a connection delivers: a chunk holds every request the client
        pipelined into it, so under load one commit covers many inputs."""
        if not self._waiting:
            return
        self.store.commit(self.registry.machines)
        self.trace.flush()
        waiting, self._waiting = self._waiting, {}
        for peer, chunks in waiting.items():
            peer.write(b"".join(chunks))

    # --- lifecycle --------------------------------------------------------------------------

    async def serve(self, host: str, port: int) -> None:
        """Listen until :meth:`stop`; announces ``Listening on HOST:PORT`` once ready."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Peer(self), host, port)
        bound = server.sockets[0].getsockname()
        self.trace.note(f"Listening on {bound[0]}:{bound[1]}")
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopped.set)
        async with server:
            await self.stopped.wait()
        self.commit()
        self.store.checkpoint(self.registry.machines)
        self.trace.note("Stopped; every machine snapshotted")


class _Peer(asyncio.Protocol):
    """One client connection."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.conn = ServerConnection()
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # TCP: a stream transport
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        loop = asyncio.get_running_loop()
        timeout = self.node.config.handshake_timeout
        self._timer = loop.call_later(timeout, self._timeout, "no hello")

    def _timeout(self, why: str) -> None:
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        idle = self.node.config.idle_timeout
        if idle:
            self._timer = asyncio.get_running_loop().call_later(idle, self._timeout, "idle")

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.conn.receive_data(data)
        self._drain()
        self.node.commit()

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")
        self._drain()
        self.node.commit()
        return None

    def _drain(self) -> None:
        node = self.node
        while not self.closing:
            try:
                event = self.conn.next_event()
            except ProtocolError:
                self._goodbye(self.conn.failure)
                return
            if event is NEED_DATA:
                return
            match event:
                case Hello():
                    welcome = Welcome(max_frame=node.config.max_frame, node=node.config.name)
                    self.write(self.conn.send(welcome))
                    self._rearm()
                case ConnectionClosed():
                    self._goodbye(None)
                    return
                case Send() | Upgrade() | Status() | Machines() | GetModule():
                    if self._timer is not None and node.config.idle_timeout:
                        self._rearm()
                    reply = node.handle(event)
                    try:
                        data = self.conn.send(reply)
                    except FrameTooLarge as e:
                        data = self.conn.send(Error(event.id, ErrorCode.TOO_LARGE, str(e)))
                    node.queue(self, data)

    def _goodbye(self, goodbye: Goodbye | None) -> None:
        """Close once the replies already queued are written: they acknowledge applied requests
        (the caller commits right after, and ``close`` lets buffered writes drain first)."""
        self.closing = True
        if goodbye is not None:
            self.node.queue(self, self.conn.send(goodbye))
        asyncio.get_running_loop().call_soon(self._close)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None
