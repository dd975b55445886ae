"""The blocking client: one connection to one node, over a socket or any other transport.

"Upgrade" here is the user's :class:`hotswap.code.Upgrade`; the reply is the wire's
``Upgraded``.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast

from hotswap.address import default_address, parse_address
from hotswap.cam.loaded import LoadedModule
from hotswap.client.session import (
    DRY_RUN_INPUTS,
    DryRunOutcome,
    Flow,
    Input,
    InstancePage,
    MachineStatus,
    Session,
    expect,
)
from hotswap.client.wire import DEFAULT_TIMEOUT, FALLBACK_VERSION, Wire, older_node
from hotswap.code import Upgrade
from hotswap.errors import HotswapError, NodeError
from hotswap.protocol.events import (
    NEED_DATA,
    PROTOCOL_VERSION,
    Confirm,
    Deleted,
    Deploy,
    Deployed,
    DryRun,
    Output,
    Release,
    Released,
    Request,
    Revert,
    Send,
    SendChecked,
    StatusReply,
    TrialEnded,
    Upgraded,
    UpgradeRequest,
)
from hotswap.tls import chosen_context

T = TypeVar("T")


class Transport(Protocol):
    """A byte stream to a node: a socket, or an in-memory node's connection."""

    address: str

    def send(self, data: bytes) -> None:
        """Write all of ``data`` (:class:`OSError` if the node is gone)."""

    def recv(self) -> bytes:
        """Bytes from the node, ``b""`` once it closed; :class:`TimeoutError` if none come in
        time, :class:`OSError` if the node is gone."""

    def close(self) -> None: ...


#: How long a client polls its socket for a reply before it sleeps until one comes (seconds;
#: ``Client(spin=...)``). A reply on loopback takes 60 to 150 us; a thread that sleeps for it
#: is woken by the kernel when it comes, which on this kind of virtual machine costs more than
#: the node's whole work for a small input (measured: an echo server's round trips went from
#: 12,000/s to 40,000/s with the client polling, and the server's CPU per round trip from 32 to
#: 9 us). Polling costs this much CPU at most per request; a slower reply (an upgrade, a large
#: state) is waited for asleep after it.
SPIN = 0.0005
#: The longest ``spin`` taken, in seconds: a reply that takes longer is waited for asleep.
MAX_SPIN = 0.1
_BUFFER = 1 << 16
#: Requests whose replies are waited for asleep, never polled for: the node's work for them
#: (checks, a migration, a durable change of code) takes longer than :data:`SPIN`, and a
#: client polling meanwhile takes a core from the node and from the clients whose inputs wait
#: on it. On two cores, an upgrader that polled lengthened the longest gap in another client's
#: stream of inputs around an upgrade by about 0.4 ms.
_WAITED_ASLEEP = (UpgradeRequest, DryRun, Confirm, Revert, Release, Deploy)


def _spin(spin: object, timeout: float | None) -> float:
    """``spin`` checked (seconds, from 0 to :data:`MAX_SPIN`) and cut to ``timeout``."""
    if isinstance(spin, bool) or not isinstance(spin, int | float) or not 0 <= spin <= MAX_SPIN:
        raise ValueError(
            f"spin is the seconds a client polls for a reply before it sleeps, from 0 to "
            f"{MAX_SPIN} (the default is {SPIN}: half a millisecond), got {spin!r}"
        )
    return float(spin) if timeout is None else min(float(spin), timeout)


