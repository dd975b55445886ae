"""Payloads: one deterministic CBOR map per message (docs/protocol.md, "Payload encoding").

Each message type has a :class:`Schema`: its wire name, its event class, its fields and their
kinds, and the direction it travels in. ``encode_message`` checks an event field by field and
emits the map with keys already in canonical order; ``decode_message`` decodes with cbor2 in its
strictest mode, checks the map against the schema, and finally re-encodes the map to confirm the
sender used the one deterministic encoding (RFC 8949 section 4.2.1: shortest integers, lengths
and floats, sorted keys, definite lengths, no tags, no trailing bytes). So a message has exactly
one byte string, as modules do, and a peer that deviates is told exactly where.

Errors: a bad outgoing event raises LocalProtocolError, a bad incoming payload
RemoteProtocolError, both naming the message, the field and what was wrong.

"Upgrade" here is the wire message ``upgrade`` (``UpgradeRequest``) and its reply
``upgraded`` (``Upgraded``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn, cast

import cbor2

from hotswap.errors import LocalProtocolError, RemoteProtocolError
from hotswap.protocol.events import (
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Confirm,
    Delete,
    Deleted,
    Deploy,
    Deployed,
    DryRun,
    DryRunReport,
    Error,
    GetModule,
    Goodbye,
    Hello,
    InstancesReply,
    InstancesRequest,
    Machines,
    MachinesReply,
    Message,
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
from hotswap.protocol.fastpath import (
    decode_output,
    decode_request,
    encode_output,
    encode_send,
    encode_send_checked,
)
from hotswap.protocol.fields import (
    BOOL,
    BYTES,
    CODE_COUNTS,
    DIFFERENCES,
    ERROR_CODE,
    FLOAT,
    FRAME_LIMIT,
    HISTORY,
    HISTORY_4,
    IDENTITY,
    KEY,
    KEY_LIST,
    MACHINE_LIST,
    MESSAGE_TEXT,
    NAME,
    NOTES,
    PAGE_LIMIT,
    RELEASE_ITEMS,
    RELEASED_LIST,
    SHORT_TEXT,
    SIGNATURE,
    SWEEP,
    TOKEN,
    TRAPPED_LIST,
    UINT,
    InvalidField,
    Kind,
    canonical_order,
    check_keys,
    describe,
)
from hotswap.protocol.plain import NotPlain, TooManyItems, read_plain, write_plain


class UnsupportedVersion(RemoteProtocolError):
    """The client's hello asks for a protocol version this side does not speak."""

    def __init__(self, version: int) -> None:
        self.version = version
        spoken = ", ".join(map(str, sorted(SUPPORTED_VERSIONS)))
        super().__init__(f"unsupported protocol version {version}; this side speaks {spoken}")


@dataclass(frozen=True, slots=True)
class Schema:
    """One message type: wire name, event class, fields in dataclass order, direction."""

    name: str
    event: type
    fields: tuple[tuple[str, Kind], ...]
    from_client: bool
    #: every key of the map, "type" included, in canonical order
    keys: tuple[str, ...]
    #: floats need cbor2's canonical mode to get the shortest encoding
    has_float: bool
    #: Fields added in a later protocol version, after ``fields`` in the event: (key, kind,
    #: default, version). A field equal to its default is omitted from the map (one encoding
    #: per message), and none is ever sent to, or accepted from, a peer of an earlier version:
    #: a reply leaves it out for such a peer, a request that needs it cannot be sent to one.
    optional: tuple[tuple[str, Kind, object, int], ...] = ()
    #: The protocol version that introduced the message.
    since: int = 1
    #: Fields whose kind grew in a later version (key, kind, version): from that version on,
    #: the field has that kind (a record with optional fields of its own), before it the one
    #: in ``fields``.
    later: tuple[tuple[str, Kind, int], ...] = ()

    def fields_at(self, version: int) -> tuple[tuple[str, Kind], ...]:
        """The fields and their kinds on a connection of protocol ``version``."""
        if not self.later:
            return self.fields
        grown = {key: kind for key, kind, since in self.later if version >= since}
        return tuple((key, grown.get(key, kind)) for key, kind in self.fields)


