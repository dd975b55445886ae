"""The node's network shell: asyncio around the sans-IO service (``service.py``).

This module only moves bytes: it accepts connections, reads, feeds each chunk to the
connection's :class:`Conversation`, commits, writes, and applies back-pressure and timeouts.
What a request does is decided in ``service.py``.

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
import concurrent.futures
import contextlib
import functools
import select
import signal
import socket
import ssl
import time
from collections.abc import Callable
from typing import cast

from hotswap.address import socket_address
from hotswap.auth import CredentialProblem
from hotswap.cam.loaded import preload, release
from hotswap.errors import HotswapError, StoreError
from hotswap.node.service import Conversation, Fed, Service
from hotswap.node.store import SETTLE_AFTER
from hotswap.protocol.codec import encode_message
from hotswap.protocol.events import ErrorCode, Goodbye, Request
from hotswap.protocol.framing import frame
from hotswap.tls import peer_name

#: Pause reading from a client whose unread replies exceed this many bytes; a batch of its
#: requests stops when its replies reach it, the rest waiting until those are sent.
HIGH_WATER = 4 * 1024 * 1024
#: The longest one connection's batch of requests runs before the others get their turn.
TURN = 0.01
#: How often the node looks for trial upgrades whose time is up, in seconds.
TICK = 1.0
#: On shutdown, how long to wait for clients to take the replies already written.
SHUTDOWN_GRACE = 5.0
#: How often the sweeper migrates its share of instances (``--sweep-rate`` a second).
SWEEP_TICK = 0.05
#: ``--spin``'s default, in seconds: after answering its only connection, the node polls that
#: socket for this long before its event loop sleeps in ``epoll``. A lone client's next
#: request comes 50 to 100 us after its reply; a process woken from sleep for it costs this
#: kind of virtual machine more than the node's whole work for a small input (measured: a
#: lone client's round trips went from 8,500/s to 14,400/s). A node serving several
#: connections never polls (it has other work), nor does an idle one (nothing to answer).
SPIN = 0.0002
#: The longest the sweeper runs before the loop serves clients again, whatever the size of
#: the instances it migrates (it goes on at the loop's next turn): an input waits at most
#: about this long for the sweeper.
SWEEP_SLICE = 0.0005


class Node:
    """Serves one :class:`Service` over TCP, or over TLS with ``tls`` (a server context)."""

    def __init__(self, service: Service, tls: ssl.SSLContext | None = None) -> None:
        self.service = service
        self.tls = tls
        self._waiting: dict[_Peer, list[bytes]] = {}
        self._commit_due = False  # a commit is scheduled for the end of this turn
        self._settle_due = False  # a settle of the input log is scheduled (:meth:`_settle`)
        #: The listening sockets' descriptors: polling a lone connection (``--spin``) stops
        #: when a new connection waits to be accepted too.
        self.listening: list[int] = []
        #: The loop serving, once :meth:`serve` runs (asked once: in this Python, each
        #: ``asyncio.get_running_loop()`` makes a system call, to tell a forked process).
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sweep_owed = 0  # instances the sweeper is still to look at (``_sweep``)
        self._sweeping = False  # a slice or its commit is scheduled
        self.peers: set[_Peer] = set()
        #: TLS handshakes in progress (``_TlsServer``): each holds a connection of the limit.
        self.handshakes: set[asyncio.Task[None]] = set()
        #: Connections not past their hello yet (handshakes included), oldest first, each
        #: with what closes it: at the limit, the oldest makes room for a new connection.
        self.unwelcomed: dict[object, Callable[[], None]] = {}
        #: Bytes of unfinished frames held for all peers (each peer's share in ``held``).
        self.buffered = 0
        self.stopped = asyncio.Event()
        #: The store error that stopped the node, if one did.
        self.failure: HotswapError | None = None

    def running(self) -> asyncio.AbstractEventLoop:
        """The loop serving: :attr:`loop`, or asyncio's running loop before :meth:`serve`
        set it."""
        return self.loop or asyncio.get_running_loop()

    # --- admission -----------------------------------------------------------------------

    def admit(self, peer: str, connections: int) -> bool:
        """Whether a new connection from ``peer`` may be served, the node serving
        ``connections`` already: under --max-connections, or at it when the oldest connection
        that has not said its hello yet (nor finished its TLS handshake) is closed to make
        room. So connections that never authenticate cannot keep clients out: to hold every
        place, they would have to be opened faster than a client says its hello. A node whose
        connections all said hello refuses the new one."""
        limit = self.service.config.max_connections
        if connections < limit:
            return True
        service = self.service
        if self.unwelcomed:
            oldest = next(iter(self.unwelcomed))
            close = self.unwelcomed.pop(oldest)
            close()
            if service.may_trace_refusal(before_hello=True):
                service.trace.note(
                    f"Connection closed before its hello, to make room for {peer}: the node "
                    f"serves {limit} connections (--max-connections), and it was the oldest "
                    "not past its hello"
                )
            return True
        if service.may_trace_refusal(before_hello=True):
            service.trace.note(
                f"Connection from {peer} refused: the node serves {limit} connections, its "
                "limit (--max-connections), every one past its hello"
            )
        return False

    # --- group commit -----------------------------------------------------------------------

    def queue(self, peer: _Peer, frames: list[bytes]) -> None:
        """Hold ``frames`` for ``peer`` until the next commit."""
        if frames:
            self._waiting.setdefault(peer, []).extend(frames)

    def commit_soon(self) -> None:
        """Commit once the loop has handed every connection that has data its chunk: all the
        chunks read in one turn of the loop share one commit (16 clients sending one input at
        a time each make one commit a turn, not 16), and a lone client waits one turn more."""
        if not self._commit_due:
            self._commit_due = True
            self.running().call_soon(self._commit_now)

    def _commit_now(self) -> None:
        self._commit_due = False
        self.commit()

    def commit(self) -> None:
        """Make everything applied durable, then release the replies that acknowledge it.

        Called once a turn of the loop after the chunks connections delivered in it
        (:meth:`commit_soon`): a chunk holds every request the client pipelined into it, so
        under load one commit covers many inputs."""
        if not self._waiting or self.failure is not None or not self._durable():
            return
        waiting, self._waiting = self._waiting, {}
        for peer, chunks in waiting.items():
            try:
                peer.write(b"".join(chunks))
            except Exception as e:  # noqa: BLE001 - one peer's transport must not cost the others
                self.service.trace.note(f"Connection dropped: writing its replies failed: {e!r}")
                peer.close_now()
                continue
            if peer.closing:
                peer.close_soon()
        spin = self.service.config.spin
        if spin and len(waiting) == 1 and len(self.peers) == 1 and not self.handshakes:
            peer = next(iter(waiting))
            if not peer.unsent():  # replies the kernel did not take: the loop has work
                peer.poll(spin)

    def _durable(self) -> bool:
        """Commit what the service did; if the store refuses, stop the node (False). A commit
        that left inputs in the input log has them written into SQLite soon after
        (:meth:`_settle`)."""
        try:
            self.service.commit()
        except StoreError as e:
            self.fail(e)
            return False
        if not self._settle_due and self.service.store.logged:
            self._settle_due = True
            self.running().call_later(SETTLE_AFTER, self._settle)
        return True

    def _settle(self) -> None:
        """Write the inputs the input log holds into SQLite (``Store.settle``): one
        transaction for all the inputs committed in the last :data:`SETTLE_AFTER` seconds."""
        self._settle_due = False
        if self.failure is not None:
            return
        try:
            self.service.store.settle()
        except StoreError as e:
            self.fail(e)

    def _tick(self) -> None:
        """Once a second: end the trials whose time is up (durably), and write the snapshots
        encoded in the background, even with no traffic."""
        if self.failure is not None or self.stopped.is_set():
            return
        self._refresh_credentials()
        try:
            if self.service.tick(time.time()) or self.service.store.snapshot_ready:
                self.service.commit()
        except StoreError as e:
            self.fail(e)
            return
        asyncio.get_running_loop().call_later(TICK, self._tick)

    def _refresh_credentials(self) -> None:
        """Take in what ``hotswap token`` changed in the credentials file (within a tick)."""
        credentials = self.service.config.credentials
        if credentials is None:
            return
        try:
            changed = credentials.refresh()
        except CredentialProblem as e:
            self.service.trace.note(f"Kept the credentials in use: {e}")
            return
        if changed:
            self.service.trace.note(
                f"Credentials reloaded: {len(credentials)} principal(s); connections "
                "authenticate again before their next request"
            )

    def _sweep(self) -> None:
        """Every SWEEP_TICK: owe the sweeper ``--sweep-rate`` x SWEEP_TICK more instances to
        migrate to the running code (at most two ticks' worth: a sweeper behind does not
        catch up in a burst), and start paying if it is not already (:meth:`_sweep_slice`)."""
        if self.failure is not None or self.stopped.is_set():
            return
        rate = self.service.config.sweep_rate
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        loop.call_later(SWEEP_TICK, self._sweep)
        share = max(1, round(rate * SWEEP_TICK))
        self._sweep_owed = min(self._sweep_owed + share, 2 * share)
        if not self._sweeping:
            self._sweeping = True
            self._sweep_slice()

    def _sweep_slice(self) -> None:
        """Migrate what the sweeper owes for at most SWEEP_SLICE, then commit that at the
        loop's next turn and go on at the one after if more is owed: clients are served
        between a slice and its commit and between two slices, so a tick's migrations (or one
        large instance's) never hold the loop for longer than a slice or a commit."""
        if self.failure is not None or self.stopped.is_set():
            self._sweeping = False
            return
        try:
            looked = self.service.sweep(self._sweep_owed, SWEEP_SLICE)
        except StoreError as e:
            self.fail(e)
            return
        self._sweep_owed = self._sweep_owed - looked if looked else 0  # 0: nothing left to try
        if looked:
            asyncio.get_running_loop().call_soon(self._swept)
        else:
            self._sweeping = False

    def _swept(self) -> None:
        """Commit a slice of the sweeper's (:meth:`_sweep_slice`), then the next slice."""
        if self.failure is not None or self.stopped.is_set():
            self._sweeping = False
            return
        if not self._durable():
            return
        if self._sweep_owed > 0:
            asyncio.get_running_loop().call_soon(self._sweep_slice)
        else:
            self._sweeping = False

    def fail(self, error: HotswapError) -> None:
        """The store refused a write, or handling a request failed unexpectedly: the machines
        in memory may be ahead of the store, so nothing they did since the last commit may be
        acknowledged. Drop the replies not yet sent, stop reading from every client and stop;
        the next start recovers the durable state."""
        if self.failure is None:
            self.failure = error
            self.service.trace.note(f"Stopping, acknowledging nothing more: {error}")
        self._waiting.clear()
        for peer in list(self.peers):
            peer.finish()
        self.stopped.set()

    # --- lifecycle --------------------------------------------------------------------------

    async def serve(
        self, host: str | None = None, port: int = 0, *, sock: socket.socket | None = None
    ) -> None:
        """Listen (on ``host:port``, or on a bound ``sock``) until stopped; announces
        ``Listening on HOST:PORT`` once ready."""
        loop = self.loop = asyncio.get_running_loop()
        server: asyncio.AbstractServer | _TlsServer
        if self.tls is None:
            if sock is not None:
                server = await loop.create_server(lambda: _Peer(self), sock=sock)
            else:
                server = await loop.create_server(lambda: _Peer(self), host, port)
            bound = server.sockets[0].getsockname()
            self.listening = [s.fileno() for s in server.sockets]
            self.service.trace.note(f"Listening on {socket_address(bound)}")
        else:
            # TLS connections are accepted here, not by a server: a handshake in progress
            # then counts against --max-connections, and one that fails is traced
            if sock is None:
                sock = socket.create_server((host or "127.0.0.1", port), backlog=1024)
            server = _TlsServer(self, sock, self.tls)
            self.listening = [sock.fileno()]
            tls = " (TLS, client certificates required)" if _mutual(self.tls) else " (TLS)"
            self.service.trace.note(f"Listening on {socket_address(sock.getsockname())}{tls}")
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopped.set)
        ticker = loop.call_later(TICK, self._tick)
        sweeper = loop.call_later(SWEEP_TICK, self._sweep)
        async with server:
            await self.stopped.wait()
        ticker.cancel()
        sweeper.cancel()
        self.commit()
        await self._finish_peers()
        if self.failure is not None:
            raise self.failure
        self.service.checkpoint()
        trials = [name for name, m in self.service.registry.machines.items() if m.trial]
        if trials:  # their snapshots would lose the state a revert needs: the log keeps it
            self.service.trace.note(
                f"Stopped; snapshotted every machine but {', '.join(trials)}, on trial"
            )
        else:
            self.service.trace.note("Stopped; every machine snapshotted")

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