class SocketTransport:
    """A TCP connection with a timeout on every read; over TLS with ``tls`` (a client
    context: the node's certificate must name the host of ``address``). Without TLS the
    socket is non-blocking and a read polls for up to ``spin`` seconds before it waits."""

    def __init__(
        self,
        address: str,
        timeout: float | None,
        tls: ssl.SSLContext | None = None,
        spin: float = SPIN,
    ) -> None:
        spin = _spin(spin, timeout)
        self.address = address
        host, port = parse_address(address)
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=host.strip("[]"))
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.tls = tls is not None
        self.timeout = timeout
        #: Seconds to poll for a reply (0: wait at once, as over TLS, whose reads this does not
        #: poll). With a positive value the socket is non-blocking, and waits use ``poll``.
        # (no ``poll`` on Windows; and a read without a timeout simply blocks, as before)
        waits = hasattr(select, "poll") and timeout is not None
        self.spin = spin if spin > 0 and waits and not self.tls else 0.0
        if self.spin:
            sock.setblocking(False)
            self._readable = select.poll()
            self._readable.register(sock, select.POLLIN)
            self._writable = select.poll()
            self._writable.register(sock, select.POLLOUT)

    def send(self, data: bytes) -> None:
        if not self.spin:
            self.sock.sendall(data)
            return
        view, sock = memoryview(data), self.sock
        while view:
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:  # the socket's buffer is full: wait until it drains
                self._wait(self._writable)

    def recv(self, poll: bool = True) -> bytes:
        """:meth:`Transport.recv`; with ``poll=False`` waited for asleep at once (a reply the
        node takes long over, an upgrade's: polling for it would take a core from the node
        and its other clients for no gain)."""
        sock = self.sock
        if not self.spin:
            return sock.recv(_BUFFER)
        # a thread of its own: polling takes from no other
        if poll and threading.active_count() == 1:
            until = time.perf_counter() + self.spin
            while time.perf_counter() < until:
                try:
                    return sock.recv(_BUFFER)
                except BlockingIOError:
                    pass
        while True:
            self._wait(self._readable)
            try:
                return sock.recv(_BUFFER)
            except BlockingIOError:  # woken with nothing to read after all: wait again
                continue

    def _wait(self, poller: select.poll) -> None:
        """Sleep until the socket is ready, or :class:`TimeoutError` after ``timeout``."""
        if not poller.poll(None if self.timeout is None else self.timeout * 1000):
            raise TimeoutError("timed out")

    def close(self) -> None:
        self.sock.close()