def _schema(
    name: str,
    event: type,
    from_client: bool,
    *,
    since: int = 1,
    optional: tuple[tuple[str, Kind, object, int], ...] = (),
    later: tuple[tuple[str, Kind, int], ...] = (),
    **fields: Kind,
) -> Schema:
    kinds = [*fields.values(), *(kind for _, kind, _, _ in optional)]
    kinds += [kind for _, kind, _ in later]
    has_float = any(kind.has_float() for kind in kinds)
    keys = canonical_order(["type", *fields])
    return Schema(
        name, event, tuple(fields.items()), from_client, keys, has_float, optional, since, later
    )


#: ``send`` and ``send_checked`` may leave the state out of their reply (version 2) and name
#: a keyed instance (version 3).
_SEND_OPTIONAL: tuple[tuple[str, Kind, object, int], ...] = (
    ("state", BOOL, True, 2),
    ("key", KEY, None, 3),
)

# docs/protocol.md, "Messages": one line per message, fields in dataclass order.
SCHEMAS: tuple[Schema, ...] = (
    _schema(
        "hello",
        Hello,
        True,
        optional=(("token", TOKEN, None, 3),),
        version=UINT,
        max_frame=FRAME_LIMIT,
        agent=SHORT_TEXT,
    ),
    _schema("send", Send, True, optional=_SEND_OPTIONAL, id=UINT, machine=NAME, input=BYTES),
    _schema(
        "send_checked",
        SendChecked,
        True,
        optional=_SEND_OPTIONAL,
        id=UINT,
        machine=NAME,
        code=IDENTITY,
        input=BYTES,
    ),
    _schema(
        "upgrade",
        UpgradeRequest,
        True,
        optional=(
            ("generation", UINT, None, 2),
            ("rename", BOOL, False, 2),
            ("trial", UINT, 0, 2),
            ("trial_seconds", UINT, 0, 2),
            ("check_all", BOOL, False, 3),
            ("signature", SIGNATURE, b"", 3),
        ),
        id=UINT,
        machine=NAME,
        expected=IDENTITY,
        module=BYTES,
        migration=BYTES,
    ),
    _schema(
        "release",
        Release,
        True,
        optional=(("signature", SIGNATURE, b"", 3),),
        id=UINT,
        items=RELEASE_ITEMS,
    ),
    _schema(
        "dry_run",
        DryRun,
        True,
        since=2,
        optional=(("rename", BOOL, False, 2), ("generation", UINT, None, 2)),
        id=UINT,
        machine=NAME,
        expected=IDENTITY,
        module=BYTES,
        migration=BYTES,
        inputs=UINT,
    ),
    _schema("confirm", Confirm, True, since=2, id=UINT, machine=NAME),
    _schema("revert", Revert, True, since=2, id=UINT, machine=NAME),
    _schema("status", Status, True, optional=(("key", KEY, None, 3),), id=UINT, machine=NAME),
    _schema(
        "instances",
        InstancesRequest,
        True,
        since=3,
        optional=(("prefix", KEY, None, 3), ("after", KEY, None, 3)),
        id=UINT,
        machine=NAME,
        limit=PAGE_LIMIT,
    ),
    _schema("delete", Delete, True, since=3, id=UINT, machine=NAME, key=KEY),
    _schema(
        "deploy",
        Deploy,
        True,
        since=3,
        optional=(("signature", SIGNATURE, b"", 3),),
        id=UINT,
        machine=NAME,
        module=BYTES,
    ),
    _schema("machines", Machines, True, id=UINT),
    _schema("get_module", GetModule, True, id=UINT, identity=IDENTITY),
    _schema(
        "welcome",
        Welcome,
        False,
        version=UINT,
        max_frame=FRAME_LIMIT,
        agent=SHORT_TEXT,
        node=SHORT_TEXT,
    ),
    _schema("output", Output, False, id=UINT, output=BYTES, state=BYTES),
    _schema(
        "upgraded",
        Upgraded,
        False,
        optional=(("generation", UINT, None, 2), ("notes", NOTES, (), 2)),
        id=UINT,
        old=IDENTITY,
        new=IDENTITY,
    ),
    _schema("released", Released, False, id=UINT, machines=RELEASED_LIST),
    _schema(
        "status_reply",
        StatusReply,
        False,
        optional=(
            ("generation", UINT, None, 2),
            ("trial", UINT, None, 2),
            ("trial_until", FLOAT, None, 2),
            ("key", KEY, None, 3),
            ("instances", UINT, None, 3),
            ("codes", CODE_COUNTS, (), 3),
            ("trapped", TRAPPED_LIST, (), 3),
            ("sweep", SWEEP, None, 3),
        ),
        later=(("history", HISTORY_4, 4),),
        id=UINT,
        machine=NAME,
        identity=IDENTITY,
        input_type=BYTES,
        state_type=BYTES,
        output_type=BYTES,
        state=BYTES,
        inputs=UINT,
        history=HISTORY,
    ),
    _schema("machines_reply", MachinesReply, False, id=UINT, machines=MACHINE_LIST),
    _schema("module_reply", ModuleReply, False, id=UINT, module=BYTES),
    _schema(
        "instances_reply",
        InstancesReply,
        False,
        since=3,
        id=UINT,
        machine=NAME,
        keys=KEY_LIST,
        more=BOOL,
    ),
    _schema("deleted", Deleted, False, since=3, id=UINT, machine=NAME, key=KEY, inputs=UINT),
    _schema(
        "deployed",
        Deployed,
        False,
        since=3,
        id=UINT,
        machine=NAME,
        identity=IDENTITY,
        started=BOOL,
    ),
    _schema(
        "dry_run_report",
        DryRunReport,
        False,
        since=2,
        id=UINT,
        replayed=UINT,
        differing=UINT,
        traps=UINT,
        differences=DIFFERENCES,
        notes=NOTES,
    ),
    _schema(
        "trial_ended",
        TrialEnded,
        False,
        since=2,
        id=UINT,
        machine=NAME,
        identity=IDENTITY,
        generation=UINT,
        replayed=UINT,
        skipped=UINT,
    ),
    _schema(
        "error",
        Error,
        False,
        optional=(
            ("trap", SHORT_TEXT, None, 2),
            ("running", IDENTITY, None, 2),
            ("generation", UINT, None, 2),
        ),
        id=UINT,
        code=ERROR_CODE,
        message=MESSAGE_TEXT,
    ),
    _schema("goodbye", Goodbye, False, code=ERROR_CODE, message=MESSAGE_TEXT),
)

