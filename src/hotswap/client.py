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
and cached; after an upgrade made elsewhere, the first send that fails to decode refreshes it.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from hotswap.cam.build import migration_module
from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.module import encode_module, module_identity
from hotswap.cam.values import decode_type, decode_value, encode_value
from hotswap.dsl.derive import MigrationError, derive_migration
from hotswap.dsl.names import SECTION as NAMES_SECTION
from hotswap.dsl.names import names_for
from hotswap.dsl.schema import Schema, from_core, to_core
from hotswap.errors import HotswapError, NodeError, ProtocolError, UpgradeRejected
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


class _Session:
    """What blocking and asyncio clients share: request ids, module cache, conversions."""

    def __init__(self) -> None:
        self.conn = ClientConnection()
        self._next_id = 0
        self.codes: dict[str, LoadedModule] = {}  # identity -> module
        self.running: dict[str, str] = {}  # machine -> identity last seen
        self.local: dict[str, object] = {}  # identity -> a local DSL machine with that code

    def remember(self, *machines: object) -> None:
        """Use these local DSL machines' classes to convert values of their code."""
        for m in machines:
            identity = getattr(m, "identity", None)
            if isinstance(identity, str) and hasattr(m, "schemas"):
                self.local[identity] = m

    def upgrade_parts(self, upgrade: Upgrade, old: LoadedModule | None) -> tuple[str, bytes, bytes]:
        """``(expected, module, migration)`` for ``upgrade``; ``old`` (the expected code) is
        needed only to derive a migration, when the upgrade has none and its old machine
        brings no code of its own."""
        self.remember(upgrade.old, upgrade.new)
        new = module_bytes(upgrade.new, "the new machine")
        if upgrade.migration is not None:
            migration = module_bytes(upgrade.migration, "the migration")
        else:
            old = old or _local_code(upgrade.old)
            if old is None:
                raise MigrationError("no migration given and the running code is unknown")
            migration = derived_migration(old, load_module(new), upgrade.old, upgrade.new)
        return upgrade.expected_identity(), new, migration

    def upgrade_request(
        self, machine: str, upgrade: Upgrade, old: LoadedModule | None
    ) -> UpgradeRequest:
        return UpgradeRequest(self.request_id(), machine, *self.upgrade_parts(upgrade, old))

    def release_request(
        self, upgrades: Mapping[str, Upgrade], old: Mapping[str, LoadedModule]
    ) -> Release:
        items = tuple(
            ReleaseItem(name, *self.upgrade_parts(upgrades[name], old.get(name)))
            for name in sorted(upgrades)
        )
        return Release(self.request_id(), items)

    def released(self, reply: object) -> Released:
        if isinstance(reply, Error):
            raise _reply_error(reply, True)
        assert isinstance(reply, Released)
        for entry in reply.machines:
            self.running[entry.machine] = entry.new
        return reply

    @staticmethod
    def needs_old_code(upgrade: Upgrade) -> bool:
        """Whether the expected code must be fetched from the node to derive a migration."""
        return upgrade.migration is None and _local_code(upgrade.old) is None

    def upgraded(self, machine: str, reply: object) -> Upgraded:
        if isinstance(reply, Error):
            raise _reply_error(reply, True)
        assert isinstance(reply, Upgraded)
        self.running[machine] = reply.new
        return reply

    @staticmethod
    def rollback_target(status: StatusReply) -> str:
        """The code that ran before the current one."""
        if len(status.history) < 2:
            raise NodeError("bad_request", f"{status.machine} has no earlier code to go back to")
        return status.history[-2].identity

    def checked_send(self, machine: str, code: LoadedModule, value: Any) -> SendChecked:
        """``value`` encoded for ``code``, in a request the node refuses if ``code`` is not
        what runs."""
        sig = code.machine
        assert sig is not None
        to_core_value = self.converter(code)[0]
        data = encode_value(to_core_value(value, "input"), sig.input)
        return SendChecked(self.request_id(), machine, code.identity, data)

    @staticmethod
    def stale(reply: object, attempt: int) -> bool:
        """Whether ``reply`` refuses an input encoded for code that no longer runs (worth one
        retry with the running code)."""
        return isinstance(reply, Error) and reply.code == ErrorCode.WRONG_VERSION and not attempt

    def output_of(self, code: LoadedModule, reply: object) -> Any:
        if isinstance(reply, Error):
            raise _reply_error(reply, False)
        assert isinstance(reply, Output)
        sig = code.machine
        assert sig is not None
        return self.converter(code)[1](decode_value(reply.output, sig.output), "output")

    def converter(self, code: LoadedModule) -> Converter:
        return converter_for(code, self.local.get(code.identity))

    def request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def code_for(self, identity: str, fetch: Callable[[str], bytes]) -> LoadedModule:
        code = self.codes.get(identity)
        if code is None:
            code = load_module(fetch(identity))
            self.codes[identity] = code
        return code

    def status_of(self, reply: StatusReply, code: LoadedModule | None) -> MachineStatus:
        state_type = decode_type(reply.state_type)
        state = decode_value(reply.state, state_type)
        if code is not None:
            state = self.converter(code)[1](state, "state")
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

    def _fetch(self, identity: str) -> bytes:
        reply = self.request(GetModule(self.session.request_id(), identity))
        if isinstance(reply, Error):
            raise _reply_error(reply, False)
        assert isinstance(reply, ModuleReply)
        return reply.module

    def _code(self, machine: str, refresh: bool = False) -> LoadedModule:
        identity = self.session.running.get(machine)
        if identity is None or refresh:
            identity = self.status_raw(machine).identity
            self.session.running[machine] = identity
        return self.session.code_for(identity, self._fetch)

    # --- the API ----------------------------------------------------------------------------

    def send_raw(self, machine: str, data: bytes, code: str | None = None) -> Output:
        """Send canonical input bytes; the reply carries output and state bytes. With ``code``
        (the identity the bytes were encoded for) the node refuses them if other code runs
        (``wrong_version``), rather than read them at a type they were not written for."""
        rid = self.session.request_id()
        event = Send(rid, machine, data) if code is None else SendChecked(rid, machine, code, data)
        reply = self.request(event)
        if isinstance(reply, Error):
            raise _reply_error(reply, False)
        assert isinstance(reply, Output)
        return reply

    def send(self, machine: str, value: Any) -> Any:
        """Send one input (a Python value); returns the output as a Python value.

        The input is encoded for the code this client last saw running; if the machine has
        been upgraded since, the node refuses it and it is re-encoded, by names, for the new
        code: inputs stay compatible across versions as long as their names do."""
        for attempt in (0, 1):
            code = self._code(machine, refresh=attempt == 1)
            request = self.session.checked_send(machine, code, value)
            reply = self.request(request)
            if self.session.stale(reply, attempt):
                continue
            return self.session.output_of(code, reply)
        raise HotswapError("unreachable")  # pragma: no cover

    def upgrade(self, machine: str, upgrade: Upgrade) -> Upgraded:
        """Upgrade a machine; :class:`UpgradeRejected` says why the node refused."""
        old = None
        if self.session.needs_old_code(upgrade):
            old = self.session.code_for(upgrade.expected_identity(), self._fetch)
        request = self.session.upgrade_request(machine, upgrade, old)
        return self.session.upgraded(machine, self.request(request))

    def release(self, upgrades: Mapping[str, Upgrade]) -> Released:
        """Upgrade several machines at once, by name: all swap between the same two inputs, or
        none does (:class:`UpgradeRejected` names the machine that failed a check)."""
        old = {
            name: self.session.code_for(u.expected_identity(), self._fetch)
            for name, u in upgrades.items()
            if self.session.needs_old_code(u)
        }
        return self.session.released(self.request(self.session.release_request(upgrades, old)))

    def rollback(self, machine: str, migration: object | None = None) -> Upgraded:
        """Go back to the code that ran before the current one: an upgrade to older code, with
        ``migration`` from the current state (derived when not given)."""
        status = self.status_raw(machine)
        target = self.module(self.session.rollback_target(status))
        return self.upgrade(machine, Upgrade(status.identity, target, migration))

    def status_raw(self, machine: str) -> StatusReply:
        reply = self.request(Status(self.session.request_id(), machine))
        if isinstance(reply, Error):
            raise _reply_error(reply, False)
        assert isinstance(reply, StatusReply)
        return reply

    def status(self, machine: str) -> MachineStatus:
        reply = self.status_raw(machine)
        self.session.running[machine] = reply.identity
        code = self.session.code_for(reply.identity, self._fetch)
        return self.session.status_of(reply, code)

    def machines(self) -> list[tuple[str, str]]:
        """``(name, identity)`` of every machine on the node, sorted by name."""
        reply = self.request(Machines(self.session.request_id()))
        if isinstance(reply, Error):
            raise _reply_error(reply, False)
        assert isinstance(reply, MachinesReply)
        return [(m.name, m.identity) for m in reply.machines]

    def module(self, identity: str) -> bytes:
        """The canonical bytes of a module the node has run."""
        return self._fetch(identity)


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

    async def _fetch(self, identity: str) -> bytes:
        reply = await self.request(GetModule(self.session.request_id(), identity))
        if isinstance(reply, Error):
            raise _reply_error(reply, False)
        assert isinstance(reply, ModuleReply)
        return reply.module

    async def _code(self, machine: str, refresh: bool = False) -> LoadedModule:
        identity = self.session.running.get(machine)
        if identity is None or refresh:
            reply = await self.request(Status(self.session.request_id(), machine))
            if isinstance(reply, Error):
                raise _reply_error(reply, False)
            assert isinstance(reply, StatusReply)
            identity = self.session.running[machine] = reply.identity
        code = self.session.codes.get(identity)
        if code is None:
            code = self.session.codes[identity] = load_module(await self._fetch(identity))
        return code

    async def send(self, machine: str, value: Any) -> Any:
        for attempt in (0, 1):
            code = await self._code(machine, refresh=attempt == 1)
            reply = await self.request(self.session.checked_send(machine, code, value))
            if self.session.stale(reply, attempt):
                continue
            return self.session.output_of(code, reply)
        raise HotswapError("unreachable")  # pragma: no cover

    async def upgrade(self, machine: str, upgrade: Upgrade) -> Upgraded:
        old = None
        if self.session.needs_old_code(upgrade):
            identity = upgrade.expected_identity()
            old = self.session.codes.get(identity) or load_module(await self._fetch(identity))
        request = self.session.upgrade_request(machine, upgrade, old)
        return self.session.upgraded(machine, await self.request(request))

    async def release(self, upgrades: Mapping[str, Upgrade]) -> Released:
        old = {}
        for name, u in upgrades.items():
            if self.session.needs_old_code(u):
                identity = u.expected_identity()
                old[name] = self.session.codes.get(identity) or load_module(
                    await self._fetch(identity)
                )
        request = self.session.release_request(upgrades, old)
        return self.session.released(await self.request(request))

    async def rollback(self, machine: str, migration: object | None = None) -> Upgraded:
        reply = await self.request(Status(self.session.request_id(), machine))
        if isinstance(reply, Error):
            raise _reply_error(reply, False)
        assert isinstance(reply, StatusReply)
        target = await self._fetch(self.session.rollback_target(reply))
        return await self.upgrade(machine, Upgrade(reply.identity, target, migration))

    async def status(self, machine: str) -> MachineStatus:
        reply = await self.request(Status(self.session.request_id(), machine))
        if isinstance(reply, Error):
            raise _reply_error(reply, False)
        assert isinstance(reply, StatusReply)
        self.session.running[machine] = reply.identity  # it may have been upgraded elsewhere
        code = await self._code(machine)
        return self.session.status_of(reply, code)

    async def machines(self) -> list[tuple[str, str]]:
        reply = await self.request(Machines(self.session.request_id()))
        if isinstance(reply, Error):
            raise _reply_error(reply, False)
        assert isinstance(reply, MachinesReply)
        return [(m.name, m.identity) for m in reply.machines]
