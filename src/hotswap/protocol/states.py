"""The conversation as data: states, who may send what in each, and what answers what.

docs/protocol.md, "Conversation". Both ends of a connection keep the same conversation state
and drive it with the same table: sending an event and receiving it are one transition, looked
up by (state, sender, kind of event). A missing entry is a violation, ours if we are the
sender (LocalProtocolError), the peer's otherwise (RemoteProtocolError).

    HELLO --client hello--> WELCOME --server welcome--> READY --client EOF--> DRAINING
                               |                          |                     |
                               +--server goodbye/EOF----> CLOSED <--goodbye/EOF-+

In READY the client sends requests and the server replies, in request order. Any violation
moves the connection to ERROR, which it never leaves; after a violation by the *client*, the
server may still answer requests it already received and say goodbye (docs/protocol.md,
"Protocol violations").

"Upgrade" here is the wire request ``UpgradeRequest`` and its reply ``Upgraded``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from hotswap.protocol.events import (
    Confirm,
    ConnectionClosed,
    Delete,
    Deleted,
    Deploy,
    Deployed,
    DryRun,
    DryRunReport,
    Error,
    ErrorCode,
    GetModule,
    Goodbye,
    Hello,
    InstancesReply,
    InstancesRequest,
    Machines,
    MachinesReply,
    ModuleReply,
    Output,
    Release,
    Released,
    Revert,
    Send,
    SendChecked,
    Status,
    StatusReply,
    TrialEnded,
    Upgraded,
    UpgradeRequest,
    Welcome,
)


class Role(Enum):
    """Which end of the connection."""

    CLIENT = "client"
    SERVER = "server"

    # Enum's own __hash__ is Python code; the table is looked up on every event.
    __hash__ = object.__hash__


class State(Enum):
    """Where the conversation is."""

    HELLO = "HELLO"  # nothing exchanged yet: the client must say hello
    WELCOME = "WELCOME"  # the client said hello: the server must welcome it or say goodbye
    READY = "READY"  # requests and replies flow
    DRAINING = "DRAINING"  # the client closed its side: the server answers what it received
    CLOSED = "CLOSED"  # goodbye said or the peer closed: nothing more is exchanged
    ERROR = "ERROR"  # a violation happened: sticky

    __hash__ = object.__hash__


HELLO, WELCOME, READY, DRAINING, CLOSED, ERROR = State
CLIENT, SERVER = Role

#: The kind of every event, as the table sees it; "eof" is a ConnectionClosed, never sent.
KIND_OF: Mapping[type, str] = {
    Hello: "hello",
    Welcome: "welcome",
    Send: "request",
    UpgradeRequest: "request",
    Release: "request",
    SendChecked: "request",
    Status: "request",
    Machines: "request",
    GetModule: "request",
    DryRun: "request",
    Confirm: "request",
    Revert: "request",
    InstancesRequest: "request",
    Delete: "request",
    Deploy: "request",
    InstancesReply: "reply",
    Deleted: "reply",
    Deployed: "reply",
    DryRunReport: "reply",
    TrialEnded: "reply",
    Output: "reply",
    Upgraded: "reply",
    Released: "reply",
    StatusReply: "reply",
    MachinesReply: "reply",
    ModuleReply: "reply",
    Error: "reply",
    Goodbye: "goodbye",
    ConnectionClosed: "eof",
}

#: (state, sender, kind) -> next state. Anything absent is a protocol violation.
TRANSITIONS: Mapping[tuple[State, Role, str], State] = {
    (HELLO, CLIENT, "hello"): WELCOME,
    (HELLO, CLIENT, "eof"): CLOSED,
    (HELLO, SERVER, "eof"): CLOSED,
    (WELCOME, SERVER, "welcome"): READY,
    (WELCOME, SERVER, "goodbye"): CLOSED,
    (WELCOME, SERVER, "eof"): CLOSED,
    (WELCOME, CLIENT, "eof"): CLOSED,
    (READY, CLIENT, "request"): READY,
    (READY, SERVER, "reply"): READY,
    (READY, SERVER, "goodbye"): CLOSED,
    (READY, SERVER, "eof"): CLOSED,
    (READY, CLIENT, "eof"): DRAINING,
    (DRAINING, SERVER, "reply"): DRAINING,
    (DRAINING, SERVER, "goodbye"): CLOSED,
    (DRAINING, SERVER, "eof"): CLOSED,
    (CLOSED, CLIENT, "eof"): CLOSED,
    (CLOSED, SERVER, "eof"): CLOSED,
    # Only after the client's violation, and a goodbye at most once (checked in connection.py).
    (ERROR, SERVER, "reply"): ERROR,
    (ERROR, SERVER, "goodbye"): ERROR,
}

#: The successful reply to each request; ``Error`` may answer any of them.
REPLY_TO: Mapping[type, type] = {
    Send: Output,
    SendChecked: Output,
    UpgradeRequest: Upgraded,
    Release: Released,
    Status: StatusReply,
    Machines: MachinesReply,
    GetModule: ModuleReply,
    DryRun: DryRunReport,
    Confirm: TrialEnded,
    Revert: TrialEnded,
    InstancesRequest: InstancesReply,
    Delete: Deleted,
    Deploy: Deployed,
}

#: FORBIDDEN (version 3): the connection's principal lacks the role the request needs.
_ANY_REQUEST = {ErrorCode.INTERNAL, ErrorCode.OVERLOADED, ErrorCode.FORBIDDEN}
#: What may refuse an upgrade, a release or a dry run (the same checks).
_REFUSED_UPGRADE = frozenset(
    {
        ErrorCode.UNKNOWN_MACHINE,
        ErrorCode.WRONG_VERSION,
        ErrorCode.BAD_MODULE,
        ErrorCode.ILL_TYPED_UPGRADE,
        ErrorCode.MIGRATION_TRAP,
        ErrorCode.BAD_REQUEST,
    }
    | _ANY_REQUEST
)

#: The error codes that may answer each request (docs/protocol.md, "Error codes").
ERROR_CODES: Mapping[type, frozenset[ErrorCode]] = {
    # MIGRATION_TRAP and BAD_REQUEST answer a send to a keyed instance only (version 3): its
    # migration to the running code trapped; a keyed send during a trial upgrade.
    Send: frozenset(
        {
            ErrorCode.UNKNOWN_MACHINE,
            ErrorCode.BAD_INPUT,
            ErrorCode.TRAP,
            ErrorCode.TOO_LARGE,
            ErrorCode.MIGRATION_TRAP,
            ErrorCode.BAD_REQUEST,
        }
        | _ANY_REQUEST
    ),
    SendChecked: frozenset(
        {
            ErrorCode.UNKNOWN_MACHINE,
            ErrorCode.WRONG_VERSION,
            ErrorCode.BAD_INPUT,
            ErrorCode.TRAP,
            ErrorCode.TOO_LARGE,
            ErrorCode.MIGRATION_TRAP,
            ErrorCode.BAD_REQUEST,
        }
        | _ANY_REQUEST
    ),
    # BAD_REQUEST for an upgrade: a trial out of bounds (only version 2 requests have one);
    # for a release: no items.
    # FORBIDDEN (version 3): a node with --trust refuses a change without a valid signature.
    UpgradeRequest: _REFUSED_UPGRADE | {ErrorCode.FORBIDDEN},
    Release: _REFUSED_UPGRADE | {ErrorCode.FORBIDDEN},
    DryRun: _REFUSED_UPGRADE | {ErrorCode.TOO_LARGE},
    Confirm: frozenset({ErrorCode.UNKNOWN_MACHINE, ErrorCode.BAD_REQUEST} | _ANY_REQUEST),
    Revert: frozenset({ErrorCode.UNKNOWN_MACHINE, ErrorCode.BAD_REQUEST} | _ANY_REQUEST),
    Status: frozenset(
        {
            ErrorCode.UNKNOWN_MACHINE,
            ErrorCode.TOO_LARGE,
            ErrorCode.UNKNOWN_INSTANCE,
            ErrorCode.BAD_REQUEST,
        }
        | _ANY_REQUEST
    ),
    InstancesRequest: frozenset({ErrorCode.UNKNOWN_MACHINE, ErrorCode.TOO_LARGE} | _ANY_REQUEST),
    Delete: frozenset(
        {ErrorCode.UNKNOWN_MACHINE, ErrorCode.UNKNOWN_INSTANCE, ErrorCode.BAD_REQUEST}
        | _ANY_REQUEST
    ),
    Deploy: frozenset(
        {
            ErrorCode.BAD_MODULE,
            ErrorCode.BAD_REQUEST,
            ErrorCode.TRAP,
            ErrorCode.TOO_LARGE,
            ErrorCode.FORBIDDEN,
        }
        | _ANY_REQUEST
    ),
    Machines: frozenset({ErrorCode.TOO_LARGE} | _ANY_REQUEST),
    GetModule: frozenset({ErrorCode.UNKNOWN_MODULE, ErrorCode.TOO_LARGE} | _ANY_REQUEST),
}

#: The codes a goodbye may carry: why the whole connection ends.
GOODBYE_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.UNAUTHORIZED,
        ErrorCode.BAD_REQUEST,
        ErrorCode.UNSUPPORTED_VERSION,
        ErrorCode.INTERNAL,
        ErrorCode.OVERLOADED,
    }
)


def expected_kinds(state: State, sender: Role) -> list[str]:
    """What ``sender`` may send in ``state``, for error messages."""
    return [kind for (s, who, kind) in TRANSITIONS if s is state and who is sender]
