"""The events of the hotswap wire protocol: what a connection turns bytes into, and back.

Every message of docs/protocol.md is one frozen, slotted dataclass here, with the same field
names as the CBOR map keys on the wire. Values, types and modules are opaque ``bytes`` owned by
the CAM layer (docs/bytecode.md); identities are 64 lowercase hex digits (a SHA-256).

Three groups, by direction:

- handshake: ``Hello`` (client) and ``Welcome`` (server), section "Hello and versioning";
- requests (client to server), each with a client-chosen ``id``: ``Send``, ``SendChecked``,
  ``UpgradeRequest``, ``Release``, ``Status``, ``Machines``, ``GetModule``, in version 2
  ``DryRun``, ``Confirm``, ``Revert``, and in version 3 ``InstancesRequest``, ``Delete``,
  ``Deploy`` (and a ``key`` on ``Send``, ``SendChecked`` and ``Status``: keyed instances);
- replies (server to client), carrying the ``id`` of their request: ``Output``, ``Upgraded``,
  ``Released``, ``StatusReply``, ``MachinesReply``, ``ModuleReply``, in version 2
  ``DryRunReport`` and ``TrialEnded``, in version 3 ``InstancesReply``, ``Deleted`` and
  ``Deployed``, and ``Error`` for any of them;

plus ``Goodbye`` (server, connection-level error, the server closes after it) and
``ConnectionClosed``, which is not a message: it reports that the peer closed its side.

"Upgrade" here is the wire message: ``UpgradeRequest`` (wire name ``upgrade``) asks for one,
``Upgraded`` reports that it happened. The client's ``Upgrade`` is the seed's description of one
(old code, new code, migration); the registry's ``Swap`` is one checked and ready to install.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TypeAlias

#: The protocol version this implementation speaks (docs/protocol.md, "Hello and versioning").
PROTOCOL_VERSION = 4
#: Versions a server built from this module accepts in a client's hello. Version 2 adds
#: optional fields (generation, trap kind, ...) and the dry run and trial messages; version 3
#: keyed instances (a ``key`` on send, send_checked and status; instances, delete, deploy) and
#: the instance fields of a status; version 4 who made each change of code (``by`` and
#: ``signer`` in a status's history entries). A client of an earlier version gets exactly the
#: messages of its version, and a version 1 or 2 client reaches each machine's default
#: instance only.
SUPPORTED_VERSIONS = frozenset({1, 2, 3, 4})
#: The longest instance key, in bytes of UTF-8 (a key is 1 to this many bytes, without NUL).
MAX_KEY_BYTES = 256
#: The most keys one ``instances`` reply lists, and the most trapped instances a status lists.
MAX_PAGE = 1000
MAX_TRAPPED_LISTED = 100
#: Largest payload a connection accepts unless its hello/welcome says otherwise: upgrades carry
#: whole modules, so this is generous; the node may announce less.
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
#: Largest payload either side accepts before the handshake completes, and the smallest
#: ``max_frame`` a peer may announce: hello and welcome are small, and a stranger (an HTTP client,
#: a port scanner) is turned away after four bytes instead of being buffered.
HANDSHAKE_MAX_FRAME = 4096
#: The length prefix is an unsigned 32-bit integer.
MAX_FRAME_LIMIT = 2**32 - 1
#: Request ids and counters are CBOR unsigned integers of at most 64 bits.
MAX_UINT = 2**64 - 1
#: Software name announced in hello and welcome unless the caller picks another.
DEFAULT_AGENT = "hotswap-python/0.1"


class ErrorCode(StrEnum):
    """The closed set of error codes (docs/protocol.md, "Error codes")."""

    UNKNOWN_MACHINE = "unknown_machine"
    UNKNOWN_MODULE = "unknown_module"
    BAD_INPUT = "bad_input"
    TRAP = "trap"
    WRONG_VERSION = "wrong_version"
    BAD_MODULE = "bad_module"
    ILL_TYPED_UPGRADE = "ill_typed_upgrade"
    MIGRATION_TRAP = "migration_trap"
    TOO_LARGE = "too_large"
    BAD_REQUEST = "bad_request"
    UNSUPPORTED_VERSION = "unsupported_version"
    INTERNAL = "internal"
    OVERLOADED = "overloaded"
    UNKNOWN_INSTANCE = "unknown_instance"
    FORBIDDEN = "forbidden"
    UNAUTHORIZED = "unauthorized"


class HistoryKind(StrEnum):
    """How a piece of code came to run a machine."""

    START = "start"
    UPGRADE = "upgrade"


# --- handshake ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """Client to server, first message: the version spoken and the largest frame accepted."""

    version: int = PROTOCOL_VERSION
    max_frame: int = DEFAULT_MAX_FRAME
    agent: str = DEFAULT_AGENT
    #: Version 3: the client's token, for a node that authenticates its clients (``--auth``).
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Welcome:
    """Server to client, answer to ``Hello``: same version, the node's limit and name."""

    version: int = PROTOCOL_VERSION
    max_frame: int = DEFAULT_MAX_FRAME
    agent: str = DEFAULT_AGENT
    node: str = ""


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Feed one input (encoded at the machine's input type) to a machine. Version 2: with
    ``state`` false, the reply leaves the new state out (its ``state`` is empty bytes)."""

    id: int
    machine: str
    input: bytes
    state: bool = True
    #: Version 3: the instance addressed (1 to 256 bytes of UTF-8); None, the default one.
    key: str | None = None


@dataclass(frozen=True, slots=True)
class SendChecked:
    """``Send`` for an input encoded against the code ``code``: if the machine runs other code
    the node refuses it (``wrong_version``) rather than read it at a type it was not written
    for, and the client re-encodes it for the running code (by names) and sends it again."""

    id: int
    machine: str
    code: str
    input: bytes
    state: bool = True
    #: Version 3: the instance addressed; None, the default one.
    key: str | None = None


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """Swap a machine's code if ``expected`` is the identity running, migrating its state.

    Version 2 fields: ``generation``, the machine's generation the upgrade was made for (so
    that it cannot be replayed after the code changed and came back); ``rename``, accept a
    migration whose names differ from the states' (a deliberate rename); ``trial`` and
    ``trial_seconds``, make the upgrade provisional for that many inputs or seconds, whichever
    ends first (0 and 0: permanent at once)."""

    id: int
    machine: str
    expected: str
    module: bytes
    migration: bytes
    generation: int | None = None
    rename: bool = False
    trial: int = 0
    trial_seconds: int = 0
    #: Version 3: first run the migration read-only on every keyed instance, and refuse the
    #: upgrade (``migration_trap``, naming them) if it traps on any.
    check_all: bool = False
    #: Version 3: an Ed25519 signature over the change (docs/protocol.md, "Signed changes"),
    #: which a node started with ``--trust`` requires; empty: none.
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class DryRun:
    """Version 2. What the upgrade would do, changing nothing: the checks of an upgrade, then
    the machine's last ``inputs`` inputs replayed through the new code and compared."""

    id: int
    machine: str
    expected: str
    module: bytes
    migration: bytes
    inputs: int
    rename: bool = False
    generation: int | None = None


