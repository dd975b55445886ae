"""The client library: talk to a node from Python, blocking or with asyncio.

    from hotswap.client import connect, Upgrade
    node = connect("127.0.0.1:7411")          # or $HOTSWAP_NODE, or the node's default address
    node.send("counter", Incr())              # the output, as a Python value
    node.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
    node.status("counter").state
    node.machines()

Python values are converted with the running machine's types: by name when its module carries
the DSL's names (dataclass instances, ints, bools, None, tuples), or as core values (``()``,
ints, pairs, ``(0, v)``/``(1, v)``) otherwise. The running module is fetched once per identity
and cached; after an upgrade made elsewhere the node refuses an input encoded for the old code
(``send_checked``), and the client re-encodes it by names for the new code.
Every refusal raises :class:`hotswap.errors.NodeError`, an upgrade's :class:`UpgradeRejected`.

A request that fails without a reply (timeout, lost connection, protocol error, an interrupt or
a cancellation while waiting) leaves its outcome unknown and the connection unusable: a late
reply would otherwise be taken for the answer to the next request (docs/protocol.md, section
11). Later calls raise ``NodeError`` ``unreachable``; open a new connection.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

from hotswap.cam.build import migration_module
from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.module import encode_module, module_identity
from hotswap.cam.values import decode_type, decode_value, encode_value
from hotswap.dsl.derive import MigrationError, derive_migration
from hotswap.dsl.names import SECTION as NAMES_SECTION
from hotswap.dsl.names import names_for
from hotswap.dsl.schema import Schema, from_core, to_core
from hotswap.errors import (
    HotswapError,
    NodeError,
    ProtocolError,
    UpgradeRejected,
    ValueTypeError,
)
from hotswap.lang.evaluate import Value
from hotswap.lang.terms import ID
from hotswap.lang.types import Type
from hotswap.node.main import DEFAULT_ADDRESS, check_machine_name, module_bytes, parse_address
from hotswap.protocol.connection import ClientConnection
from hotswap.protocol.events import (
    NEED_DATA,
    ConnectionClosed,
    Error,
    ErrorCode,
    GetModule,
    Goodbye,
    Hello,
    HistoryEntry,
    Machines,
    MachinesReply,
    ModuleReply,
    Output,
    Release,
    Released,
    ReleaseItem,
    Request,
    Send,
    SendChecked,
    Status,
    StatusReply,
    Upgraded,
    Welcome,
)
from hotswap.protocol.events import Upgrade as UpgradeRequest
from hotswap.protocol.fields import IDENTITY, InvalidField

DEFAULT_TIMEOUT = 30.0


def default_address() -> str:
    """``$HOTSWAP_NODE`` if set, else the node's default address."""
    return os.environ.get("HOTSWAP_NODE") or DEFAULT_ADDRESS


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The seed's ``Upgrade old new migration``: the code expected to run (a machine, module
    bytes or a hex identity), the new machine, and the migration from old state to new.

    Without a migration, one is derived from the state types' names (``hotswap.dsl.derive``):
    identity for an unchanged state, fields and variants matched by name, defaults for what is
    new; :class:`hotswap.dsl.derive.MigrationError` says when that is not possible."""

    old: object
    new: object
    migration: object | None = None

    def expected_identity(self) -> str:
        if isinstance(self.old, str):
            return self.old
        return module_identity(module_bytes(self.old, "the old machine"))


@dataclass(frozen=True, slots=True)
class MachineStatus:
    machine: str
    identity: str
    input_type: Type
    state_type: Type
    output_type: Type
    state: Value
    inputs: int
    history: tuple[HistoryEntry, ...]


#: Converts Python values for one loaded module: (to_core(value, role), from_core(value, role)).
Converter = tuple[Callable[[Value, str], Value], Callable[[Value, str], Value]]


def schemas_of(code: LoadedModule, local: object | None = None) -> dict[str, Schema] | None:
    """The schemas (Python names) of a machine's input, state and output: a local DSL machine's
    own when it has this identity (its classes), else the module's names section, else None."""
    own = getattr(local, "schemas", None)
    if isinstance(own, dict) and getattr(local, "identity", None) == code.identity:
        return own
    sig = code.machine
    data = code.custom.get(NAMES_SECTION)
    if sig is None or data is None:
        return None
    roles = {"input": sig.input, "state": sig.state, "output": sig.output}
    return names_for(data, roles)