class Client:
    """A blocking connection to one node: ``connect(address)``, or ``Client(transport=...)``
    for another transport (an in-memory node's ``connection()``).

    Outputs and states come back as instances of the user's classes: those of ``machines``
    (DSL machines, as :meth:`Session.remember` takes) and of the modules that define the values
    sent; a record with no such class comes back as :class:`hotswap.names.schema.Record`, with a
    :class:`hotswap.client.ClassesUnknownWarning`.

    One thread at a time: a request and its reply are one exchange on the connection. For many
    concurrent callers, give each thread a ``Client`` of its own, or share one
    :class:`hotswap.client.AsyncClient` among tasks (it pipelines their requests).

    Over plain TCP, a reply is polled for ``spin`` seconds (:data:`SPIN`, half a millisecond;
    at most :data:`MAX_SPIN` and ``timeout``; the node's ``--spin`` is in microseconds) before
    the thread sleeps for it, except the reply to a change of code (an upgrade, a rollback, a
    dry run, a trial's end, a release, a deploy), which takes the node longer and is waited
    for asleep at once: most replies come within that, and a thread woken from
    sleep costs the machine more than the node's work for a small input. Only a process of one
    thread polls: a thread that polls holds a core and, between its reads, the interpreter's
    lock, which other threads need (16 threads with a client each, on two cores, made half the
    round trips polling that they make asleep). ``spin=0`` sleeps at once (where CPU matters
    more than latency)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: Transport | None = None,
        machines: Iterable[object] = (),
        token: str | None = None,
        tls: ssl.SSLContext | bool | None = None,
        spin: float = SPIN,
    ) -> None:
        _spin(spin, timeout)  # a bad value is refused before anything connects
        machines = tuple(machines)
        opened = transport is None
        context = chosen_context(tls) if opened else None
        version = PROTOCOL_VERSION
        while True:
            if transport is None:
                address = address or default_address()
                wire = Wire(address, token)
                try:
                    transport = SocketTransport(address, timeout, context, spin)
                except OSError as e:
                    raise wire.cannot_reach(e, tls=context is not None) from None
            else:
                wire = Wire(transport.address, token)
            wire.tls = getattr(transport, "tls", False)
            self.wire = wire
            self.transport = transport
            self.address = wire.address
            try:
                wire.session.remember(*machines)
                self._write(wire.hello(version))
                self.node_name = wire.welcome(self._next()).node
                return
            except NodeError as e:
                transport.close()
                if not (opened and older_node(e, version)):
                    raise
                version, transport = FALLBACK_VERSION, None  # a node of the previous release
            except BaseException:
                transport.close()
                raise

    @property
    def session(self) -> Session:
        """The client-side state of this connection: module cache, conversions (the classes
        values come back as: ``session.remember(*machines)`` adds some), request ids."""
        return self.wire.session

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _next(self, poll: bool = True) -> object:
        while True:
            event = self.wire.next_event()
            if event is not NEED_DATA:
                return event
            self._receive(poll)

    def _receive(self, poll: bool = True) -> None:
        try:
            transport = self.transport
            # only SocketTransport's own recv takes ``poll``: a transport of the caller's (a
            # subclass's recv included) is called as the Transport protocol says
            if poll or type(transport).recv is not SocketTransport.recv:
                data = transport.recv()
            else:
                data = cast(SocketTransport, transport).recv(poll=False)
        except TimeoutError:
            raise self.wire.timed_out() from None
        except OSError as e:
            raise self.wire.lost(e) from None
        self.wire.receive(data)

    def _write(self, data: bytes) -> None:
        try:
            self.transport.send(data)
        except OSError as e:
            raise self.wire.lost(e) from None

    def _exchange(self, events: Sequence[Request]) -> list[object]:
        try:
            data = self.wire.encode(events)
        except HotswapError:
            if self.wire.broken is not None:  # half a batch was taken: nothing may follow
                self.transport.close()
            raise
        try:
            self._write(data)
            return [self._next(not isinstance(event, _WAITED_ASLEEP)) for event in events]
        except BaseException as e:  # no reply: a late one must never answer a later request
            self.wire.unanswered(e)
            self.transport.close()
            raise

    def request(self, event: Request) -> object:
        """Send one request and return its reply event (an Error reply is returned, not raised)."""
        return self._exchange((event,))[0]

    def pipeline(self, events: Sequence[Request]) -> list[object]:
        """Send many requests at once, then read all their replies, in order."""
        return self._exchange(events)

    def _run(self, flow: Flow[T]) -> T:
        """Drive a flow: send each request it yields, hand it the reply."""
        try:
            event = next(flow)
            while True:
                event = flow.send(self.request(event))
        except StopIteration as done:
            return cast(T, done.value)

    # --- the API ----------------------------------------------------------------------------

    def send_raw(
        self,
        machine: str,
        data: bytes,
        code: str | None = None,
        *,
        state: bool = True,
        key: str | None = None,
    ) -> Output:
        """Send canonical input bytes; the reply carries output and state bytes (the state
        empty with ``state=False``: then the node does not encode it). With ``code`` (the
        identity the bytes were encoded for) the node refuses them if other code runs
        (``wrong_version``), rather than read them at a type they were not written for. With
        ``key``, to that keyed instance (its state in the reply, on the running code)."""
        rid = self.wire.session.request_id()
        event = (
            Send(rid, machine, data, state, key)
            if code is None
            else SendChecked(rid, machine, code, data, state, key)
        )
        return expect(self.request(event), Output)

    def send(self, machine: str, value: Any, *, key: str | None = None) -> Any:
        """Send one input (a Python value); returns the output as a Python value. With
        ``key``, to that keyed instance of the machine (made from ``init`` by its first input,
        migrated to the running code when it last ran older code); without, to the machine's
        default instance.

        The input is encoded for the code this client last saw running; if the machine has
        been upgraded since, the node refuses it and it is re-encoded, by names, for the new
        code: inputs stay compatible across versions as long as their names do. The output's
        records are instances of the user's classes (see :class:`Client`)."""
        # The hot path: Session.send's steps, with what they work out kept in a lane, the
        # frame written from its parts and the output read with no codec. Each step hands
        # anything unusual to the flow from that point on, so that the requests, the replies
        # and the errors are the same as the flow's.
        wire = self.wire
        sent = wire.session.start(machine, value, key)
        if not isinstance(sent, Input):
            return self._run(sent)
        frame = wire.send_input(sent)
        if frame is None:
            reply = self.request(sent.event())
        else:
            try:
                self._write(frame)
                if wire.conn.drained:  # as _next would find it: straight to the transport
                    self._receive()
                reply = self._next()
            except BaseException as e:  # as _exchange: no late reply may answer a later one
                wire.unanswered(e)
                self.transport.close()
                raise
        done, rest = wire.session.finish(sent, reply)
        return rest if done else self._run(rest)

    def upgrade(
        self,
        machine: str,
        upgrade: Upgrade,
        *,
        trial: int = 0,
        trial_seconds: int = 0,
        check_all: bool = False,
    ) -> Upgraded:
        """Upgrade a machine; :class:`UpgradeRejected` says why the node refused. With
        ``trial`` or ``trial_seconds``, provisionally for that many inputs or seconds,
        whichever ends first: a trap in the new code, or :meth:`revert`, takes it back
        exactly; :meth:`confirm` or the trial's end keeps it. The switch is one change of the
        machine's code, whatever its number of keyed instances: each migrates when next
        touched. With ``check_all``, the node first runs the migration on every instance and
        refuses (``migration_trap``, naming them, changing nothing) if it traps on any."""
        flow = self.wire.session.upgrade(machine, upgrade, trial, trial_seconds, check_all)
        return self._run(flow)

    def dry_run(
        self, machine: str, upgrade: Upgrade, *, inputs: int = DRY_RUN_INPUTS
    ) -> DryRunOutcome:
        """What ``upgrade`` would do, changing nothing: the node checks it as an upgrade, then
        replays the machine's last ``inputs`` inputs through the new code and compares."""
        return self._run(self.wire.session.dry_run(machine, upgrade, inputs))

    def confirm(self, machine: str) -> TrialEnded:
        """Make the machine's trial upgrade permanent now."""
        return self._run(self.wire.session.end_trial(machine, revert=False))

    def revert(self, machine: str) -> TrialEnded:
        """Take the machine's trial upgrade back: old code, the pre-upgrade state, and the
        trial's inputs replayed through the old code (their outputs stay sent)."""
        return self._run(self.wire.session.end_trial(machine, revert=True))

    def release(self, upgrades: Mapping[str, Upgrade]) -> Released:
        """Upgrade several machines at once, by name: all swap between the same two inputs, or
        none does (:class:`UpgradeRejected` names the machine that failed a check)."""
        return self._run(self.wire.session.release(upgrades))

    def rollback(
        self, machine: str, migration: object | None = None, *, check_all: bool = False
    ) -> Upgraded:
        """Go back to the latest code before the current one: an upgrade to older code, with
        ``migration`` from the current state (derived when not given)."""
        return self._run(self.wire.session.rollback(machine, migration, check_all))

    def status_raw(self, machine: str, *, key: str | None = None) -> StatusReply:
        return self._run(self.wire.session.status_raw(machine, key))

    def status(self, machine: str, *, key: str | None = None) -> MachineStatus:
        """The machine's code, types, default state, history and its keyed instances (count,
        per code, trapped, the sweeper); with ``key``, one keyed instance's code, state and
        input count (reading it migrates it, as an input would)."""
        return self._run(self.wire.session.status(machine, key))

    def instances(
        self,
        machine: str,
        prefix: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> InstancePage:
        """A page of the machine's instance keys in order (by UTF-8 bytes): those starting
        with ``prefix``, after ``after``, at most ``limit`` (1 to 1000)."""
        return self._run(self.wire.session.instances(machine, prefix, after, limit))

    def delete(self, machine: str, key: str) -> Deleted:
        """End the keyed instance ``key`` (logged); a later input makes a new one."""
        return self._run(self.wire.session.delete(machine, key))

    def deploy(self, name: str, machine: object) -> Deployed:
        """Add ``machine`` (a DSL machine, a ``Module`` or module bytes) to the running node as
        ``name``, persisted; deploying the code it already runs again changes nothing."""
        return self._run(self.wire.session.deploy(name, machine))

    def machines(self) -> list[tuple[str, str]]:
        """``(name, identity)`` of every machine on the node, sorted by name."""
        return self._run(self.wire.session.machines())

    def module(self, identity: str) -> bytes:
        """The canonical bytes of a module the node has run."""
        return self._run(self.wire.session.fetch(identity))

    def code(self, identity: str) -> LoadedModule:
        """A module the node has run, loaded (fetched once per connection)."""
        return self._run(self.wire.session.code_of(identity))


def connect(
    address: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    machines: Iterable[object] = (),
    token: str | None = None,
    tls: ssl.SSLContext | bool | None = None,
    spin: float = SPIN,
) -> Client:
    """A blocking client for the node at ``address`` (default: ``$HOTSWAP_NODE``); values come
    back as the classes of ``machines`` (DSL machines) and of the values sent. ``token``: for a
    node that authenticates its clients (default: :func:`hotswap.client.wire.default_token`).
    ``tls``: a context from :func:`hotswap.tls.client_context`, True for the system's
    authorities, False for plain TCP; default: as ``$HOTSWAP_TLS_CA`` and the other
    ``HOTSWAP_TLS_*`` variables say (:mod:`hotswap.tls`), else plain TCP. ``spin``: how long
    to poll for each reply before sleeping (:data:`SPIN`; 0: sleep at once)."""
    return Client(address, timeout=timeout, machines=machines, token=token, tls=tls, spin=spin)