@dataclass(frozen=True, slots=True)
class Confirm:
    """Version 2. Make the machine's trial upgrade permanent now."""

    id: int
    machine: str


@dataclass(frozen=True, slots=True)
class Revert:
    """Version 2. Take the machine's trial upgrade back: the old code, the pre-upgrade state,
    and the trial's inputs replayed through the old code."""

    id: int
    machine: str


@dataclass(frozen=True, slots=True)
class ReleaseItem:
    """One machine's part of a release: the same four fields as ``UpgradeRequest``."""

    machine: str
    expected: str
    module: bytes
    migration: bytes


@dataclass(frozen=True, slots=True)
class Release:
    """Upgrade several machines at once: every item is checked before any swap, and either
    all swap between the same two inputs or none does. Items are sorted by machine name.
    Version 3: ``signature``, over all the items (``signing.ReleaseClaim``), for a node that
    takes only signed changes (``--trust``)."""

    id: int
    items: tuple[ReleaseItem, ...]
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Status:
    """Ask for a machine's code, types, state, input count and history; version 3, with
    ``key``, for one keyed instance (touching it: it migrates to the running code first)."""

    id: int
    machine: str
    key: str | None = None


@dataclass(frozen=True, slots=True)
class InstancesRequest:
    """Version 3. A page of a machine's instance keys, in increasing order of their UTF-8
    bytes: those starting with ``prefix`` (if given), after ``after`` (if given), at most
    ``limit`` (1 to ``MAX_PAGE``)."""

    id: int
    machine: str
    limit: int
    prefix: str | None = None
    after: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Version 3. End a keyed instance: it is gone, and a later input makes a new one."""

    id: int
    machine: str
    key: str


@dataclass(frozen=True, slots=True)
class Deploy:
    """Version 3. Add a machine to the running node, on ``module``; deploying the code a
    machine already runs again changes nothing."""

    id: int
    machine: str
    module: bytes
    #: An Ed25519 signature over the deploy, as for ``UpgradeRequest``; empty: none.
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Machines:
    """Ask for the machines a node hosts."""

    id: int


@dataclass(frozen=True, slots=True)
class GetModule:
    """Ask for the bytes of a module the node stores, by identity."""

    id: int
    identity: str


# --- replies --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    """Answer to ``Send``: the step's output and the machine's new state (empty bytes when
    the request asked for no state)."""

    id: int
    output: bytes
    state: bytes


@dataclass(frozen=True, slots=True)
class Upgraded:
    """Answer to ``UpgradeRequest``: the swap happened, from ``old`` to ``new``. Version 2:
    the machine's new ``generation`` and the nominal ``notes`` the node accepted."""

    id: int
    old: str
    new: str
    generation: int | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReleasedEntry:
    """One machine of a completed release: from ``old`` to ``new``."""

    machine: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Released:
    """Answer to ``Release``: every machine swapped; entries sorted by machine name."""

    id: int
    machines: tuple[ReleasedEntry, ...]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change of code: ``seq`` is the number of inputs processed before it took over.
    Version 4: ``by``, the principal who made it (None: unknown, on a node without ``--auth``,
    or made by the node itself), and ``signer``, the id of the trusted key that signed it."""

    identity: str
    kind: HistoryKind
    seq: int
    time: float
    by: str | None = None
    signer: str | None = None


@dataclass(frozen=True, slots=True)
class StatusReply:
    """Answer to ``Status``."""

    id: int
    machine: str
    identity: str
    input_type: bytes
    state_type: bytes
    output_type: bytes
    state: bytes
    inputs: int
    history: tuple[HistoryEntry, ...]
    #: Version 2: how many changes of code the machine has had (its first code: 0).
    generation: int | None = None
    #: Version 2: inputs left before the trial upgrade in progress becomes permanent.
    trial: int | None = None
    #: Version 2: when the trial in progress becomes permanent (seconds since the epoch).
    trial_until: float | None = None
    #: Version 3, a keyed status: the instance's key (then ``identity``, the types, ``state``
    #: and ``inputs`` are the instance's, and ``trapped`` its migration trap, if any).
    key: str | None = None
    #: Version 3: how many keyed instances the machine has.
    instances: int | None = None
    #: Version 3: how many keyed instances run each code, by identity.
    codes: tuple[CodeCount, ...] = ()
    #: Version 3: instances whose migration trapped (at most ``MAX_TRAPPED_LISTED``).
    trapped: tuple[TrappedInstance, ...] = ()
    #: Version 3: the background migration of instances to the running code.
    sweep: SweepProgress | None = None


@dataclass(frozen=True, slots=True)
class CodeCount:
    """How many of a machine's keyed instances last ran the code ``identity``."""

    identity: str
    instances: int