def _mutual(context: ssl.SSLContext) -> bool:
    return context.verify_mode == ssl.CERT_REQUIRED


#: The worker thread that loads held requests' modules, one request at a time: loading a module
#: at the limits takes seconds and a few hundred megabytes at its peak, so requests from many
#: connections at once wait their turn rather than multiply that.
_LOADER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hotswap-load")


def _load_all(modules: list[bytes], fuel: int) -> None:
    """Decode, verify and compile modules for the request held, on a worker thread; errors
    are left for the request's own checks to report (its reply says what is wrong with which
    module). Nothing is cached yet: the modules of a refused request never are."""
    for data in modules:
        preload(data, fuel)


def _prepare_held(modules: list[bytes], fuel: int, service: Service, held: Request | None) -> None:
    """The worker thread's part of a held request: load its modules, work out what its checks
    will ask of their names (``Service.rehearse``), and write those of its modules the store
    keeps in parts (``Service.stage``). A change without the signature the node requires is
    not loaded at all (its digests are worked out here, not on the event loop): the loop
    refuses it when it answers it."""
    if held is not None and service.signature(held)[0] is not None:
        return
    _load_all(modules, fuel)
    if held is not None:
        service.rehearse(held)
        service.stage(held, modules)


class _TlsServer:
    """Accepts connections on ``sock`` and makes each a TLS connection of a :class:`_Peer`:
    a handshake holds one of the node's --max-connections from the accept on, ends within
    the handshake timeout, and one that fails is traced with the peer and why (within the
    budget for refusals: a flood of failed handshakes cannot flood the trace)."""

    def __init__(self, node: Node, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.node = node
        self.sock = sock
        self.context = context
        self._accepting: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _TlsServer:
        self.sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._accepting is not None
        self._accepting.cancel()
        for task in list(self.node.handshakes):
            task.cancel()
        await asyncio.gather(self._accepting, *self.node.handshakes, return_exceptions=True)
        self.sock.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        node = self.node
        while True:
            try:
                conn, peer = await loop.sock_accept(self.sock)
            except OSError as e:  # out of file descriptors, say: try again soon
                if node.service.may_trace_refusal(before_hello=True):
                    node.service.trace.note(f"Accepting a connection failed: {e}")
                await asyncio.sleep(0.1)
                continue
            if not node.admit(socket_address(peer), len(node.peers) + len(node.handshakes)):
                conn.close()  # before any TLS: a goodbye would read as garbage
                continue
            task = loop.create_task(self._handshake(conn, socket_address(peer)))
            node.handshakes.add(task)
            node.unwelcomed[task] = functools.partial(_cancel, task)
            task.add_done_callback(self._handshake_over)

    def _handshake_over(self, task: asyncio.Task[None]) -> None:
        self.node.handshakes.discard(task)
        self.node.unwelcomed.pop(task, None)

    async def _handshake(self, conn: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.node.service.config.handshake_timeout
        began = loop.time()
        try:
            await loop.connect_accepted_socket(
                lambda: _Peer(self.node), conn, ssl=self.context, ssl_handshake_timeout=timeout
            )
        except asyncio.CancelledError:  # closed to make room (Node.admit), or stopping
            conn.close()
            raise
        except (TimeoutError, OSError) as e:
            # ssl.SSLError is an OSError: a refused certificate, garbage, a reset; a timeout
            # is a ConnectionAbortedError on asyncio's loop
            conn.close()
            service = self.node.service
            if not self.node.stopped.is_set() and service.may_trace_refusal(before_hello=True):
                why = _handshake_error(None if loop.time() - began >= timeout else e)
                service.trace.note(f"TLS handshake from {peer} failed: {why}")


def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()


#: What a TLS handshake's failure means, by OpenSSL's reason, for the trace.
_HANDSHAKE_REASONS = {
    "WRONG_VERSION_NUMBER": "not a TLS client (plain TCP, or garbage)",
    "HTTP_REQUEST": "not a TLS client (plain HTTP)",
    "UNKNOWN_PROTOCOL": "not a TLS client",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client gave no certificate (--tls-ca asks for one)",
    "TLSV1_ALERT_UNKNOWN_CA": "the client refused the node's certificate (unknown authority)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the client refused the node's certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the client refused the node's certificate",
}


def _handshake_error(error: BaseException | None) -> str:
    """Why a TLS handshake failed, in words."""
    if error is None or isinstance(error, TimeoutError):
        return "no handshake within the handshake timeout (--handshake-timeout)"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"its certificate was refused: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        reason = str(error.reason or error)
        return _HANDSHAKE_REASONS.get(reason, reason.lower().replace("_", " "))
    return f"the connection ended during the handshake ({error.__class__.__name__})"


class _Peer(asyncio.Protocol):
    """One client connection: a transport and its :class:`Conversation`."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.conversation = Conversation(node.service, prepare=True, budget=HIGH_WATER, turn=TURN)
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self._paused = False
        self._preparing = False  # an upgrade's modules are loading: nothing more is read
        self._more = False  # requests wait in the conversation until the replies are sent
        self._proceeding = False  # a call of _proceed is scheduled
        self._finished = False  # our side is ended: nothing more may be written
        self._timer: asyncio.TimerHandle | None = None
        self._active = 0.0  # when the idle clock last started (the loop's time)
        #: This peer's share of the node's buffered bytes (``Node.buffered``).
        self.held = 0
        #: ``poll`` on the connection's socket, for :meth:`poll` (made at its first call)
        self._poller: select.poll | None = None
        #: The client's address, ``host:port``, for the trace.
        self.peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # TCP: a stream transport
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self.peer = socket_address(self.transport.get_extra_info("peername"))
        self.conversation.peer = self.peer
        node = self.node
        # over TLS, admitted before its handshake (``_TlsServer``)
        if node.tls is None and not node.admit(self.peer, len(node.peers)):
            limit = node.service.config.max_connections
            message = f"the node serves {limit} connections, its limit (--max-connections)"
            goodbye = Goodbye(ErrorCode.OVERLOADED, message)  # before any hello: as for garbage
            self.transport.write(frame(encode_message(goodbye, 1)))
            self.closing = True
            self.transport.close()
            return
        node.peers.add(self)
        node.unwelcomed[self] = self._make_room
        # over mutual TLS the certificate is verified before this is called: who it names
        self.conversation.certificate = peer_name(self.transport.get_extra_info("peercert"))
        if self.node.stopped.is_set():
            self.finish()
            return
        timeout = self.node.service.config.handshake_timeout
        self._timer = asyncio.get_running_loop().call_later(timeout, self._timeout)

    def _make_room(self) -> None:
        """Closed by :meth:`Node.admit` before its hello, for a newer connection."""
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def _timeout(self) -> None:
        """No hello in time, or idle too long: close."""
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    def _rearm(self, fresh: bool = False) -> None:
        """Restart the idle clock (``--idle-timeout``). A timer is armed only if none is: the
        one there finds, when it fires, that the connection was active since
        (:meth:`_idle`), and sets itself again for the rest of the time. A request costs a
        clock read then, not a timer cancelled and made again. ``fresh``: the timer there (the
        hello's deadline) is cancelled first."""
        if fresh and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        idle = self.node.service.config.idle_timeout
        if not idle:
            return
        loop = asyncio.get_running_loop()
        self._active = loop.time()
        if self._timer is None:
            self._timer = loop.call_later(idle, self._idle)

    def _idle(self) -> None:
        self._timer = None
        idle = self.node.service.config.idle_timeout
        assert idle
        loop = asyncio.get_running_loop()
        left = self._active + idle - loop.time()
        if left > 0:
            self._timer = loop.call_later(left, self._idle)
        else:
            self._timeout()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._finished and not self.transport.is_closing():
            self.transport.write(data)

    def poll(self, seconds: float) -> None:
        """Hold the loop until the client's next bytes are readable, or a new connection
        waits, for ``seconds`` at most (``--spin``): the loop then finds them without
        sleeping."""
        poller = self._poller
        if poller is None:
            sock = None if self.transport is None else self.transport.get_extra_info("socket")
            if sock is None or self.closing or not hasattr(select, "poll"):  # (Windows)
                return
            poller = self._poller = select.poll()
            for fd in (sock.fileno(), *self.node.listening):
                poller.register(fd, select.POLLIN)
        until = time.perf_counter() + seconds
        ready = poller.poll
        while not ready(0) and time.perf_counter() < until:
            pass

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
            if self._more:  # the requests already received come first
                self._proceed_soon()
            elif not self._preparing:  # still loading an upgrade's modules: keep waiting
                self.transport.resume_reading()

    def _proceed_soon(self) -> None:
        """Answer the requests left in the conversation on the loop's next turn: other
        connections are served in between."""
        if not self._proceeding:
            self._proceeding = True
            asyncio.get_running_loop().call_soon(self._proceed)

    def _proceed(self) -> None:
        self._proceeding = False
        if not self._more or self._paused or self._preparing or self.transport is None:
            return  # resume_writing or _prepared calls again
        self._more = False
        if self.closing or self.node.failure is not None:
            return
        self._fed(self.conversation.proceed())
        self._account(self.conversation.conn.buffered)
        if not (self._more or self.closing or self._paused or self._preparing):
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

    def close_soon(self) -> None:
        """Close once the replies already written are sent (``close`` lets them drain)."""
        asyncio.get_running_loop().call_soon(self._close)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.node.failure is not None:
            return
        self._fed(self.conversation.receive(data))  # buffered while an upgrade is held
        self._account(self.conversation.conn.buffered)

    def _account(self, held: int) -> None:
        """Count this peer's unfinished bytes in the node's total; past the node's budget,
        this peer (whose bytes just passed it) is told goodbye ``overloaded`` and closed."""
        node = self.node
        node.buffered += held - self.held
        self.held = held
        limit = node.service.config.max_buffered
        if node.buffered > limit and not self.closing and self.transport is not None:
            message = (
                f"the node holds {node.buffered} bytes of unfinished frames from its "
                f"connections, past its limit of {limit} (--max-buffered): try again later"
            )
            self.write(frame(encode_message(Goodbye(ErrorCode.OVERLOADED, message))))
            self.closing = True
            self.transport.close()
            self._account(0)

    def eof_received(self) -> bool | None:
        if not self.closing:
            self._fed(self.conversation.receive(b""))
        # Requests still to answer: stay open to send their replies (TLS cannot half-close).
        return True if (self._more or self._preparing) and self.node.tls is None else None

    def _fed(self, fed: Fed) -> None:
        node = self.node
        idle = node.service.config.idle_timeout
        if fed.welcomed:
            node.unwelcomed.pop(self, None)
            self._rearm(fresh=True)
        elif fed.requests and self._timer is not None and idle:
            self._active = node.running().time()
        if fed.failure is not None:
            node.fail(fed.failure)
            return
        node.queue(self, fed.replies)
        if fed.close:
            self.closing = True
            if not fed.replies:
                self.close_soon()
        node.commit_soon()
        if fed.more and not self.closing:  # stop reading until those requests are answered
            self._more = True
            if self.transport is not None and not self._paused:
                self.transport.pause_reading()
                self._proceed_soon()
        if fed.prepare:
            self._prepare(fed.prepare)

    def _prepare(self, modules: list[bytes]) -> None:
        """Load an upgrade's modules on the loader thread (after those of requests before it
        from other connections), reading nothing more from this client meanwhile (its requests
        are answered in order); other clients are served as usual. The held request is
        answered once they are loaded, and held for it (``cam.loaded.preload``)."""
        if self.transport is not None and not self._paused and not self._preparing:
            self.transport.pause_reading()
        self._preparing = True
        if self._timer is not None:  # the client waits on the node: not idle
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        service = self.node.service
        held = self.conversation.held
        done = loop.run_in_executor(
            _LOADER, _prepare_held, modules, service.registry.fuel, service, held
        )
        done.add_done_callback(lambda _: self._prepared(modules))

    def _prepared(self, modules: list[bytes]) -> None:
        self._preparing = False
        try:
            if self.node.failure is not None or self.transport is None or self.closing:
                return  # stopping, timed out or gone: the held request is never applied
            self._rearm()
            self._fed(self.conversation.resume())  # may hold the next upgrade: _preparing again
            if not (self.closing or self._paused or self._preparing or self._more):
                self.transport.resume_reading()
        finally:
            store = self.node.service.store
            running = {id(m.code.data) for m in self.node.service.registry.machines.values()}
            running |= store.in_use()  # and an upgrade's migration, which instances run next
            for data in modules:  # cached only if a machine now runs it
                release(data, keep=id(data) in running)
            if store.unstage(modules):  # parts no row references: deleted off the loop
                asyncio.get_running_loop().run_in_executor(_LOADER, store.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        self.node.unwelcomed.pop(self, None)
        self._account(0)
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None
        self.node.peers.discard(self)