def converter_for(code: LoadedModule, local: object | None = None) -> Converter:
    """By-name conversion when names are known, else core values unchanged (checked when
    encoded)."""
    schemas = schemas_of(code, local)
    if schemas is None:
        return (lambda v, role: v), (lambda v, role: v)
    known = schemas
    return (
        lambda v, role: to_core(known[role], v, role),
        lambda v, role: from_core(known[role], v),
    )


def _local_code(obj: object) -> LoadedModule | None:
    """The code of a machine given locally (a DSL machine or module bytes), if it is."""
    loaded = getattr(obj, "loaded", None)
    if isinstance(loaded, LoadedModule):
        return loaded
    if isinstance(obj, str):  # an identity: the node has the code
        return None
    return load_module(module_bytes(obj, "the old machine"))


def derived_migration(
    old: LoadedModule, new: LoadedModule, old_local: object = None, new_local: object = None
) -> bytes:
    """A migration module from ``old``'s state to ``new``'s: derived by names when both carry
    them, the identity when the state types are equal, else :class:`MigrationError`."""
    old_sig, new_sig = old.machine, new.machine
    if old_sig is None or new_sig is None:
        raise MigrationError("both modules must be machines to derive a migration")
    old_schemas, new_schemas = schemas_of(old, old_local), schemas_of(new, new_local)
    if old_schemas is not None and new_schemas is not None:
        return derive_migration(old_schemas["state"], new_schemas["state"]).module
    if old_sig.state is new_sig.state:
        return encode_module(migration_module(old_sig.state, new_sig.state, ID))
    msg = f"no migration given, and none derives from {old_sig.state} to {new_sig.state}"
    raise MigrationError(f"{msg} without names: give one")


def _check_identity(identity: str) -> None:
    try:
        IDENTITY.encode(identity)
    except InvalidField:
        msg = f"bad identity {identity!r}: expected 64 lowercase hex digits"
        raise HotswapError(msg) from None


def check_request(event: Request) -> None:
    """Refuse, before the connection sees any of a batch, a request whose fields the protocol
    cannot carry, with a message that names the field: one mistyped machine name must not leave
    half a pipeline sent."""
    match event:
        case Send(machine=name) | SendChecked(machine=name) | Status(machine=name):
            check_machine_name(name)
        case UpgradeRequest(machine=name, expected=expected):
            check_machine_name(name)
            _check_identity(expected)
        case GetModule(identity=identity):
            _check_identity(identity)
        case _:
            pass


def _unusable(address: str, why: str) -> NodeError:
    return NodeError("unreachable", f"the connection to {address} is unusable after: {why}")


def _reply_error(reply: Error, upgrade: bool) -> NodeError:
    if upgrade:
        return UpgradeRejected(str(reply.code), reply.message)
    return NodeError(str(reply.code), reply.message)


T = TypeVar("T")
R = TypeVar("R")
#: An operation as a generator: it yields requests, receives their replies, returns its result.
Flow = Generator[Request, object, T]


