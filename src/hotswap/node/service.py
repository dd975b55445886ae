"""The node's application, sans-IO: requests in, replies out, with no sockets and no asyncio.

:class:`Service` turns one request into one reply: registry calls (the rules), store calls
(the log) and reply encoding. :class:`Conversation` is one client's connection as the service
sees it: it feeds received bytes to the protocol's :class:`ServerConnection` and answers each
event, returning the frames to send once the store has committed. The asyncio server
(``server.py``) and the in-memory node (``memory.py``) are thin shells around these two, so
everything a node decides is decided here, once, and testable without a network.

"Upgrade" here is the wire request (``UpgradeRequest``); the registry prepares a ``Swap`` for
it and the reply is ``Upgraded``.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from hotswap.auth import Credentials, Principal
from hotswap.cam.loaded import is_loaded, load_module
from hotswap.cam.values import encode_type, encode_value
from hotswap.changes import claim_of
from hotswap.errors import (
    HotswapError,
    InternalError,
    NodeError,
    ProtocolError,
    StoreError,
    UpgradeRejected,
)
from hotswap.names.section import module_schemas
from hotswap.node.instances import (
    DEFAULT_CACHE,
    DEFAULT_SWEEP_RATE,
    Instances,
    check_key,
    generation_code,
)
from hotswap.node.registry import (
    DEFAULT_MAX_INPUT,
    Machine,
    Registry,
    TrialReverted,
    load_machine_code,
)
from hotswap.node.rehearse import DryRunResult, TrialEnd
from hotswap.node.store import PART_BYTES, Store
from hotswap.node.trace import Trace
from hotswap.protocol.codec import SCHEMA_OF
from hotswap.protocol.connection import FrameTooLarge, ServerConnection
from hotswap.protocol.events import (
    MAX_TRAPPED_LISTED,
    NEED_DATA,
    CodeCount,
    Confirm,
    ConnectionClosed,
    Delete,
    Deleted,
    Deploy,
    Deployed,
    DryRun,
    DryRunDifference,
    DryRunReport,
    Error,
    ErrorCode,
    GetModule,
    Goodbye,
    Hello,
    HistoryEntry,
    InstancesReply,
    InstancesRequest,
    MachineEntry,
    Machines,
    MachinesReply,
    ModuleReply,
    Output,
    Release,
    Released,
    ReleasedEntry,
    Reply,
    Request,
    Revert,
    Send,
    SendChecked,
    Status,
    StatusReply,
    SweepProgress,
    TrappedInstance,
    TrialEnded,
    Upgraded,
    UpgradeRequest,
    Welcome,
)
from hotswap.protocol.fastpath import Input
from hotswap.signing import SignatureProblem, TrustedKeys, digest

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str = "hotswap-node"
    max_frame: int = 64 * 1024 * 1024
    #: Connections with no request for this long are closed (``--idle-timeout``; None: never).
    idle_timeout: float | None = 600.0
    #: Connections beyond this many are refused at once (``--max-connections``).
    max_connections: int = 1024
    #: Bytes of unfinished frames the node holds for all its connections together
    #: (``--max-buffered``): the connection whose bytes pass it is closed.
    max_buffered: int = 256 * 1024 * 1024
    #: A client that has not said hello within this many seconds is disconnected.
    handshake_timeout: float = 10.0
    #: How many keyed instances stay live in memory (``--cache``): the node's memory depends
    #: on this, not on the number of instances.
    cache: int = DEFAULT_CACHE
    #: Instances the sweeper migrates a second to the running code (``--sweep-rate``; 0: off).
    sweep_rate: int = DEFAULT_SWEEP_RATE
    #: The most bytes of one input (``--max-input``), refused before decoding.
    max_input: int = DEFAULT_MAX_INPUT
    #: The keys a change of code must be signed by (``--trust``); None: no signature needed.
    trust: TrustedKeys | None = None
    #: Who may connect, and with which roles (``--auth``: the data directory's credentials
    #: file); None: anyone who reaches the port may do anything.
    credentials: Credentials | None = None
    #: How long the served node polls its one connection for the next request after
    #: answering it, before its event loop sleeps (seconds; ``--spin``, whose default is
    #: ``server.SPIN``; 0 here: never, as for a node in a process that also runs its
    #: clients, which polling would keep from the interpreter).
    spin: float = 0.0


#: How many inputs of a connection's buffer the node reads ahead, for the checkpoints of the
#: instances they go to (``Service.prefetch``): one query for up to this many keys, which SQLite
#: answers in about 3.4 us a key where a query of one key costs about 8 us (1,000,000 rows).
READ_AHEAD = 256
#: A connection reads ahead when it receives this many bytes at once (two small inputs): with
#: less, there is one input to take at most, and looking costs a lone client's input 1 us. (A
#: lone larger input looks, and finds one frame: ``look_ahead`` reads nothing then.)
READ_AHEAD_FROM = 64

#: At most this many refusals of each kind are traced a second (the rest are counted): those
#: of connections before their hello (strangers: failed TLS handshakes, bad tokens, the
#: connection limit), and those of principals (role refusals, refused changes of code).
REFUSALS_TRACED = 100


def _notes(notes: tuple[str, ...]) -> tuple[str, ...]:
    """Notes as the wire carries them: at most 64, each at most 1024 characters."""
    return tuple(note if len(note) <= 1024 else note[:1021] + "..." for note in notes[:64])


def error_reply(rid: int, error: NodeError) -> Error:
    """The reply for a refusal, with the fields a program acts on (version 2 peers get them)."""
    message = str(error)
    if len(message) > 65536:  # the protocol's limit: a huge type's name list must not crash
        message = message[:65533] + "..."
    trap = None if error.trap is None else error.trap[:256]
    return Error(rid, ErrorCode(error.code), message, trap, error.running, error.generation)


class Service:
    """One registry and its store: applies requests and makes them durable."""

    def __init__(
        self, registry: Registry, store: Store, trace: Trace, config: NodeConfig | None = None
    ) -> None:
        self.registry = registry
        self.store = store
        self.trace = trace
        self.config = config or NodeConfig()
        self._digests: dict[int, tuple[bytes, str]] = {}
        #: The id of the trusted key whose signature the last :meth:`unsigned` accepted.
        self.signer: str | None = None
        #: Refused changes traced: (the second, how many traced in it, how many not).
        #: (second, traced, untraced) for refusals before a hello, and for principals'.
        self._refusals = {True: (0, 0, 0), False: (0, 0, 0)}
        #: No timed trial ends before this (infinity: none runs); checked before each request.
        self._due = registry.next_deadline() or math.inf
        self.instances = Instances(store, registry.fuel, self.config.cache, store.replay_window)
        for machine in registry.machines.values():
            self.instances.recover(machine)

    def tick(self, now: float) -> bool:
        """Make permanent the trials whose time is up, logging each; whether any was (then
        the caller commits). The server calls it on a timer and before each request."""
        self.flush_refusals()
        ended = self.registry.expire_trials(now)
        for name, end in ended:
            self.store.log_trial_end(self.registry.get(name), end, now)
            self.trace.trial_ended(name, end)
        self._due = self.registry.next_deadline() or math.inf
        return bool(ended)

    def _digest(self, data: bytes) -> str:
        """``signing.digest`` of module bytes, remembered for the few requests in flight: a
        held upgrade is checked when it is prepared and again when it is applied (the
        machine's generation may have moved in between), and hashing 16 MiB takes a while."""
        known = self._known_digest(data)
        if known is not None:
            return known
        if len(self._digests) >= 8:
            self._digests.clear()
        value = digest(data)
        self._digests[id(data)] = (data, value)
        return value

    def _known_digest(self, data: bytes) -> str | None:
        hit = self._digests.get(id(data))
        return hit[1] if hit is not None and hit[0] is data else None

    def unsigned(self, event: Request) -> str | None:
        """Why ``event``, a change of code, may not be made on this node for want of a valid
        signature by a trusted key (``--trust``), or None (then :attr:`signer` names the key
        that signed it). Checked before anything of the change is decoded, and again when it
        is applied."""
        problem, self.signer = self.signature(event)
        return problem

    def signature(self, event: Request) -> tuple[str | None, str | None]:
        """What :meth:`unsigned` finds, ``(why not, the signing key's id)``, changing nothing:
        the loader thread asks it too, so that a change refused for its signature is not
        loaded (and the digests of its modules, which take 11 ms per 16 MiB, are worked out
        there, off the event loop)."""
        trusted = self.config.trust
        if trusted is None or not isinstance(event, UpgradeRequest | Release | Deploy):
            return None, None

        def generation(name: str) -> int | None:
            machine = self.registry.machines.get(name)
            return None if machine is None else machine.generation

        try:
            claim = claim_of(event, generation, self._digest)
        except SignatureProblem as e:
            return str(e), None
        if claim is None:
            return None, None  # refused as unknown, whatever it carries
        try:
            return None, trusted.check(claim, event.signature)
        except SignatureProblem as e:
            return str(e), None

    def _hashed(self, event: Request) -> bool:
        """Whether the digests of ``event``'s modules are cheap to have now: each small, or
        worked out already (the loader thread works out the others)."""
        if self.config.trust is None or not isinstance(event, UpgradeRequest | Release | Deploy):
            return True
        return all(
            len(data) <= PART_BYTES or self._known_digest(data) is not None
            for data in _carried(event)
        )

    def may_trace_refusal(self, before_hello: bool = False) -> bool:
        """Whether one more refusal may be traced this second: at most
        :data:`REFUSALS_TRACED` a second of refusals ``before_hello`` (of connections that
        have not authenticated: failed TLS handshakes, unknown tokens, the connection limit),
        and as many of the rest (what principals were refused: roles, changes of code), so
        that nobody floods the trace, and strangers cannot hide a principal's refusals; the
        rest are counted, and the count said once the second is over (at the next refusal or
        the next tick)."""
        self.flush_refusals()
        at, noted, untraced = self._refusals[before_hello]
        if noted >= REFUSALS_TRACED:
            self._refusals[before_hello] = (at, noted, untraced + 1)
            return False
        self._refusals[before_hello] = (at, noted + 1, untraced)
        return True

    def flush_refusals(self) -> None:
        """Once a second has passed: say how many refusals it left untraced."""
        second = int(time.monotonic())
        for before_hello, (at, _, untraced) in list(self._refusals.items()):
            if second != at:
                if untraced:
                    whose = "before a hello" if before_hello else "of principals"
                    self.trace.note(f"({untraced:,} more refusals {whose} not traced)")
                self._refusals[before_hello] = (second, 0, 0)

    def _refused(
        self, event: Request, by: str | None, why: str, seed: tuple[str, str] | None = None
    ) -> None:
        """Note a refused change of code in the trace with who tried (the audit trail keeps
        accepted changes only: a refusal changes nothing, the store included): ``seed``, the
        seed's ``Upgrade rejected`` line (code, reason), then, on a node that knows someone
        (``--auth`` or ``--trust``), who tried. Within the rate of :meth:`may_trace_refusal`."""
        if not self.may_trace_refusal():
            return
        if seed is not None:
            self.trace.rejected(*seed)
        if by is None and self.config.credentials is None and self.config.trust is None:
            return
        if isinstance(event, Release):
            target = ", ".join(repr(item.machine) for item in event.items)
        else:
            target = repr(getattr(event, "machine", "?"))
        why = why if len(why) <= 300 else why[:297] + "..."
        what = SCHEMA_OF[type(event)].name
        self.trace.note(f"Refused {what} of {target} by {by or '-'}: {why}")

    def handle(self, event: Request, principal: Principal | None = None) -> Reply:
        """Apply one request of ``principal`` (None: the node does not authenticate); the
        reply (possibly an Error) is what the client will receive. Raises
        :class:`StoreError` if logging an upgrade fails: the node must then stop. A change of
        code records who made it, and the key that signed it (the audit trail)."""
        if self._due <= time.time():
            self.tick(time.time())  # a trial whose time is up ends before this request
        by = None if principal is None else principal.name[:256]
        signer = None
        if self.config.trust is not None and isinstance(event, UpgradeRequest | Deploy | Release):
            problem = self.unsigned(event)
            if problem is not None:
                seed = (ErrorCode.FORBIDDEN, problem)
                self._refused(event, by, f"forbidden: {problem}", seed)
                return Error(event.id, ErrorCode.FORBIDDEN, f"change refused: {problem}")
            signer = self.signer
        if isinstance(event, UpgradeRequest | Release | Deploy):
            failed = self.store.staging_error(_carried(event))
            if failed is not None:  # its modules could not be stored: nothing is changed
                self._refused(event, by, f"overloaded: {failed}")
                why = f"the change was not made: {failed}; try again later"
                return Error(event.id, ErrorCode.OVERLOADED, why)
        match event:
            case Send(id=rid, machine=name, input=data, state=want, key=key):
                return _output(rid, self.take(rid, name, None, data, want, key))
            case SendChecked(id=rid, machine=name, code=code, input=data, state=want, key=key):
                return _output(rid, self.take(rid, name, code, data, want, key))
            case UpgradeRequest(id=rid, machine=name, expected=expected, module=new, migration=mig):
                check = None
                if event.check_all and name in self.registry.machines:
                    target = self.registry.machines[name]
                    check = lambda swap: self.instances.check_all(target, swap)  # noqa: E731
                try:
                    swap = self.registry.upgrade(
                        name,
                        expected,
                        new,
                        mig,
                        generation=event.generation,
                        rename=event.rename,
                        trial=event.trial,
                        trial_seconds=event.trial_seconds,
                        check=check,
                        by=by,
                        signer=signer,
                    )
                except UpgradeRejected as e:
                    self._refused(event, by, f"{e.code}: {e.reason}", (e.code, e.reason))
                    return error_reply(rid, e)
                except NodeError as e:
                    self._refused(event, by, f"{e.code}: {e}")
                    return error_reply(rid, e)
                machine = self.registry.get(name)
                if event.trial_seconds:  # a timed trial began: its end is the next to watch
                    self._due = self.registry.next_deadline() or math.inf
                self.store.log_upgrade(machine, swap)
                self.trace.upgraded(swap.notes, event.trial, event.trial_seconds)
                return Upgraded(
                    rid, swap.old, swap.new.identity, machine.generation, _notes(swap.notes)
                )
            case Release(id=rid, items=items):
                wanted = [(i.machine, i.expected, i.module, i.migration) for i in items]
                try:
                    done = self.registry.release(wanted, by=by, signer=signer)
                except UpgradeRejected as e:
                    self._refused(event, by, f"{e.code}: {e.reason}", (e.code, e.reason))
                    return error_reply(rid, e)
                for swap in done:
                    self.store.log_upgrade(self.registry.get(swap.machine), swap)
                self.trace.released([(s.machine, s.notes) for s in done])
                swapped = tuple(ReleasedEntry(s.machine, s.old, s.new.identity) for s in done)
                return Released(rid, swapped)
            case Status(id=rid, machine=name, key=None):
                return self._status(rid, name)
            case Status(id=rid, machine=name, key=str(key)):
                return self._keyed_status(rid, name, key)
            case InstancesRequest(id=rid, machine=name):
                try:
                    machine = self.registry.get(name)
                    keys, more = self.instances.page(
                        machine, event.prefix, event.after, event.limit
                    )
                except NodeError as e:
                    return error_reply(rid, e)
                return InstancesReply(rid, name, tuple(keys), more)
            case Delete(id=rid, machine=name, key=key):
                try:
                    gone = self.instances.delete(self.registry.get(name), check_key(key))
                except NodeError as e:
                    return error_reply(rid, e)
                return Deleted(rid, name, key, gone.inputs)
            case Deploy(id=rid, machine=name, module=data):
                reply = self._deploy(rid, name, data, by, signer)
                if isinstance(reply, Error):
                    self._refused(event, by, f"{reply.code}: {reply.message}")
                return reply
            case Machines(id=rid):
                entries = tuple(
                    MachineEntry(name, self.registry.machines[name].identity)
                    for name in sorted(self.registry.machines)
                )
                return MachinesReply(rid, entries)
            case GetModule(id=rid, identity=identity):
                running = (m.code for m in self.registry.machines.values())
                module = next((c.data for c in running if c.identity == identity), None)
                if module is None:  # not running: read it (a running one costs no copy)
                    try:
                        module = self.store.module(identity)
                    except StoreError as e:  # a damaged module: said, and nothing changed
                        return Error(rid, ErrorCode.INTERNAL, str(e))
                if module is None:
                    return Error(rid, ErrorCode.UNKNOWN_MODULE, f"no module {identity}")
                return ModuleReply(rid, module)
            case DryRun(id=rid, machine=name, expected=expected, module=new, migration=mig):
                try:
                    result = self.registry.dry_run(
                        name,
                        expected,
                        new,
                        mig,
                        event.inputs,
                        rename=event.rename,
                        generation=event.generation,
                    )
                except NodeError as e:
                    return error_reply(rid, e)
                return self._report(rid, name, new, result)
            case Confirm(id=rid, machine=name) | Revert(id=rid, machine=name):
                try:
                    if isinstance(event, Confirm):
                        ended = self.registry.confirm(name)
                    else:
                        ended = self.registry.revert(name, by=by)
                except NodeError as e:
                    self._refused(event, by, f"{e.code}: {e}")
                    return error_reply(rid, e)
                return self._trial_ended(rid, name, ended, by)
        raise NodeError(ErrorCode.BAD_REQUEST, f"unexpected {type(event).__name__}")

    def prefetch(self, inputs: Iterable[tuple[int, Input]]) -> None:
        """Read ahead, in one query a machine, the checkpoints of the keyed instances that
        ``inputs`` (read ahead by ``ServerConnection.look_ahead``) go to and that are not live,
        where each would be a read of its own when its input comes (:meth:`take`). Only a
        hint: what it reads is what those reads would find, and a key it reads for nothing
        costs a row read."""
        keys: dict[str, list[str]] = {}
        machines = self.registry.machines
        for _, fields in inputs:
            key = fields[5]
            code = fields[2]
            if code is not None:
                machine = machines.get(fields[1])
                if machine is not None and code != machine.identity:
                    continue  # refused as other code's (wrong_version) before it is read
            if key is not None:  # of 1 to 256 bytes (read_request checks)
                name = fields[1]
                named = keys.get(name)
                if named is None:
                    keys[name] = [key]
                else:
                    named.append(key)
        for name, named in keys.items():
            machine = machines.get(name)
            if machine is not None and len(named) > 1:
                self.instances.prefetch(machine, named)

    def take(
        self, rid: int, name: str, code: str | None, data: bytes, want_state: bool, key: str | None
    ) -> tuple[bytes, bytes] | Reply:
        """:meth:`handle` of a ``send`` (``code`` None) or ``send_checked``, to the default
        instance (``key`` None) or a keyed one: the encoded output and state (``b""`` unless
        ``want_state``: then the state is never encoded) of the input applied, or the reply
        (an Error). The connection's hot path (``ServerConnection.next_input``) calls it
        with the fields it read, no event made."""
        if self._due <= time.time():
            self.tick(time.time())  # a trial whose time is up ends before this request
        if key is None:
            return self._applied(rid, name, data, code, want_state)
        return self._keyed_applied(rid, name, key, data, code, want_state)

    def _applied(
        self, rid: int, name: str, data: bytes, code: str | None, want_state: bool
    ) -> tuple[bytes, bytes] | Reply:
        """One input to the default instance of ``name`` (:meth:`take`)."""
        registry = self.registry
        try:
            machine = registry.running(name, code)
            running = machine.code
            output, confirmed = registry.apply(machine, registry.decode_input(machine, data))
        except TrialReverted as e:  # the input trapped on a trial's code: it was taken back
            self._trial_ended(rid, name, e.ended)
            return error_reply(rid, e)
        except NodeError as e:
            return error_reply(rid, e)
        self.store.log_input(machine, data, running.identity)
        if self.trace.enabled:
            self.trace.step(running, output, machine.state)
        if confirmed:  # the trial's last input: the upgrade is permanent
            self._trial_ended(rid, name, TrialEnd(False, machine.identity))
        codecs = running.codecs
        return codecs.output(output), codecs.state(machine.state) if want_state else b""

    def _keyed_applied(
        self, rid: int, name: str, key: str, data: bytes, code: str | None, want_state: bool
    ) -> tuple[bytes, bytes] | Reply:
        """One input to the keyed instance ``key`` (made by it if new, migrated first)."""
        registry = self.registry
        try:
            machine = registry.running(name, code)
            check_key(key)
            value = registry.decode_input(machine, data)
            output, instance = self.instances.step(machine, key, value, data)
        except NodeError as e:
            return error_reply(rid, e)
        if self.trace.enabled:
            self.trace.step(machine.code, output, instance.state)
        codecs = machine.code.codecs
        return codecs.output(output), codecs.state(instance.state) if want_state else b""

    def _keyed_status(self, rid: int, name: str, key: str) -> Reply:
        """One keyed instance: its code's types, its state and inputs (migrated if it can)."""
        try:
            machine = self.registry.get(name)
            instance, trap = self.instances.status(machine, check_key(key))
        except NodeError as e:
            return error_reply(rid, e)
        sig = instance.code.machine
        assert sig is not None
        trapped = () if trap is None else (TrappedInstance(key, trap[:1024]),)
        return StatusReply(
            rid,
            name,
            instance.code.identity,
            encode_type(sig.input),
            encode_type(sig.state),
            encode_type(sig.output),
            encode_value(instance.state, sig.state),
            instance.inputs,
            self._history(machine),
            instance.generation,
            key=key,
            trapped=trapped,
        )

    def _deploy(
        self, rid: int, name: str, data: bytes, by: str | None = None, signer: str | None = None
    ) -> Reply:
        """Add machine ``name`` on ``data``, logged (with who: ``by``, ``signer``); again on
        the code it runs: nothing."""
        try:
            code = load_machine_code(data)
            running = self.registry.machines.get(name)
            if running is not None:
                if running.identity == code.identity:
                    return Deployed(rid, name, code.identity, False)
                raise NodeError(
                    ErrorCode.BAD_REQUEST,
                    f"machine {name!r} already runs {running.identity[:12]}, not "
                    f"{code.identity[:12]}: upgrade it to change its code",
                )
            machine = self.registry.start(name, code, by=by, signer=signer)
        except NodeError as e:
            return error_reply(rid, e)
        self.store.log_start(machine)
        self.trace.note(f"Deployed machine {name!r} on {code.identity[:12]}")
        return Deployed(rid, name, code.identity, True)

    def sweep(self, budget: int, seconds: float | None = None) -> int:
        """Let the sweeper migrate up to ``budget`` instances, machine by machine, for at most
        about ``seconds`` (None: no time limit); how many it looked at (the caller commits)."""
        until = None if seconds is None else time.perf_counter() + seconds
        looked = 0
        for machine in self.registry.machines.values():
            if looked >= budget or (until is not None and looked and time.perf_counter() > until):
                break
            looked += self.instances.sweep(machine, budget - looked, until)
        return looked

    def _history(self, machine: Machine) -> tuple[HistoryEntry, ...]:
        return tuple(
            HistoryEntry(c.identity, c.kind, c.seq, c.time, c.by, c.signer) for c in machine.history
        )

    def _trial_ended(
        self, rid: int, name: str, ended: TrialEnd, by: str | None = None
    ) -> TrialEnded:
        """Log and trace the end of a trial (``by`` whom; None: the node's own doing); the
        reply to a confirm or revert."""
        machine = self.registry.get(name)
        self.store.log_trial_end(machine, ended, time.time(), by)
        self.trace.trial_ended(name, ended)
        return TrialEnded(
            rid, name, machine.identity, machine.generation, ended.replayed, ended.skipped
        )

    def _report(self, rid: int, name: str, new: bytes, result: DryRunResult) -> DryRunReport:
        """A dry run's result in the wire's terms: values encoded at their code's types."""
        old_sig = self.registry.get(name).code.machine
        new_sig = load_module(new).machine  # loaded (and cached) by the checks already
        assert old_sig is not None and new_sig is not None
        differences = tuple(
            DryRunDifference(
                d.seq,
                encode_value(d.input, old_sig.input),
                encode_value(d.old, old_sig.output),
                b"" if d.new is None else encode_value(d.new, new_sig.output),
                d.trap[:1024],
            )
            for d in result.differences
        )
        notes = _notes(result.notes)
        return DryRunReport(
            rid, result.replayed, result.differing, result.traps, differences, notes
        )

    def _status(self, rid: int, name: str) -> Reply:
        try:
            machine = self.registry.get(name)
        except NodeError as e:
            return error_reply(rid, e)
        sig = machine.code.machine
        assert sig is not None
        history = self._history(machine)
        keyed = machine.keyed
        codes: dict[str, int] = {}
        for generation, count in keyed.counts.items():
            identity = generation_code(machine, generation)
            codes[identity] = codes.get(identity, 0) + count
        trapped = tuple(
            TrappedInstance(k, keyed.trapped[k][:1024])
            for k in heapq.nsmallest(MAX_TRAPPED_LISTED, keyed.trapped)
        )
        sweep = SweepProgress(
            self.config.sweep_rate,
            keyed.swept,
            self.instances.remaining(machine),
            len(keyed.trapped),
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
            machine.generation,
            None if machine.trial is None else machine.trial.left,
            None if machine.trial is None else machine.trial.until,
            instances=keyed.total,
            codes=tuple(CodeCount(i, n) for i, n in sorted(codes.items())),
            trapped=trapped,
            sweep=sweep,
        )

    def to_prepare(self, event: Request) -> list[bytes]:
        """The modules of an upgrade, release or dry run that are not loaded yet, when the
        request names the running code (one for other code, or without the signature the node
        requires, is refused at once, unloaded)."""
        # a change whose large modules are not hashed yet has its signature checked on the
        # loader thread, before they are loaded (``server._prepare_held``), and when applied
        if self._hashed(event) and self.unsigned(event) is not None:
            return []
        match event:
            case UpgradeRequest(machine=name, expected=expected, module=new, migration=mig) | (
                DryRun(machine=name, expected=expected, module=new, migration=mig)
            ):
                wanted = [(name, expected, new, mig)]
            case Release(items=items):
                wanted = [(i.machine, i.expected, i.module, i.migration) for i in items]
            case Deploy(module=data):  # for a machine that exists too: its identity decides
                return [] if is_loaded(data) else [data]
            case _:
                return []
        generation = getattr(event, "generation", None)
        todo: list[bytes] = []
        for name, expected, new, mig in wanted:
            if not self.registry.would_load(name, expected, generation):
                return []  # refused without loading anything: no need to wait
            todo += [data for data in (new, mig) if not is_loaded(data)]
        return todo

    def rehearse(self, event: Request) -> None:
        """On the worker thread, once a held request's modules are loaded: work out what its
        checks will ask of their names (decoding them, comparing them with the running code's)
        and keep it with the modules, so that the event loop finds it done."""
        match event:
            case UpgradeRequest(machine=name, module=new, migration=mig) | (
                DryRun(machine=name, module=new, migration=mig)
            ):
                wanted = [(name, new, mig)]
            case Release(items=items):
                wanted = [(i.machine, i.module, i.migration) for i in items]
            case Deploy(module=data):
                with contextlib.suppress(HotswapError):  # the reply will say what is wrong
                    module_schemas(load_module(data))
                return
            case _:
                return
        for name, new, mig in wanted:
            self.registry.rehearse_names(name, new, mig)

    def stage(self, event: Request, modules: list[bytes]) -> None:
        """On the worker thread, once a held request's modules are loaded: write those the
        store keeps in parts (above :data:`~hotswap.node.store.PART_BYTES`) into it now, off
        the event loop (``Store.stage``), so that applying the request writes their small rows
        alone there. Only for a change of code whose modules pass its checks (a dry run stores
        nothing, nor does an upgrade the checks refuse, nor a deploy for a machine that
        exists); a failure is the request's error (:meth:`handle`). Parts of a request that is
        then refused are deleted off the loop too once it is answered (``Store.unstage``)."""
        match event:
            case UpgradeRequest(machine=name, expected=expected, module=new, migration=mig):
                fits = self.registry.would_store(
                    name, expected, new, mig, generation=event.generation, rename=event.rename
                )
            case Release(items=items):
                fits = all(
                    self.registry.would_store(i.machine, i.expected, i.module, i.migration)
                    for i in items
                )
            case Deploy(machine=name):
                fits = name not in self.registry.machines
            case _:
                return
        if not fits:
            return
        large = [data for data in modules if len(data) > PART_BYTES]
        left = sum(len(data) for data in large)  # the disk must take them all
        for data in large:
            try:
                code = load_module(data)  # loaded already: at once
            except HotswapError:
                continue  # refused for it: nothing to store
            if not self.store.stage(data, code.data, room=left, known=self._known_digest(data)):
                return  # refused: the rest is not written either
            left -= len(data)

    def commit(self) -> None:
        """Make everything applied so far durable (:class:`StoreError` if the store refuses):
        the inputs, and the checkpoints of keyed instances made or migrated since the last."""
        for machine in self.registry.machines.values():
            self.instances.flush(machine)
        self.store.commit(self.registry.machines)
        self.trace.flush()

    def checkpoint(self) -> None:
        """Snapshot every machine and checkpoint every live keyed instance (on a clean stop),
        so the next start replays nothing."""
        for machine in self.registry.machines.values():
            self.instances.checkpoint(machine)
        self.store.checkpoint(self.registry.machines)


def _output(rid: int, taken: tuple[bytes, bytes] | Reply) -> Reply:
    """The reply to an input: its output (and state), or the Error it was refused with."""
    return Output(rid, *taken) if isinstance(taken, tuple) else taken


def _carried(event: UpgradeRequest | Release | Deploy) -> list[bytes]:
    """The module bytes a change of code carries."""
    match event:
        case UpgradeRequest(module=new, migration=mig):
            return [new, mig]
        case Release(items=items):
            return [data for item in items for data in (item.module, item.migration)]
        case Deploy(module=data):
            return [data]


@dataclass(slots=True)
class Fed:
    """What one chunk of received bytes produced on a connection."""

    #: Frames to send, in order, once the store has committed what they acknowledge.
    replies: list[bytes] = field(default_factory=list)
    #: The client said hello (the handshake timer is done).
    welcomed: bool = False
    #: At least one request was applied (an idle timer restarts).
    requests: int = 0
    #: The connection is over (the peer closed, or broke the protocol and got a goodbye):
    #: close it once ``replies`` are written.
    close: bool = False
    #: Handling failed in a way that leaves memory ahead of the store: the node must stop,
    #: sending none of the replies not yet committed (fail-stop).
    failure: HotswapError | None = None
    #: Module bytes to load before the held request can be answered (``Conversation.resume``).
    prepare: list[bytes] = field(default_factory=list)
    #: Bytes of the replies to requests in ``replies``.
    size: int = 0
    #: The replies passed the conversation's budget, or handling took its turn: the
    #: requests received after them wait in its buffer until :meth:`Conversation.proceed`.
    more: bool = False


#: The role each request needs on a node that authenticates (``hotswap.auth``, ``--auth``).
ROLE_OF: dict[type, str] = {
    Status: "read",
    Machines: "read",
    GetModule: "read",
    InstancesRequest: "read",
    Send: "send",
    SendChecked: "send",
    DryRun: "upgrade",  # it decodes and compiles the modules it is given
    UpgradeRequest: "upgrade",
    Release: "upgrade",
    Confirm: "upgrade",
    Revert: "upgrade",
    Deploy: "upgrade",
    Delete: "upgrade",
}
_SEND_ROLE = ROLE_OF[Send]
_NO_TOKEN = (
    "this node authenticates its clients: connect with a token (`--token TOKEN` on a hotswap "
    "command, $HOTSWAP_TOKEN, Client(token=...), protocol version 3); on the node's machine, "
    "its data directory's client.token holds one, which clients read from "
    "$HOTSWAP_DATA/client.token (default ./hotswap-data/client.token): set HOTSWAP_DATA to the "
    "node's --data; or, on a node with --tls-ca, with a client "
    "certificate of a principal added with --certificate"
)
_UNAUTHORIZED = "the token is not one this node knows (revoked, or for another node)"
_UNCERTIFIED = (
    "the client certificate's common name {name!r} is no principal of this node: add it with "
    "`hotswap token add {name} --roles ROLES --certificate`, or connect with a token"
)


def _forbidden(event: Request, principal: Principal, role: str) -> Error:
    held = ", ".join(sorted(principal.roles))
    what = SCHEMA_OF[type(event)].name
    return Error(
        event.id,
        ErrorCode.FORBIDDEN,
        f"{principal.name} (roles: {held}) may not send {what!r}: it needs the {role} role "
        f"(`hotswap token add NAME --roles {role}` on the node)",
    )


class Conversation:
    """One client connection, sans-IO: bytes in, frames out, through the :class:`Service`.

    With ``prepare``, an upgrade (or release, or dry run) for the running code whose modules
    are not loaded yet is *held*: :meth:`receive` stops before it and returns the module bytes
    to load in :attr:`Fed.prepare`. The shell loads them away from the event loop (decoding,
    verifying and compiling is the costly part of an upgrade), then calls :meth:`resume`,
    which handles the held request, now with its modules in the cache, and what followed it.
    Meanwhile other connections are served: the machine stops taking inputs only for the
    migration, the swap and the log entry."""

    def __init__(
        self,
        service: Service,
        *,
        prepare: bool = False,
        budget: int | None = None,
        turn: float | None = None,
    ) -> None:
        self.service = service
        self.conn = ServerConnection()
        self.over = False
        self.prepare = prepare
        #: With a budget, handling stops once a batch's replies reach that many bytes; the
        #: requests after them stay buffered until :meth:`proceed` (back-pressure: a few
        #: bytes of ``get_module`` requests must not make the node hold gigabytes of replies).
        self.budget = budget
        #: With a turn, handling also stops once a batch has taken that many seconds, so
        #: that a client pipelining thousands of requests in one chunk does not keep the
        #: others waiting for all of them.
        self.turn = turn
        #: Who this connection authenticated as (None: the node does not authenticate).
        self.principal: Principal | None = None
        #: The common name of the client's verified TLS certificate (mutual TLS), set by the
        #: shell before any byte is received; a hello without a token authenticates by it.
        self.certificate: str | None = None
        #: The client's address (``host:port``), set by the network shell, for the trace.
        self.peer: str | None = None
        self._token: str | None = None  # the hello's, checked again if the credentials change
        self._authenticated_at = 0  # the credentials' version at the last check
        self._held: Request | None = None
        #: Ids whose replies wait for the current batch's commit (held requests included).
        self._unanswered: set[int] = set()

    @property
    def held(self) -> Request | None:
        """The request that waits for its modules, if one does."""
        return self._held

    @property
    def holding(self) -> bool:
        """Whether a request waits for its modules to be loaded (then call :meth:`resume`)."""
        return self._held is not None

    def receive(self, data: bytes) -> Fed:
        """Feed bytes read from the client (``b""``: it closed its side) and answer every
        complete event they hold (up to a held request)."""
        if self.over:
            return Fed()
        self.conn.receive_data(data)
        if self._held is not None:  # answered in order, after the held request
            return Fed()
        self._unanswered = set()  # a new read: the previous batch's replies are committed
        return self._run(Fed(), len(data) >= READ_AHEAD_FROM)

    def resume(self) -> Fed:
        """Handle the held request, its modules loaded, then what followed it."""
        held, self._held = self._held, None
        fed = Fed()
        if held is None or self.over:
            return fed
        self._answer(held, fed, self._unanswered)
        return fed if self.over else self._run(fed, True)

    def proceed(self) -> Fed:
        """After a batch that passed the budget (:attr:`Fed.more`) was committed and sent:
        answer the requests still buffered, as :meth:`receive` does with new bytes."""
        if self.over or self._held is not None:
            return Fed()
        self._unanswered = set()
        return self._run(Fed(), True)

    def _run(self, fed: Fed, look: bool) -> Fed:
        """Answer the requests buffered, up to the budget or the turn. If ``look``, a keyed
        input taken on the hot path has the inputs after it read ahead
        (``ServerConnection.look_ahead``), and so on each time those are taken, until a
        reading ahead ends short of :data:`READ_AHEAD`."""
        unanswered = self._unanswered
        until = math.inf if self.turn is None else time.perf_counter() + self.turn
        began = True  # every batch handles one event at least
        conn = self.conn
        while not self.over:
            if not began and (
                (self.budget is not None and fed.size >= self.budget)
                or (until < math.inf and time.perf_counter() > until)
            ):
                fed.more = True  # the rest once these replies are sent (``proceed``)
                break
            began = False
            if self.principal is None or self._may_send():
                fields = conn.next_input()
                if fields is not None:  # the hot path: a send or send_checked
                    if fields[0] in unanswered:
                        self._duplicate(fields[0], fed)
                        break
                    self._take(fields, fed, unanswered)
                    if look and fields[5] is not None and not conn.ahead and not self.over:
                        try:  # keyed: the next ones likely are too
                            look = self._read_ahead()
                        except Exception as e:  # noqa: BLE001 - _failed stops the conversation
                            self._failed(fed, "reading ahead", e)  # as a read of one would
                    continue
            try:
                event = self.conn.next_event()
            except ProtocolError:
                assert self.conn.failure is not None
                fed.replies.append(self.conn.send(self.conn.failure))
                self.over = fed.close = True
                break
            if event is NEED_DATA:
                break
            match event:
                case Hello(version=version):
                    config = self.service.config
                    if config.credentials is None and self.certificate is not None:
                        # mutual TLS without --auth: any certificate of the authority may do
                        # anything, and the audit trail names it by its common name
                        self.principal = Principal(self.certificate, frozenset({"admin"}))
                    if config.credentials is not None:
                        self._token = event.token
                        self.principal, why = self._authenticate(config.credentials)
                        if self.principal is None:
                            if self.service.may_trace_refusal(before_hello=True):
                                whence = f" from {self.peer}" if self.peer else ""
                                note = f"Connection{whence} refused (unauthorized): {why}"
                                self.service.trace.note(note)
                            goodbye = Goodbye(ErrorCode.UNAUTHORIZED, why)
                            fed.replies.append(self.conn.send(goodbye))
                            self.over = fed.close = True
                            break
                    welcome = Welcome(version=version, max_frame=config.max_frame, node=config.name)
                    fed.replies.append(self.conn.send(welcome))
                    fed.welcomed = True
                case ConnectionClosed():
                    self.over = fed.close = True
                case (
                    Send()
                    | SendChecked()
                    | UpgradeRequest()
                    | Release()
                    | Status()
                    | Machines()
                    | GetModule()
                    | DryRun()
                    | Confirm()
                    | Revert()
                    | InstancesRequest()
                    | Delete()
                    | Deploy()
                ):
                    if event.id in unanswered:
                        self._duplicate(event.id, fed)
                        break
                    if self.principal is not None:
                        if self._revoked(fed):
                            break
                        role = ROLE_OF[type(event)]
                        if not self.principal.may(role):
                            unanswered.add(event.id)
                            refused = _forbidden(event, self.principal, role)
                            if self.service.may_trace_refusal():
                                machine = getattr(event, "machine", None)
                                on = "" if machine is None else f" (machine {machine!r})"
                                note = f"Request refused (forbidden): {refused.message}{on}"
                                self.service.trace.note(note)
                            frame = self.conn.send(refused)
                            fed.replies.append(frame)
                            fed.size += len(frame)
                            continue
                    if self.prepare and not isinstance(event, Send | SendChecked):
                        todo = self.service.to_prepare(event)
                        if todo:
                            unanswered.add(event.id)
                            self._held, fed.prepare = event, todo
                            break
                    self._answer(event, fed, unanswered)
        return fed

    def _duplicate(self, request_id: int, fed: Fed) -> None:
        """A request whose id is that of one whose reply is not sent yet: ambiguous, so the
        client is told goodbye."""
        msg = f"duplicate request id {request_id}: still awaiting its reply"
        fed.replies.append(self.conn.send(Goodbye(ErrorCode.BAD_REQUEST, msg)))
        self.over = fed.close = True

    def _may_send(self) -> bool:
        """Whether this connection's inputs may take the hot path: it sends them as whoever
        it authenticated as, unchanged since (else the long way authenticates it again)."""
        principal = self.principal
        if principal is None:
            return True  # no authentication, or no hello yet (then nothing is READY)
        credentials = self.service.config.credentials
        if credentials is not None and credentials.version != self._authenticated_at:
            return False
        return principal.may(_SEND_ROLE)

    def _read_ahead(self) -> bool:
        """Read ahead the inputs buffered, and the instances they go to (``Service.prefetch``);
        whether to do so again once those are taken (if there may be more)."""
        ahead = self.conn.look_ahead(READ_AHEAD)
        if len(ahead) > 1:
            self.service.prefetch(ahead)
        return len(ahead) == READ_AHEAD

    def _take(self, fields: Input, fed: Fed, unanswered: set[int]) -> None:
        """:meth:`_answer` for an input read by the hot path."""
        rid, name, code, data, want_state, key = fields
        unanswered.add(rid)
        fed.requests += 1
        try:  # _handled, written out: this runs once per input
            taken = self.service.take(rid, name, code, data, want_state, key)
        except Exception as e:  # noqa: BLE001 - _failed stops the conversation
            self._failed(fed, "Send" if code is None else "SendChecked", e)
            return
        conn = self.conn
        if isinstance(taken, tuple):
            try:
                frame = conn.output_frame(rid, taken[0], taken[1])
            except FrameTooLarge as e:
                conn.expect(rid, code is not None)
                frame = conn.send(Error(rid, ErrorCode.TOO_LARGE, str(e)))
        else:
            conn.expect(rid, code is not None)
            frame = self._frame(rid, taken)
        fed.replies.append(frame)
        fed.size += len(frame)

    def _handled(self, fed: Fed, kind: str, handler: Callable[..., _T], *args: object) -> _T | None:
        """``handler(*args)``, handling a request of ``kind``; None if it failed in a way that
        may leave memory ahead of the store (the store refused a write, or a bug): then
        :attr:`Fed.failure` says so, the conversation is over and no reply of the batch is
        sent (fail-stop)."""
        try:
            return handler(*args)
        except Exception as e:  # noqa: BLE001 - _failed stops the conversation
            self._failed(fed, kind, e)
            return None

    def _failed(self, fed: Fed, kind: str, e: Exception) -> None:
        """Handling a request of ``kind`` raised ``e``: the store refused a write (then
        :attr:`Fed.failure` is that error) or a bug (an :class:`InternalError`, the traceback
        printed); either way the conversation is over and no reply of the batch is sent."""
        if isinstance(e, StoreError):  # logging failed: stop, reply nothing
            fed.failure = e
        else:  # a bug: state may be half changed; stop
            traceback.print_exc(file=sys.stderr)
            fed.failure = InternalError(f"handling {kind}: {e!r}")
        self.over = True
        fed.replies.clear()

    def _frame(self, rid: int, reply: Reply) -> bytes:
        """The frame of ``reply``, or of an Error ``too_large`` if the client does not take it."""
        try:
            return self.conn.send(reply)
        except FrameTooLarge as e:
            return self.conn.send(Error(rid, ErrorCode.TOO_LARGE, str(e)))

    def _authenticate(self, credentials: Credentials) -> tuple[Principal | None, str]:
        """Who the hello's token, or else the client's certificate, proves this connection
        is, and why not when nobody."""
        self._authenticated_at = credentials.version
        if self._token or self.certificate is None:
            why = _UNAUTHORIZED if self._token else _NO_TOKEN
            return credentials.authenticate(self._token), why
        why = _UNCERTIFIED.format(name=self.certificate)
        return credentials.certified(self.certificate), why

    def _revoked(self, fed: Fed) -> bool:
        """After the credentials file changed, authenticate again: a connection whose token
        or certificate no longer names a principal is told goodbye ``unauthorized``; one
        whose roles changed has the new ones from this request on."""
        credentials = self.service.config.credentials
        if credentials is None or credentials.version == self._authenticated_at:
            return False
        self.principal, why = self._authenticate(credentials)
        if self.principal is not None:
            return False
        why = f"the node's credentials changed: {why}"
        if self.service.may_trace_refusal():
            self.service.trace.note(f"Connection closed (unauthorized): {why}")
        fed.replies.append(self.conn.send(Goodbye(ErrorCode.UNAUTHORIZED, why)))
        self.over = fed.close = True
        return True

    def _answer(self, event: Request, fed: Fed, unanswered: set[int]) -> None:
        unanswered.add(event.id)
        fed.requests += 1
        kind = type(event).__name__
        reply = self._handled(fed, kind, self.service.handle, event, self.principal)
        if reply is None:
            return
        frame = self._frame(event.id, reply)
        fed.replies.append(frame)
        fed.size += len(frame)
