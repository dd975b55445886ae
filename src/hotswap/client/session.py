"""Every client operation as a sans-IO *flow*, shared by the blocking and asyncio clients.

A flow is a generator that yields the requests it needs and is sent their replies; it returns
the operation's result. The same flow runs over a socket, under asyncio or against an in-memory
node, so the logic of an operation (encode for the running code, re-encode after an upgrade
made elsewhere, derive a migration, find the rollback target) exists once. "Upgrade" here is
the user's :class:`hotswap.code.Upgrade`, sent as an ``UpgradeRequest``.

Values come back (outputs, states) as the user's classes the session knows (:class:`Classes`):
those of the machines it was given (``remember``, ``connect(machines=...)``, an upgrade's old
and new machine) and those learned from the values sent; a record none matches comes back as a
:class:`hotswap.names.schema.Record`, with one :class:`ClassesUnknownWarning` per code.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Generator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hotswap.address import check_machine_name
from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.module import module_identity
from hotswap.cam.values import decode_type, decode_value, encode_value, value_decoder
from hotswap.changes import claim_of
from hotswap.client.convert import (
    Classes,
    ClassesUnknownWarning,
    Converter,
    compiled_machine,
    converter_for,
    has_names,
    lacking_message,
    machine_schemas,
)
from hotswap.client.migrations import derive_with_notes, local_code
from hotswap.code import Upgrade, module_bytes
from hotswap.errors import HotswapError, NodeError, StepTrapped, UpgradeRejected, ValueTypeError
from hotswap.lang.evaluate import Value
from hotswap.lang.types import Type
from hotswap.lang.values import render
from hotswap.names.display import render_by_name
from hotswap.protocol.events import (
    CodeCount,
    Confirm,
    Delete,
    Deleted,
    Deploy,
    Deployed,
    DryRun,
    DryRunReport,
    Error,
    ErrorCode,
    GetModule,
    HistoryEntry,
    InstancesReply,
    InstancesRequest,
    Machines,
    MachinesReply,
    ModuleReply,
    Output,
    Release,
    Released,
    ReleaseItem,
    Request,
    Revert,
    SendChecked,
    Status,
    StatusReply,
    SweepProgress,
    TrappedInstance,
    TrialEnded,
    Upgraded,
    UpgradeRequest,
)
from hotswap.protocol.fastpath import CheckedParts, send_checked_parts
from hotswap.protocol.fields import key_problem
from hotswap.signing import read_private_key, sign

T = TypeVar("T")
R = TypeVar("R")
#: A request that changes code, as :meth:`Session._signed` signs it.
Changing = TypeVar("Changing", UpgradeRequest, Release, Deploy)
#: How many recent inputs a dry run replays unless told: all the node keeps.
DRY_RUN_INPUTS = 1000
#: An operation as a generator: it yields requests, receives their replies, returns its result.
Flow = Generator[Request, object, T]


@dataclass(frozen=True, slots=True)
class MachineStatus:
    """A machine's status with its types decoded and its state as a Python value (records as
    the user's classes, or :class:`hotswap.names.schema.Record` where the client has none)."""

    machine: str
    identity: str
    input_type: Type
    state_type: Type
    output_type: Type
    state: Value
    inputs: int
    history: tuple[HistoryEntry, ...]
    #: How many changes of code the machine has had (None from a version 1 node).
    generation: int | None = None
    #: Inputs left in the trial upgrade in progress, if it is bounded by inputs.
    trial: int | None = None
    #: When the trial upgrade in progress ends, if it is bounded by time (epoch seconds).
    trial_until: float | None = None
    #: A keyed instance's status: its key (``identity``, the types, ``state`` and ``inputs``
    #: are then the instance's, ``generation`` that of the code it runs).
    key: str | None = None
    #: How many keyed instances the machine has (None from a node before version 3).
    instances: int | None = None
    #: How many keyed instances run each code, by identity: "who still runs X".
    codes: tuple[CodeCount, ...] = ()
    #: Instances whose migration to the running code trapped (for a keyed status: this one).
    trapped: tuple[TrappedInstance, ...] = ()
    #: The sweeper's progress migrating instances to the running code.
    sweep: SweepProgress | None = None

    @property
    def in_trial(self) -> bool:
        """Whether an upgrade of this machine is still provisional."""
        return self.trial is not None or self.trial_until is not None