class _Session:
    """What blocking and asyncio clients share: request ids, the module cache, conversions,
    and every operation as a *flow*: a generator that yields the requests it needs and gets
    their replies back, so the same logic runs over a socket or under asyncio (``_run``)."""

    def __init__(self) -> None:
        self.conn = ClientConnection()
        self._next_id = 0
        self.codes: dict[str, LoadedModule] = {}  # identity -> module
        self.running: dict[str, str] = {}  # machine -> identity last seen
        self.local: dict[str, object] = {}  # identity -> a local DSL machine with that code
        self._converters: dict[str, Converter] = {}  # identity -> conversions (names parsed)

    def request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def remember(self, *machines: object) -> None:
        """Use these local DSL machines' classes to convert values of their code."""
        for m in machines:
            identity = getattr(m, "identity", None)
            if isinstance(identity, str) and hasattr(m, "schemas"):
                self.local[identity] = m
                self._converters.pop(identity, None)

    def converter(self, code: LoadedModule) -> Converter:
        converter = self._converters.get(code.identity)
        if converter is None:
            converter = converter_for(code, self.local.get(code.identity))
            self._converters[code.identity] = converter
        return converter

    # --- flows: the building blocks -----------------------------------------------------------

    def fetch(self, identity: str) -> Flow[bytes]:
        reply = yield GetModule(self.request_id(), identity)
        return expect(reply, ModuleReply).module

    def code_of(self, identity: str) -> Flow[LoadedModule]:
        code = self.codes.get(identity)
        if code is None:
            code = self.codes[identity] = load_module((yield from self.fetch(identity)))
        return code

    def status_raw(self, machine: str) -> Flow[StatusReply]:
        reply = expect((yield Status(self.request_id(), machine)), StatusReply)
        self.running[machine] = reply.identity
        return reply

    def running_code(self, machine: str, refresh: bool) -> Flow[LoadedModule]:
        identity = self.running.get(machine)
        if identity is None or refresh:
            identity = (yield from self.status_raw(machine)).identity
        return (yield from self.code_of(identity))

    # --- flows: the API -----------------------------------------------------------------------

    def send(self, machine: str, value: Any) -> Flow[Any]:
        """Encode for the code last seen running; if that has changed (the node refuses a stale
        encoding, or the value does not convert), refresh and encode by names again, once."""
        stale: Error | None = None
        for attempt in (0, 1):
            code = yield from self.running_code(machine, refresh=attempt == 1)
            to_core_value, to_python_value = self.converter(code)
            if stale is not None and not _has_names(code):
                raise _reply_error(stale, False)  # no names: no safe way to re-encode
            sig = code.machine
            assert sig is not None
            try:
                data = encode_value(to_core_value(value, "input"), sig.input)
            except ValueTypeError:
                if attempt == 0 and _has_names(code):
                    continue  # perhaps encoded for old code: look again
                raise
            reply = yield SendChecked(self.request_id(), machine, code.identity, data)
            stale_code = isinstance(reply, Error) and reply.code == ErrorCode.WRONG_VERSION
            if stale_code and attempt == 0 and _has_names(code):
                stale = cast(Error, reply)
                continue
            output = expect(reply, Output).output
            return to_python_value(decode_value(output, sig.output), "output")
        raise HotswapError("unreachable")  # pragma: no cover

    def upgrade(self, machine: str, upgrade: Upgrade) -> Flow[Upgraded]:
        parts = yield from self.upgrade_parts(upgrade)
        reply = expect((yield UpgradeRequest(self.request_id(), machine, *parts)), Upgraded)
        self.running[machine] = reply.new
        return reply

    def release(self, upgrades: Mapping[str, Upgrade]) -> Flow[Released]:
        items = []
        for name in sorted(upgrades):
            items.append(ReleaseItem(name, *(yield from self.upgrade_parts(upgrades[name]))))
        reply = expect((yield Release(self.request_id(), tuple(items))), Released)
        for entry in reply.machines:
            self.running[entry.machine] = entry.new
        return reply

    def rollback(self, machine: str, migration: object | None) -> Flow[Upgraded]:
        status = yield from self.status_raw(machine)
        target = rollback_target(status)
        module = yield from self.fetch(target)
        return (yield from self.upgrade(machine, Upgrade(status.identity, module, migration)))

    def status(self, machine: str) -> Flow[MachineStatus]:
        reply = yield from self.status_raw(machine)
        code = yield from self.code_of(reply.identity)
        state_type = decode_type(reply.state_type)
        state = self.converter(code)[1](decode_value(reply.state, state_type), "state")
        return MachineStatus(
            reply.machine,
            reply.identity,
            decode_type(reply.input_type),
            state_type,
            decode_type(reply.output_type),
            state,
            reply.inputs,
            reply.history,
        )

    def machines(self) -> Flow[list[tuple[str, str]]]:
        reply = expect((yield Machines(self.request_id())), MachinesReply)
        return [(m.name, m.identity) for m in reply.machines]

    def upgrade_parts(self, upgrade: Upgrade) -> Flow[tuple[str, bytes, bytes]]:
        """``(expected, module, migration)`` for ``upgrade``, deriving the migration when there
        is none (fetching the expected code if the upgrade does not bring it)."""
        self.remember(upgrade.old, upgrade.new)
        expected = upgrade.expected_identity()
        new = module_bytes(upgrade.new, "the new machine")
        if upgrade.migration is not None:
            return expected, new, module_bytes(upgrade.migration, "the migration")
        old = _local_code(upgrade.old)
        if old is None:
            old = yield from self.code_of(expected)
        return expected, new, derived_migration(old, load_module(new), upgrade.old, upgrade.new)