SCHEMA_OF: Mapping[type, Schema] = {schema.event: schema for schema in SCHEMAS}
FROM_CLIENT: Mapping[str, Schema] = {s.name: s for s in SCHEMAS if s.from_client}
FROM_SERVER: Mapping[str, Schema] = {s.name: s for s in SCHEMAS if not s.from_client}


# --- encoding -------------------------------------------------------------------------------


def encode_message(message: Message, version: int = PROTOCOL_VERSION) -> bytes:
    """The payload of ``message`` for a peer of protocol ``version``; LocalProtocolError if a
    field is not of its kind or the message does not exist in that version. Fields a version 1
    peer does not know are left out for it."""
    fast = _FAST_ENCODERS.get(type(message))
    if fast is not None and (version >= 3 or getattr(message, "key", None) is None):
        if version < 2 and isinstance(message, Send | SendChecked) and not message.state:
            message = replace(message, state=True)  # a version 1 node always sends the state
        payload = fast(message)
        if payload is not None:
            return payload
    return encode_schema(message, version)


def encode_schema(message: Message, version: int = PROTOCOL_VERSION) -> bytes:
    """``encode_message`` without the fast paths: the reference encoder."""
    schema = SCHEMA_OF.get(type(message))
    if schema is None:
        msg = f"{type(message).__name__} is not a message and cannot be sent"
        raise LocalProtocolError(msg)
    if schema.since > version:
        msg = f"cannot send {schema.name!r}: it needs protocol version {schema.since}"
        raise LocalProtocolError(f"{msg}, and this connection speaks version {version}")
    if isinstance(message, Hello):
        version = message.version  # a hello's fields are those of the version it asks for
    item: dict[str, object] = {}
    keys = schema.keys
    try:
        for key, kind in schema.fields_at(version):
            item[key] = kind.encode(getattr(message, key))
        for key, kind, default, since in schema.optional:
            value = getattr(message, key)
            if value == default:
                continue
            if version >= since:
                item[key] = kind.encode(value)
            elif schema.from_client and since >= 3:  # dropping it would change the request
                msg = f"cannot send {schema.name!r} with {key!r}: it needs protocol version"
                raise LocalProtocolError(f"{msg} {since}, and this connection speaks {version}")
        if len(item) > len(schema.fields):
            keys = canonical_order(["type", *item])
    except InvalidField as exc:
        msg = f"cannot send {schema.name!r}: field {key!r}: {exc}"
        raise LocalProtocolError(msg) from None
    item["type"] = schema.name
    ordered = {key: item[key] for key in keys}
    if not schema.has_float and any(
        isinstance(v, bytes | str) and len(v) >= PLAIN_FROM for v in ordered.values()
    ):
        payload = write_plain(ordered)  # a module or a state: cbor2 copied it twice, slowly
        if payload is not None:
            return payload
    # Keys are already in canonical order and cbor2 always writes minimal integers and
    # lengths, so only floats need the (slower) canonical mode.
    return cbor2.dumps(ordered, canonical=schema.has_float)