@dataclass(frozen=True, slots=True)
class InstancePage:
    """A page of a machine's instance keys, in order; ``more`` when keys after ``keys[-1]``
    match too: ask again with ``after=page.keys[-1]``."""

    keys: tuple[str, ...]
    more: bool

    @property
    def after(self) -> str | None:
        """Where the next page starts (the last key of this one)."""
        return self.keys[-1] if self.keys else None


@dataclass(frozen=True, slots=True)
class Parts:
    """An upgrade as the wire carries it: the expected identity, the new module, the migration
    module, and notes on a derived migration."""

    expected: str
    module: bytes
    migration: bytes
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rehearsed:
    """One input of a dry run whose output differs, shown as text: the input and the running
    code's output by the running code's names, the new output by the new code's (the seed's
    syntax where a module carries no names), or the trap."""

    seq: int
    input: str
    old: str
    new: str | None
    trap: str


@dataclass(frozen=True, slots=True)
class DryRunOutcome:
    """What an upgrade would have done to the last inputs: nothing on the node changed."""

    replayed: int
    differing: int
    traps: int
    differences: tuple[Rehearsed, ...]
    notes: tuple[str, ...]


def reply_error(reply: Error, upgrade: bool) -> NodeError:
    """The exception an Error reply raises: :class:`UpgradeRejected` for an upgrade,
    :class:`StepTrapped` (a :class:`hotswap.errors.Trap`) for a step that trapped, and
    :class:`UpgradeRejected` for an input or status whose keyed instance could not migrate to
    the running code (``migration_trap``); the reply's version 2 fields become the
    exception's ``running``, ``generation`` and ``trap``."""
    fields = {"running": reply.running, "generation": reply.generation, "trap": reply.trap}
    if upgrade or reply.code == ErrorCode.MIGRATION_TRAP:
        return UpgradeRejected(str(reply.code), reply.message, **fields)  # type: ignore[arg-type]
    if reply.code == ErrorCode.TRAP:
        return StepTrapped(reply.trap or "trap", reply.message)
    return NodeError(str(reply.code), reply.message, **fields)  # type: ignore[arg-type]


def expect(reply: object, kind: type[R]) -> R:
    """``reply`` as the success ``kind``, or the error it carries raised."""
    if isinstance(reply, Error):
        raise reply_error(reply, kind in (Upgraded, Released, DryRunReport))
    if not isinstance(reply, kind):
        raise NodeError("bad_request", f"expected {kind.__name__}, the node sent {reply!r}")
    return reply


def rollback_target(status: StatusReply) -> str:
    """The latest code in the history other than the one running."""
    for entry in reversed(status.history):
        if entry.identity != status.identity:
            return entry.identity
    raise NodeError("bad_request", f"{status.machine} has no earlier code to go back to")