def expect(reply: object, kind: type[R]) -> R:
    """``reply`` as the success ``kind``, or the error it carries raised."""
    if isinstance(reply, Error):
        upgrade = kind is Upgraded or kind is Released
        raise _reply_error(reply, upgrade)
    if not isinstance(reply, kind):
        raise NodeError("bad_request", f"expected {kind.__name__}, the node sent {reply!r}")
    return reply


def rollback_target(status: StatusReply) -> str:
    """The latest code in the history other than the one running."""
    for entry in reversed(status.history):
        if entry.identity != status.identity:
            return entry.identity
    raise NodeError("bad_request", f"{status.machine} has no earlier code to go back to")


def _has_names(code: LoadedModule) -> bool:
    return NAMES_SECTION in code.custom


class Client:
    """A blocking connection to one node."""

    def __init__(self, address: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = address or default_address()
        host, port = parse_address(self.address)
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise NodeError("unreachable", f"cannot reach a node at {self.address}: {e}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.session = _Session()
        self._broken: str | None = None
        try:
            self._write(self.session.conn.send(Hello()))
            welcome = self._next()
            if not isinstance(welcome, Welcome):
                raise NodeError("bad_request", f"node answered hello with {welcome!r}")
        except BaseException:
            self.sock.close()
            raise
        self.node_name = welcome.node

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _next(self) -> object:
        conn = self.session.conn
        while True:
            try:
                event = conn.next_event()
            except ProtocolError as e:
                msg = f"protocol error talking to {self.address}: {e}"
                raise NodeError("bad_request", msg) from None
            if event is not NEED_DATA:
                if isinstance(event, Goodbye):
                    raise NodeError(str(event.code), f"node closed the connection: {event.message}")
                if isinstance(event, ConnectionClosed):
                    raise NodeError("unreachable", f"node at {self.address} closed the connection")
                return event
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                raise NodeError("timeout", f"no reply from {self.address} in time") from None
            except OSError as e:
                raise NodeError("unreachable", f"lost the node at {self.address}: {e}") from None
            conn.receive_data(data)

    def _write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise NodeError("unreachable", f"lost the node at {self.address}: {e}") from None

    def _exchange(self, events: Sequence[Request]) -> list[object]:
        if self._broken is not None:
            raise _unusable(self.address, self._broken)
        for event in events:
            check_request(event)
        conn = self.session.conn
        try:
            data = b"".join(conn.send(e) for e in events)
        except HotswapError as e:  # too large for the node: nothing was sent
            if len(events) > 1:  # but the requests before this one now await replies
                self._broken = str(e)
                self.sock.close()
            raise
        try:
            self._write(data)
            return [self._next() for _ in events]
        except BaseException as e:  # no reply: a late one must never answer a later request
            self._broken = str(e) or type(e).__name__
            self.sock.close()
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

    def send_raw(self, machine: str, data: bytes, code: str | None = None) -> Output:
        """Send canonical input bytes; the reply carries output and state bytes. With ``code``
        (the identity the bytes were encoded for) the node refuses them if other code runs
        (``wrong_version``), rather than read them at a type they were not written for."""
        rid = self.session.request_id()
        event = Send(rid, machine, data) if code is None else SendChecked(rid, machine, code, data)
        return expect(self.request(event), Output)

    def send(self, machine: str, value: Any) -> Any:
        """Send one input (a Python value); returns the output as a Python value.

        The input is encoded for the code this client last saw running; if the machine has
        been upgraded since, the node refuses it and it is re-encoded, by names, for the new
        code: inputs stay compatible across versions as long as their names do."""
        return self._run(self.session.send(machine, value))

    def upgrade(self, machine: str, upgrade: Upgrade) -> Upgraded:
        """Upgrade a machine; :class:`UpgradeRejected` says why the node refused."""
        return self._run(self.session.upgrade(machine, upgrade))

    def release(self, upgrades: Mapping[str, Upgrade]) -> Released:
        """Upgrade several machines at once, by name: all swap between the same two inputs, or
        none does (:class:`UpgradeRejected` names the machine that failed a check)."""
        return self._run(self.session.release(upgrades))

    def rollback(self, machine: str, migration: object | None = None) -> Upgraded:
        """Go back to the latest code before the current one: an upgrade to older code, with
        ``migration`` from the current state (derived when not given)."""
        return self._run(self.session.rollback(machine, migration))

    def status_raw(self, machine: str) -> StatusReply:
        return self._run(self.session.status_raw(machine))

    def status(self, machine: str) -> MachineStatus:
        return self._run(self.session.status(machine))

    def machines(self) -> list[tuple[str, str]]:
        """``(name, identity)`` of every machine on the node, sorted by name."""
        return self._run(self.session.machines())

    def module(self, identity: str) -> bytes:
        """The canonical bytes of a module the node has run."""
        return self._run(self.session.fetch(identity))

    def code(self, identity: str) -> LoadedModule:
        """A module the node has run, loaded (fetched once per connection)."""
        return self._run(self.session.code_of(identity))


def connect(address: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Client:
    """A blocking client for the node at ``address`` (default: ``$HOTSWAP_NODE``)."""
    return Client(address, timeout=timeout)


class AsyncClient:
    """An asyncio connection to one node: the same API as :class:`Client`, awaited."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.session = _Session()
        self.timeout = DEFAULT_TIMEOUT
        self.address = "the node"
        self._broken: str | None = None

    @classmethod
    async def connect(
        cls, address: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> AsyncClient:
        host, port = parse_address(address or default_address())
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as e:
            raise NodeError("unreachable", f"cannot reach a node at {host}:{port}: {e}") from None
        client = cls(reader, writer)
        client.timeout = timeout
        client.address = f"{host}:{port}"
        try:
            writer.write(client.session.conn.send(Hello()))
            welcome = await client._next()
            if not isinstance(welcome, Welcome):
                raise NodeError("bad_request", f"node answered hello with {welcome!r}")
        except BaseException:
            writer.close()
            raise
        return client

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def _next(self) -> object:
        conn = self.session.conn
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                event = conn.next_event()
            except ProtocolError as e:
                raise NodeError("bad_request", f"protocol error: {e}") from None
            if event is not NEED_DATA:
                if isinstance(event, Goodbye):
                    raise NodeError(str(event.code), f"node closed the connection: {event.message}")
                if isinstance(event, ConnectionClosed):
                    raise NodeError("unreachable", f"node at {self.address} closed the connection")
                return event
            remaining = deadline - time.monotonic()
            try:
                data = await asyncio.wait_for(self.reader.read(1 << 16), max(remaining, 0.001))
            except TimeoutError:
                raise NodeError("timeout", "no reply from the node in time") from None
            except OSError as e:
                raise NodeError("unreachable", f"lost the node: {e}") from None
            conn.receive_data(data)

    async def request(self, event: Request) -> object:
        """Send one request and return its reply event (an Error reply is returned, not raised)."""
        if self._broken is not None:
            raise _unusable(self.address, self._broken)
        check_request(event)
        data = self.session.conn.send(event)
        try:
            self.writer.write(data)
            return await self._next()
        except BaseException as e:  # includes cancellation: the reply may still come, late
            self._broken = str(e) or type(e).__name__
            self.writer.close()
            raise

    async def _run(self, flow: Flow[T]) -> T:
        try:
            event = next(flow)
            while True:
                event = flow.send(await self.request(event))
        except StopIteration as done:
            return cast(T, done.value)

    async def send(self, machine: str, value: Any) -> Any:
        return await self._run(self.session.send(machine, value))

    async def upgrade(self, machine: str, upgrade: Upgrade) -> Upgraded:
        return await self._run(self.session.upgrade(machine, upgrade))

    async def release(self, upgrades: Mapping[str, Upgrade]) -> Released:
        return await self._run(self.session.release(upgrades))

    async def rollback(self, machine: str, migration: object | None = None) -> Upgraded:
        return await self._run(self.session.rollback(machine, migration))

    async def status(self, machine: str) -> MachineStatus:
        return await self._run(self.session.status(machine))

    async def machines(self) -> list[tuple[str, str]]:
        return await self._run(self.session.machines())

    async def module(self, identity: str) -> bytes:
        return await self._run(self.session.fetch(identity))