_FAST_ENCODERS: Mapping[type, Callable[[Any], bytes | None]] = {
    Send: encode_send,
    SendChecked: encode_send_checked,
    Output: encode_output,
}

# --- decoding -------------------------------------------------------------------------------


def _reject_tag(*_args: object) -> NoReturn:
    msg = "tags are not allowed"
    raise ValueError(msg)


# Tags cbor2 would otherwise turn into datetimes, regexes, fractions, shared references...:
# none has a place in a message, and some are costly to build from hostile input.
_NO_TAGS: dict[int, Callable[..., Any]] = dict.fromkeys(
    (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004, 55799),
    _reject_tag,
)
#: status_reply -> history -> entry is the deepest message: three nested containers.
MAX_NESTING = 3
#: Payloads of at least this many bytes are read by ``plain.read_plain`` first.
PLAIN_FROM = 256 * 1024
#: A client's message holds at most this many CBOR items (every integer, text, byte string,
#: boolean, array and map, keys included; a release of a thousand machines holds about 9,000).
#: A large frame of one-byte items is refused once this many are read, and an array or map
#: whose count passes what is left as soon as its head is: before, a 64 MiB frame of empty
#: arrays was decoded whole, on the event loop, before its fields or its sender's role were
#: checked (a minute and about 5 GB).
MAX_ITEMS = 16_384