class Lane:
    """What :meth:`Session.send` works out before it sends anything, for one machine's running
    code and the values of some modules: the code, its conversions, and the fixed parts of the
    ``send_checked`` frame (``fastpath.send_checked_parts``), for no key and for each key sent
    to. The clients' hot path (``Client.send``, ``AsyncClient.send``) encodes with it, writes
    the frame from its parts and decodes the output with it: the same bytes and the same values
    as the flow, with none of it recomputed per input."""

    __slots__ = (
        "_decode",
        "_from_core",
        "_input_type",
        "_keyed",
        "_to_core",
        "code",
        "epoch",
        "identity",
        "machine",
        "names",
        "parts",
        "version",
    )

    def __init__(
        self,
        session: Session,
        machine: str,
        code: LoadedModule,
        converter: Converter,
        parts: CheckedParts,
    ) -> None:
        sig = code.machine
        assert sig is not None
        self.machine = machine
        self.code = code
        self.identity = code.identity
        #: Whether values of the code can be re-encoded by name (:func:`has_names`).
        self.names = has_names(code)
        self.version = session.classes.version
        self.epoch = session._epoch
        #: The parts of the frame for the machine's default instance.
        self.parts = parts
        self._keyed: dict[str, CheckedParts] = {}
        self._to_core = converter.to_core
        self._from_core = converter.from_core
        self._input_type = sig.input
        self._decode = value_decoder(sig.output)

    def encode(self, value: Any) -> bytes:
        """``value`` as input bytes of the code (:class:`ValueTypeError` if it does not
        convert), as :meth:`Session.send_learned` encodes it."""
        return encode_value(self._to_core(value, "input"), self._input_type)

    def parts_for(self, key: object) -> CheckedParts | None:
        """The frame's parts for instance ``key`` (None: the default one); None if ``key`` is
        not one (the long way then says why)."""
        if key is None:
            return self.parts
        if type(key) is not str:
            return None
        parts = self._keyed.get(key)
        if parts is None:
            if key_problem(key) is not None:
                return None
            parts = send_checked_parts(self.machine, self.identity, key)
            if parts is None:
                return None
            if len(self._keyed) >= _KEYS_KEPT:
                self._keyed.clear()
            self._keyed[key] = parts
        return parts

    def output(self, data: bytes) -> Any:
        """An output of the code as a Python value, as :meth:`Session.output_of` makes it
        (while :meth:`Session.current`)."""
        return self._from_core(self._decode(bytes(data)), "output")


#: At most this many lanes are kept per session, and keys' frame parts per lane.
_LANES_KEPT = 256
_KEYS_KEPT = 4096


@dataclass(slots=True)
class Input:
    """An input on the clients' hot path (:meth:`Session.start`): encoded with its lane, its
    request id taken, not yet sent."""

    machine: str
    value: Any
    key: str | None
    prefer: tuple[str, ...]
    lane: Lane
    rid: int
    data: bytes

    def event(self) -> SendChecked:
        """The request, for the long way of writing it (``Client.request``)."""
        return SendChecked(self.rid, self.machine, self.lane.identity, self.data, False, self.key)