@dataclass(frozen=True, slots=True)
class TrappedInstance:
    """A keyed instance whose migration to the running code trapped: it stays on its code."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class SweepProgress:
    """The sweeper: its rate (instances a second, 0: off), instances it has migrated since
    the node started, instances not yet on the running code, and how many of those trap."""

    rate: int
    migrated: int
    remaining: int
    trapped: int


@dataclass(frozen=True, slots=True)
class MachineEntry:
    """A hosted machine and the identity of the code it runs."""

    name: str
    identity: str


@dataclass(frozen=True, slots=True)
class MachinesReply:
    """Answer to ``Machines``: entries sorted by name."""

    id: int
    machines: tuple[MachineEntry, ...]


@dataclass(frozen=True, slots=True)
class ModuleReply:
    """Answer to ``GetModule``: the module's canonical bytes."""

    id: int
    module: bytes


@dataclass(frozen=True, slots=True)
class InstancesReply:
    """Version 3. Answer to ``InstancesRequest``: keys in increasing order; ``more`` when
    keys after the last one match too (ask again with ``after`` set to it)."""

    id: int
    machine: str
    keys: tuple[str, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class Deleted:
    """Version 3. Answer to ``Delete``: the instance ended after ``inputs`` inputs."""

    id: int
    machine: str
    key: str
    inputs: int


@dataclass(frozen=True, slots=True)
class Deployed:
    """Version 3. Answer to ``Deploy``: the machine runs ``identity``; ``started`` is false
    when it already ran that code."""

    id: int
    machine: str
    identity: str
    started: bool


@dataclass(frozen=True, slots=True)
class Error:
    """A request failed; ``code`` says how (docs/protocol.md lists what each code guarantees).

    Version 2 fields, for a program to act on without parsing ``message``: ``trap``, the kind
    of trap (``trap``, ``migration_trap``); ``running`` and ``generation``, the code and
    generation the machine runs (``wrong_version``)."""

    id: int
    code: ErrorCode
    message: str
    trap: str | None = None
    running: str | None = None
    generation: int | None = None


@dataclass(frozen=True, slots=True)
class DryRunDifference:
    """One replayed input whose output differs: ``input`` and ``old`` (the running code's
    output) at the running code's types, ``new`` at the new code's output type, or empty with
    ``trap`` saying why the new code trapped."""

    seq: int
    input: bytes
    old: bytes
    new: bytes
    trap: str


@dataclass(frozen=True, slots=True)
class DryRunReport:
    """Answer to ``DryRun``: how many inputs were replayed, how many outputs differ (traps
    included), how many trapped, the first differences (at most 10) and notes."""

    id: int
    replayed: int
    differing: int
    traps: int
    differences: tuple[DryRunDifference, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TrialEnded:
    """Answer to ``Confirm`` or ``Revert``: the code now running, the generation, and after a
    revert how many of the trial's inputs were replayed on the old code and how many were
    skipped because they trap there."""

    id: int
    machine: str
    identity: str
    generation: int
    replayed: int
    skipped: int


# --- end of conversation --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goodbye:
    """Server to client, last message: the connection failed or the node is going away."""

    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """Not a message: the peer closed its side of the transport."""


class NeedData(Enum):
    """``next_event`` needs more bytes before it can return an event."""

    NEED_DATA = "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA

Request: TypeAlias = (
    Send
    | SendChecked
    | UpgradeRequest
    | Release
    | Status
    | Machines
    | GetModule
    | DryRun
    | Confirm
    | Revert
    | InstancesRequest
    | Delete
    | Deploy
)
Reply: TypeAlias = (
    Output
    | Upgraded
    | Released
    | StatusReply
    | MachinesReply
    | ModuleReply
    | DryRunReport
    | TrialEnded
    | InstancesReply
    | Deleted
    | Deployed
    | Error
)
Message: TypeAlias = Hello | Welcome | Request | Reply | Goodbye
Event: TypeAlias = Message | ConnectionClosed