def _remote(what: str, detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{what}: {detail}")


def decode_message(
    payload: bytes | memoryview, *, from_client: bool, version: int = PROTOCOL_VERSION
) -> Message:
    """The message in ``payload``, sent by a client or by a server speaking protocol
    ``version``, checked strictly.

    Raises UnsupportedVersion for a hello of another version (whatever its other fields) and
    RemoteProtocolError for anything else that is wrong.
    """
    fast: Message | None
    if not isinstance(payload, bytes):  # a view of a large frame: no message of a fast path
        return decode_schema(payload, from_client=from_client, version=version)
    if from_client:
        fast = decode_request(payload)
        if fast is not None and (fast.state or version >= 2) and (fast.key is None or version >= 3):
            return fast
    else:
        fast = decode_output(payload)
        if fast is not None:
            return fast
    return decode_schema(payload, from_client=from_client, version=version)


def decode_schema(
    payload: bytes | memoryview, *, from_client: bool, version: int = PROTOCOL_VERSION
) -> Message:
    """``decode_message`` without the fast paths: the reference decoder."""
    schemas, sender = (FROM_CLIENT, "client") if from_client else (FROM_SERVER, "server")
    # A large payload (an upgrade's modules) is read in one pass that also checks it is the
    # canonical encoding of what it holds: cbor2 copying it in and out again took 130 ms of
    # the event loop for 32 MiB. Anything that reader does not judge goes the reference way.
    item: object = None
    if len(payload) >= PLAIN_FROM:
        # What a client sends holds nothing this reader does not judge (no floats, tags or
        # simple values): a large payload of a client is decided here, never decoded whole by
        # cbor2 (and encoded again, and decoded once more to word the error) first.
        try:
            item = read_plain(payload, MAX_ITEMS if from_client else None, strict=from_client)
        except TooManyItems as exc:
            raise _remote("payload holds too many items", _too_many(str(exc))) from None
        except NotPlain as exc:
            raise _remote("payload is not a message in canonical CBOR", str(exc)) from None
    read = item is not None
    if not read and not isinstance(payload, bytes):
        payload = bytes(payload)
    try:
        if not read:
            item = cbor2.loads(
                payload,
                semantic_decoders=_NO_TAGS,
                tag_hook=_reject_tag,
                max_depth=MAX_NESTING,
                allow_indefinite=False,
                allow_duplicate_keys=False,
                strict_hashable_types=True,
            )
    except (cbor2.CBORError, ValueError, TypeError, OverflowError) as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        raise _remote("payload is not a valid CBOR item", f"{exc}{cause}") from None
    if from_client and not read and len(payload) > MAX_ITEMS and _items(item) > MAX_ITEMS:
        # a payload of fewer bytes than MAX_ITEMS holds fewer items (each takes one byte)
        raise _remote("payload holds too many items", _too_many(f"more than {MAX_ITEMS}"))
    if type(item) is not dict:
        raise _remote("payload is not a map", f"got {describe(item)}")
    name = item.get("type")
    if type(name) is not str:
        detail = "no 'type' field" if name is None else f"'type' is {describe(name)}"
        raise _remote("message has no type", detail)
    schema = schemas.get(name)
    if schema is None:
        known = name in FROM_CLIENT or name in FROM_SERVER
        detail = f"{sender}s do not send {name!r}" if known else f"{name[:40]!r}"
        raise _remote("unknown message type" if not known else "wrong direction", detail)
    if schema.event is Hello:
        asked = item.get("version")
        if type(asked) is int and asked >= 0 and asked not in SUPPORTED_VERSIONS:
            raise UnsupportedVersion(asked)
        if type(asked) is int and asked in SUPPORTED_VERSIONS:
            version = asked  # a hello's fields are those of the version it asks for
    if schema.since > version:
        detail = f"it needs protocol version {schema.since}; the connection speaks {version}"
        raise _remote(f"invalid {name!r} message", detail)
    values = []
    extra: dict[str, object] = {}
    key = "type"
    try:
        if len(item) == len(schema.keys) or version < 2 or not schema.optional:
            check_keys(item, schema.keys)
        else:
            names = {k for k, _, _, since in schema.optional if since <= version}
            present = [k for k in item if k in names]
            check_keys(item, canonical_order([*schema.keys, *present]))
        for key, kind in schema.fields_at(version):
            values.append(kind.decode(item[key]))
        for key, kind, default, _ in schema.optional:
            if key in item:
                value = kind.decode(item[key])
                if value == default:
                    raise InvalidField("has its default value: leave it out")
                extra[key] = value
    except InvalidField as exc:
        where = "" if key == "type" else f"field {key!r}: "
        raise _remote(f"invalid {name!r} message", f"{where}{exc}") from None
    if (not read or schema.has_float) and cbor2.dumps(item, canonical=schema.has_float) != payload:
        raise _remote(f"invalid {name!r} message", _non_canonical(bytes(payload)))
    return cast(Message, schema.event(*values, **extra))


def _too_many(what: str) -> str:
    return f"{what} CBOR items, where a client's message holds at most {MAX_ITEMS}"


def _items(item: object) -> int:
    """How many CBOR items ``item`` (as cbor2 decoded it, at most :data:`MAX_NESTING` deep)
    holds, itself included, keys included."""
    if type(item) is list:
        return 1 + sum(map(_items, item))
    if type(item) is dict:
        return 1 + len(item) + sum(map(_items, item.values()))
    return 1


def _non_canonical(payload: bytes) -> str:
    """Why a well-formed payload differs from its deterministic re-encoding."""
    stream = io.BytesIO(payload)
    cbor2.CBORDecoder(stream, semantic_decoders=_NO_TAGS, read_size=1).decode()
    trailing = len(payload) - stream.tell()
    if trailing:
        return f"{trailing} trailing byte(s) after the map"
    return "not in deterministic CBOR encoding (RFC 8949 section 4.2.1: shortest forms)"