class Session:
    """One connection's client-side state: request ids, the module cache, conversions, and
    the operations as flows."""

    def __init__(self) -> None:
        self._next_id = 0
        self.codes: dict[str, LoadedModule] = {}  # identity -> module
        self.running: dict[str, str] = {}  # machine -> identity last seen
        self.local: dict[str, object] = {}  # identity -> a local DSL machine with that code
        #: The user's classes values come back as, by record name and field names.
        self.classes = Classes()
        # (identity, modules preferred) -> (classes.version it was built at, conversions)
        self._converters: dict[tuple[str, tuple[str, ...]], tuple[int, Converter]] = {}
        self._warned: set[str] = set()  # identities warned about (ClassesUnknownWarning)
        # (machine, modules preferred) -> what send works out for it (see lane())
        self._lanes: dict[tuple[str, tuple[str, ...]], Lane] = {}
        self._epoch = 0  # changes whenever the conversions cached are dropped
        self._searched: set[str] = set()  # identities looked for among the program's machines
        #: The key upgrades, rollbacks and deploys are signed with (:meth:`sign_with`), for a
        #: node started with ``--trust``; None: unsigned.
        self.signer: Ed25519PrivateKey | None = None

    def sign_with(self, key: Ed25519PrivateKey | str | Path | None) -> None:
        """Sign every later change of code with ``key`` (a private key, or the file
        ``hotswap keygen`` wrote); None: stop signing."""
        if key is None or isinstance(key, Ed25519PrivateKey):
            self.signer = key
        else:
            self.signer = read_private_key(Path(key))

    def _signed(self, request: Changing, generations: Mapping[str, int | None]) -> Changing:
        """``request``, a change of code, signed with :attr:`signer` (if any) for the
        machines' ``generations`` (``changes.claim_of``: the rule the node checks)."""
        if self.signer is None:
            return request
        claim = claim_of(request, generations.get)
        assert claim is not None  # every machine it changes has its generation
        return replace(request, signature=sign(self.signer, claim))

    def request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def remember(self, *machines: object) -> None:
        """Convert values with these DSL machines' classes: exactly for their own code, and by
        record name and field names for any other code (a version upgraded to elsewhere).
        ``connect(..., machines=[...])`` does the same; :class:`TypeError` for anything that is
        not a DSL machine."""
        for m in machines:
            if not self._remember(m):
                raise TypeError(f"remember takes DSL machines (@machine), not {m!r}")

    def _remember(self, m: object) -> bool:
        identity = getattr(m, "identity", None)
        if not (isinstance(identity, str) and machine_schemas(m) is not None):
            return False
        if self.local.get(identity) is not m:
            self.local[identity] = m
            self._converters.clear()
            self._epoch += 1
        self.classes.add_machine(m, given=True)
        return True

    def converter(self, code: LoadedModule, prefer: tuple[str, ...] = ()) -> Converter:
        """The conversions for ``code`` with the classes known now (rebuilt when more are),
        those of modules ``prefer`` first. When some record has no class, the program's own
        compiled DSL machine of this code (if it has one) is looked for, once."""
        key = (code.identity, prefer)
        cached = self._converters.get(key)
        if cached is not None and cached[0] == self.classes.version:
            return cached[1]
        converter = converter_for(code, self.local.get(code.identity), self.classes, prefer)
        if converter.lacking and code.identity not in self._searched:
            self._searched.add(code.identity)
            found = compiled_machine(code.identity, code.data)
            if found is not None:
                self.local[code.identity] = found
                self.classes.add_machine(found, given=False)
                self.classes.learn_module(found.__module__)  # the module that defines it
                converter = converter_for(code, found, self.classes, prefer)
        self._converters[key] = (self.classes.version, converter)
        return converter

    def to_python(
        self, machine: str, code: LoadedModule, value: Value, role: str, prefer: tuple[str, ...]
    ) -> Any:
        """A state or output of ``code`` as a Python value, by the classes of modules ``prefer``
        first; warns once per code whose records lack user classes (ClassesUnknownWarning)."""
        converter = self.converter(code, prefer)
        if converter.lacking and code.identity not in self._warned:
            self._warned.add(code.identity)
            warnings.warn(lacking_message(machine, converter), ClassesUnknownWarning, _level())
        return converter.from_core(value, role)

    # --- flows: the building blocks -----------------------------------------------------------

    def fetch(self, identity: str) -> Flow[bytes]:
        reply = yield GetModule(self.request_id(), identity)
        return expect(reply, ModuleReply).module

    def code_of(self, identity: str) -> Flow[LoadedModule]:
        code = self.codes.get(identity)
        if code is None:
            code = self.codes[identity] = load_module((yield from self.fetch(identity)))
        return code

    def status_raw(self, machine: str, key: str | None = None) -> Flow[StatusReply]:
        reply = expect((yield Status(self.request_id(), machine, key)), StatusReply)
        if key is None:  # a keyed instance may still run older code than the machine
            self.running[machine] = reply.identity
        return reply

    def running_code(self, machine: str, refresh: bool) -> Flow[LoadedModule]:
        identity = self.running.get(machine)
        if identity is None or refresh:
            identity = (yield from self.status_raw(machine)).identity
        return (yield from self.code_of(identity))

    # --- flows: the API -----------------------------------------------------------------------

    def send(self, machine: str, value: Any, key: str | None = None) -> Flow[Any]:
        """Encode for the code last seen running; if that has changed (the node refuses a stale
        encoding, or the value does not convert), refresh and encode by names again, once.
        With ``key``, to that keyed instance (made by its first input)."""
        prefer = self.classes.learn_value(value)  # the reply in the value's own classes
        return (yield from self.send_learned(machine, value, key, prefer))

    def send_learned(
        self, machine: str, value: Any, key: str | None, prefer: tuple[str, ...]
    ) -> Flow[Any]:
        """:meth:`send` once the value's classes are learned (``prefer``: their modules)."""
        code = yield from self.running_code(machine, refresh=False)
        try:
            data = self._encoded(code, prefer, value)
        except ValueTypeError:
            if has_names(code):  # perhaps encoded for old code: look again
                return (yield from self.resend(machine, value, key, prefer, None))
            raise
        # The output is all this returns: the node need not encode and send the state.
        reply = yield SendChecked(self.request_id(), machine, code.identity, data, False, key)
        return (yield from self.answer(machine, value, key, prefer, code, reply))

    def answer(
        self,
        machine: str,
        value: Any,
        key: str | None,
        prefer: tuple[str, ...],
        code: LoadedModule,
        reply: object,
    ) -> Flow[Any]:
        """The rest of :meth:`send` once the node answered ``value`` encoded for ``code``: the
        output, or, if the node refused the encoding as stale (``wrong_version``), the value
        encoded by names again for the code running now, and sent once more."""
        stale = isinstance(reply, Error) and reply.code == ErrorCode.WRONG_VERSION
        if stale and has_names(code):
            return (yield from self.resend(machine, value, key, prefer, cast(Error, reply)))
        return self.output_of(machine, code, prefer, reply)

    def resend(
        self,
        machine: str,
        value: Any,
        key: str | None,
        prefer: tuple[str, ...],
        stale: Error | None,
    ) -> Flow[Any]:
        """:meth:`send`'s second and last attempt, for the code running now: after a
        ``wrong_version`` reply (``stale``), or a value that did not convert (None)."""
        code = yield from self.running_code(machine, refresh=True)
        converter = self.converter(code, prefer)  # before the refusal, as it always was
        if stale is not None and not has_names(code):
            raise reply_error(stale, False)  # no names: no safe way to re-encode
        data = self._encoded(code, prefer, value, converter)
        reply = yield SendChecked(self.request_id(), machine, code.identity, data, False, key)
        return self.output_of(machine, code, prefer, reply)

    def _encoded(
        self,
        code: LoadedModule,
        prefer: tuple[str, ...],
        value: Any,
        converter: Converter | None = None,
    ) -> bytes:
        """``value`` as input bytes of ``code``, converted for the modules ``prefer``."""
        sig = code.machine
        assert sig is not None
        converter = converter or self.converter(code, prefer)
        return encode_value(converter.to_core(value, "input"), sig.input)

    def output_of(
        self, machine: str, code: LoadedModule, prefer: tuple[str, ...], reply: object
    ) -> Any:
        """The output a reply to an input encoded for ``code`` carries, as a Python value (its
        error raised)."""
        sig = code.machine
        assert sig is not None
        output = expect(reply, Output).output
        return self.to_python(machine, code, decode_value(output, sig.output), "output", prefer)

    def lane(self, machine: str, prefer: tuple[str, ...]) -> Lane | None:
        """What :meth:`send` works out before it sends, kept for ``machine``'s running code and
        values of the modules ``prefer``: a :class:`Lane`, if that code is known and loaded,
        converts with no warning to give, and its name is one the protocol carries; None
        otherwise (:meth:`send_learned` then does it all). A lane is rebuilt when the code
        running, the classes known (``classes.version``) or the machines remembered change."""
        if type(machine) is not str:
            return None
        identity = self.running.get(machine)
        lane = self._lanes.get((machine, prefer))
        if lane is not None and lane.identity == identity and self.current(lane):
            return lane
        if identity is None:
            return None
        code = self.codes.get(identity)
        if code is None:
            return None
        converter = self.converter(code, prefer)  # as send_learned calls it, at this point
        sig = code.machine
        if sig is None or (converter.lacking and identity not in self._warned):
            return None  # the long way asserts, or warns once
        try:
            check_machine_name(machine)
        except HotswapError:
            return None
        parts = send_checked_parts(machine, identity, None)
        if parts is None:
            return None
        if len(self._lanes) >= _LANES_KEPT:
            self._lanes.clear()
        lane = Lane(self, machine, code, converter, parts)
        self._lanes[(machine, prefer)] = lane
        return lane

    def start(self, machine: str, value: Any, key: str | None) -> Input | Flow[Any]:
        """The clients' hot path for :meth:`send`, up to the request: the value's classes
        learned, its lane found and the value encoded with it, an :class:`Input`; or, where
        anything is unusual (no lane yet, a value that does not convert), the flow from that
        step on, which the caller runs."""
        prefer = self.classes.learn_value(value)
        lane = self.lane(machine, prefer)
        if lane is None:
            return self.send_learned(machine, value, key, prefer)
        try:
            data = lane.encode(value)
        except ValueTypeError:
            if not lane.names:
                raise
            return self.resend(machine, value, key, prefer, None)
        return Input(machine, value, key, prefer, lane, self.request_id(), data)

    def finish(self, sent: Input, reply: object) -> tuple[bool, Any]:
        """The hot path's end: ``(True, the output)`` if ``reply`` is an output the lane
        converts as :meth:`to_python` would; else ``(False, the flow from that step on)``,
        which the caller runs (``wrong_version``, a refusal, classes learned meanwhile)."""
        lane = sent.lane
        if type(reply) is Output and self.current(lane):
            return True, lane.output(reply.output)
        code = lane.code
        return False, self.answer(sent.machine, sent.value, sent.key, sent.prefer, code, reply)

    def current(self, lane: Lane) -> bool:
        """Whether ``lane``'s conversions are still those :meth:`to_python` would use (no
        class or machine learned since it was made)."""
        return lane.version == self.classes.version and lane.epoch == self._epoch

    def upgrade(
        self,
        machine: str,
        upgrade: Upgrade,
        trial: int = 0,
        trial_seconds: int = 0,
        check_all: bool = False,
    ) -> Flow[Upgraded]:
        """The reply's ``notes`` hold what the node noted and, for a derived migration, which
        value each new field got. ``check_all``: the node first runs the migration on every
        keyed instance, and refuses if it traps on any."""
        _check_count("trial", trial)
        _check_count("trial_seconds", trial_seconds)
        if upgrade.generation is not None:
            _check_count("generation", upgrade.generation)
        parts = yield from self.upgrade_parts(upgrade)
        generation = upgrade.generation
        if self.signer is not None:  # the signature binds the generation: send it too
            if generation is None:
                generation = (yield from self.status_raw(machine)).generation
            if generation is None:
                msg = f"the node reports no generation of {machine}: it cannot check signatures"
                raise HotswapError(msg)
        request = UpgradeRequest(
            self.request_id(),
            machine,
            parts.expected,
            parts.module,
            parts.migration,
            generation=generation,
            rename=upgrade.rename,
            trial=trial,
            trial_seconds=trial_seconds,
            check_all=check_all,
        )
        request = self._signed(request, {machine: generation})
        reply = expect((yield request), Upgraded)
        self.running[machine] = reply.new
        if parts.notes:
            reply = replace(reply, notes=parts.notes + reply.notes)
        return reply

    def dry_run(self, machine: str, upgrade: Upgrade, inputs: int) -> Flow[DryRunOutcome]:
        parts = yield from self.upgrade_parts(upgrade)
        expected, new = parts.expected, parts.module
        _check_count("inputs", inputs, low=1)
        request = DryRun(
            self.request_id(),
            machine,
            expected,
            new,
            parts.migration,
            inputs,
            upgrade.rename,
            upgrade.generation,
        )
        report = expect((yield request), DryRunReport)
        old_code = yield from self.code_of(expected)
        new_code = load_module(new)
        shown = tuple(
            Rehearsed(
                d.seq,
                _show(old_code, "input", d.input),
                _show(old_code, "output", d.old),
                None if d.trap else _show(new_code, "output", d.new),
                d.trap,
            )
            for d in report.differences
        )
        notes = parts.notes + report.notes  # how a derived migration filled new fields, too
        return DryRunOutcome(report.replayed, report.differing, report.traps, shown, notes)

    def end_trial(self, machine: str, revert: bool) -> Flow[TrialEnded]:
        rid = self.request_id()
        reply = expect(
            (yield Revert(rid, machine) if revert else Confirm(rid, machine)), TrialEnded
        )
        self.running[machine] = reply.identity
        return reply

    def release(self, upgrades: Mapping[str, Upgrade]) -> Flow[Released]:
        items = []
        for name in sorted(upgrades):
            try:
                parts = yield from self.upgrade_parts(upgrades[name])
            except UpgradeRejected as e:  # name the machine: a release spans several
                raise UpgradeRejected(e.code, f"{name}: {e}") from None
            items.append(ReleaseItem(name, parts.expected, parts.module, parts.migration))
        request = Release(self.request_id(), tuple(items))
        if self.signer is not None:  # one signature over every item, at today's generations
            generations: dict[str, int | None] = {}
            for item in items:
                generations[item.machine] = (yield from self.status_raw(item.machine)).generation
                if generations[item.machine] is None:
                    msg = f"the node reports no generation of {item.machine}: it cannot check "
                    raise HotswapError(msg + "signatures")
            request = self._signed(request, generations)
        reply = expect((yield request), Released)
        for entry in reply.machines:
            self.running[entry.machine] = entry.new
        return reply

    def rollback(
        self, machine: str, migration: object | None, check_all: bool = False
    ) -> Flow[Upgraded]:
        status = yield from self.status_raw(machine)
        target = rollback_target(status)
        module = yield from self.fetch(target)
        back = Upgrade(status.identity, module, migration)
        return (yield from self.upgrade(machine, back, check_all=check_all))

    def instances(
        self, machine: str, prefix: str | None, after: str | None, limit: int
    ) -> Flow[InstancePage]:
        _check_count("limit", limit, low=1)
        request = InstancesRequest(self.request_id(), machine, limit, prefix or None, after)
        reply = expect((yield request), InstancesReply)
        return InstancePage(reply.keys, reply.more)

    def delete(self, machine: str, key: str) -> Flow[Deleted]:
        return expect((yield Delete(self.request_id(), machine, key)), Deleted)

    def deploy(self, name: str, machine: object) -> Flow[Deployed]:
        self._remember(machine)
        data = module_bytes(machine, f"the machine {name!r}")
        request = self._signed(Deploy(self.request_id(), name, data), {})
        return expect((yield request), Deployed)

    def status(self, machine: str, key: str | None = None) -> Flow[MachineStatus]:
        reply = yield from self.status_raw(machine, key)
        code = yield from self.code_of(reply.identity)
        state_type = decode_type(reply.state_type)
        state = self.to_python(machine, code, decode_value(reply.state, state_type), "state", ())
        return MachineStatus(
            reply.machine,
            reply.identity,
            decode_type(reply.input_type),
            state_type,
            decode_type(reply.output_type),
            state,
            reply.inputs,
            reply.history,
            reply.generation,
            reply.trial,
            reply.trial_until,
            reply.key,
            reply.instances,
            reply.codes,
            reply.trapped,
            reply.sweep,
        )

    def machines(self) -> Flow[list[tuple[str, str]]]:
        reply = expect((yield Machines(self.request_id())), MachinesReply)
        return [(m.name, m.identity) for m in reply.machines]

    def upgrade_parts(self, upgrade: Upgrade) -> Flow[Parts]:
        """``(expected, module, migration)`` for ``upgrade``, deriving the migration when there
        is none (fetching the expected code if the upgrade does not bring it)."""
        self._remember(upgrade.old)  # the classes of machines given: identities, bytes are not
        self._remember(upgrade.new)
        expected = upgrade.expected_identity()
        new = module_bytes(upgrade.new, "the new machine")
        if upgrade.migration is not None:
            upgrade.check_declared(expected, module_identity(new))
            return Parts(expected, new, module_bytes(upgrade.migration, "the migration"))
        old = local_code(upgrade.old)
        if old is None:
            old = yield from self.code_of(expected)
        module, notes = derive_with_notes(old, load_module(new), upgrade.old, upgrade.new)
        return Parts(expected, new, module, tuple(f"derived: {note}" for note in notes))


def _check_count(what: str, value: object, low: int = 0) -> None:
    """A count the caller gives (inputs, seconds, a generation): an int, not a bool, >= low."""
    if type(value) is not int or not low <= value < 2**63:
        raise HotswapError(f"{what} must be a whole number from {low} to 2**63 - 1, not {value!r}")


def _show(code: LoadedModule, role: str, data: bytes) -> str:
    """A value of ``code``'s ``role`` as text: by name if it can, else in the seed's syntax."""
    sig = code.machine
    assert sig is not None
    value = decode_value(data, getattr(sig, role))
    try:
        return render_by_name(value, role, code)
    except HotswapError:
        return render(value, getattr(sig, role))


def _level() -> int:
    """The ``stacklevel`` of the first frame outside the client package: the user's call."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "hotswap.client"
    ):
        frame, level = frame.f_back, level + 1
    return level
