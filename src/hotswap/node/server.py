"""The node's network shell: asyncio around the pure registry, the store and the protocol.

One event loop owns everything, so requests are applied one at a time in arrival order: an
upgrade happens between two inputs by construction, and inputs that arrive while it is checked
wait in their sockets' buffers. Replies are held until the store has committed what they
acknowledge (group commit): the loop applies every request it has read, commits once, then
writes all the replies, in request order per connection.

Back-pressure: a connection whose unsent replies exceed ``HIGH_WATER`` bytes is not read from
until they drain, so a client that never reads its replies costs a bounded amount of memory.

If the store refuses a commit, what was applied since the last commit is not durable: the node
sends none of those replies, closes every connection and stops with the error (fail-stop); the
next start recovers the durable state.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import cast

from hotswap.cam.values import encode_type, encode_value, value_encoder
from hotswap.errors import (
    HotswapError,
    InternalError,
    NodeError,
    ProtocolError,
    StoreError,
    UpgradeRejected,
)
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
    Release,
    Released,
    ReleasedEntry,
    Send,
    SendChecked,
    Status,
    StatusReply,
    Upgrade,
    Upgraded,
    Welcome,
)

#: Pause reading from a client whose unread replies exceed this many bytes.
HIGH_WATER = 4 * 1024 * 1024
#: On shutdown, how long to wait for clients to take the replies already written.
SHUTDOWN_GRACE = 5.0


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
        self.peers: set[_Peer] = set()
        self.stopped = asyncio.Event()
        #: The store error that stopped the node, if one did.
        self.failure: HotswapError | None = None

    # --- requests ---------------------------------------------------------------------------

    def handle(self, event: Message) -> Message:
        """Apply one request; the reply (possibly an Error) is what the client will receive."""
        match event:
            case Send(id=rid, machine=name, input=data):
                return self._step(rid, name, data, None)
            case SendChecked(id=rid, machine=name, code=code, input=data):
                return self._step(rid, name, data, code)
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
            case Release(id=rid, items=items):
                wanted = [(i.machine, i.expected, i.module, i.migration) for i in items]
                try:
                    done = self.registry.release(wanted)
                except UpgradeRejected as e:
                    self.trace.rejected(e.code, e.reason)
                    return Error(rid, ErrorCode(e.code), str(e))
                for upgraded in done:
                    self.store.log_upgrade(self.registry.get(upgraded.machine), upgraded)
                self.trace.released([(u.machine, u.notes) for u in done])
                swapped = tuple(ReleasedEntry(u.machine, u.old, u.new.identity) for u in done)
                return Released(rid, swapped)
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

    def _step(self, rid: int, name: str, data: bytes, code: str | None) -> Message:
        """One input; with ``code``, only if that is the code the machine runs."""
        try:
            stepped = self.registry.step(name, data, code)
        except NodeError as e:
            return Error(rid, ErrorCode(e.code), str(e))
        machine = self.registry.machines[name]
        self.store.log_input(machine, data, stepped.identity)
        sig = machine.code.machine
        assert sig is not None
        self.trace.step(machine.code, stepped.output, stepped.state)
        return Output(
            rid, value_encoder(sig.output)(stepped.output), value_encoder(sig.state)(stepped.state)
        )

    # --- group commit -----------------------------------------------------------------------

    def queue(self, peer: _Peer, data: bytes) -> None:
        """Hold ``data`` for ``peer`` until the next commit."""
        self._waiting.setdefault(peer, []).append(data)

    def commit(self) -> None:
        """Make everything applied durable, then release the replies that acknowledge it.

        Called after each chunk a connection delivers: a chunk holds every request the client
        pipelined into it, so under load one commit covers many inputs."""
        if not self._waiting or self.failure is not None:
            return
        try:
            self.store.commit(self.registry.machines)
        except StoreError as e:
            self.fail(e)
            return
        self.trace.flush()
        waiting, self._waiting = self._waiting, {}
        for peer, chunks in waiting.items():
            peer.write(b"".join(chunks))

    def fail(self, error: HotswapError) -> None:
        """The store refused a write, or handling a request failed unexpectedly: the machines
        in memory may be ahead of the store, so nothing they did since the last commit may be
        acknowledged. Drop the replies not yet sent, stop reading from every client and stop;
        the next start recovers the durable state."""
        if self.failure is None:
            self.failure = error
            self.trace.note(f"Stopping, acknowledging nothing more: {error}")
        self._waiting.clear()
        for peer in list(self.peers):
            peer.finish()
        self.stopped.set()

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
        await self._finish_peers()
        if self.failure is not None:
            raise self.failure
        self.store.checkpoint(self.registry.machines)
        self.trace.note("Stopped; every machine snapshotted")

    async def _finish_peers(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop reading requests, then let every client take the replies already written
        (they acknowledge committed work) before the connections close."""
        loop = asyncio.get_running_loop()
        for peer in list(self.peers):
            peer.finish()
        deadline = loop.time() + grace
        while any(p.unsent() for p in self.peers) and loop.time() < deadline:
            await asyncio.sleep(0.005)
        for peer in list(self.peers):
            peer.close_now()
        await asyncio.sleep(0)  # let the transports call connection_lost


class _Peer(asyncio.Protocol):
    """One client connection."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.conn = ServerConnection()
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self._paused = False
        self._finished = False  # our side is ended: nothing more may be written
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # TCP: a stream transport
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self.node.peers.add(self)
        if self.node.stopped.is_set():
            self.finish()
            return
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
        if self.transport is not None and not self._finished and not self.transport.is_closing():
            self.transport.write(data)

    # Back-pressure: the transport calls these as its buffer of unsent replies crosses the
    # high and low water marks. Reading stops, so requests wait in the kernel's buffers and,
    # once those fill, in the client's.

    def pause_writing(self) -> None:
        if self.transport is not None and not self.closing and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self._paused:
            self._paused = False
            self.transport.resume_reading()

    def unsent(self) -> bool:
        """Whether replies written to this connection still wait in its buffer."""
        transport = self.transport
        return transport is not None and transport.get_write_buffer_size() > 0

    def finish(self) -> None:
        """Read no more requests; send what is written, then end our side (half-close). Input
        that still arrives is read and dropped, so that closing does not reset the connection
        and destroy replies in flight."""
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        if transport is None or transport.is_closing() or self._finished:
            return
        self._finished = True
        if self._paused:
            self._paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def close_now(self) -> None:
        if self.transport is not None:
            if self.unsent():
                self.transport.abort()  # the client took nothing for the whole grace period
            else:
                self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.node.failure is not None:
            return
        self.conn.receive_data(data)
        self._drain()
        self.node.commit()

    def eof_received(self) -> bool | None:
        if self.closing:
            return None
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
                case (
                    Send()
                    | SendChecked()
                    | Upgrade()
                    | Release()
                    | Status()
                    | Machines()
                    | GetModule()
                ):
                    if self._timer is not None and node.config.idle_timeout:
                        self._rearm()
                    try:
                        reply = node.handle(event)
                    except StoreError as e:  # logging an upgrade failed: stop, reply nothing
                        node.fail(e)
                        return
                    except Exception as e:  # noqa: BLE001 - a bug: state may be half changed; stop
                        traceback.print_exc(file=sys.stderr)
                        node.fail(InternalError(f"handling {type(event).__name__}: {e!r}"))
                        return
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
        self.node.peers.discard(self)
