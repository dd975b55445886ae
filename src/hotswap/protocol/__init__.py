"""The wire protocol, sans-IO: bytes in, events out (docs/protocol.md is the specification).

This layer sits between ``cam`` and ``node`` but imports neither, nor any I/O: values, types and
modules are opaque ``bytes`` here. A node wraps each socket in a :class:`ServerConnection`, a
client in a :class:`ClientConnection`; both turn received bytes into the frozen event classes
below and events into bytes to write, enforcing the conversation of ``states.py``.

- ``framing``: 4-byte big-endian length prefix, limits checked before buffering.
- ``fields``, ``codec``: one deterministic CBOR map per message, every field checked strictly.
- ``states``: the conversation as a transition table.
- ``connection``: the two ends.
"""

from hotswap.protocol.codec import UnsupportedVersion, decode_message, encode_message
from hotswap.protocol.connection import (
    ClientConnection,
    Connection,
    FrameTooLarge,
    ServerConnection,
)
from hotswap.protocol.events import (
    DEFAULT_AGENT,
    DEFAULT_MAX_FRAME,
    HANDSHAKE_MAX_FRAME,
    MAX_FRAME_LIMIT,
    MAX_UINT,
    NEED_DATA,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    ConnectionClosed,
    Error,
    ErrorCode,
    Event,
    GetModule,
    Goodbye,
    Hello,
    HistoryEntry,
    HistoryKind,
    MachineEntry,
    Machines,
    MachinesReply,
    Message,
    ModuleReply,
    NeedData,
    Output,
    Release,
    Released,
    ReleasedEntry,
    ReleaseItem,
    Reply,
    Request,
    Send,
    SendChecked,
    Status,
    StatusReply,
    Upgraded,
    UpgradeRequest,
    Welcome,
)
from hotswap.protocol.framing import FrameReader, frame
from hotswap.protocol.states import Role, State

__all__ = [
    "DEFAULT_AGENT",
    "DEFAULT_MAX_FRAME",
    "HANDSHAKE_MAX_FRAME",
    "MAX_FRAME_LIMIT",
    "MAX_UINT",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "ClientConnection",
    "Connection",
    "ConnectionClosed",
    "Error",
    "ErrorCode",
    "Event",
    "FrameReader",
    "FrameTooLarge",
    "GetModule",
    "Goodbye",
    "Hello",
    "HistoryEntry",
    "HistoryKind",
    "MachineEntry",
    "Machines",
    "MachinesReply",
    "Message",
    "ModuleReply",
    "NeedData",
    "Output",
    "Release",
    "ReleaseItem",
    "Released",
    "ReleasedEntry",
    "Reply",
    "Request",
    "Role",
    "Send",
    "SendChecked",
    "ServerConnection",
    "State",
    "Status",
    "StatusReply",
    "UnsupportedVersion",
    "UpgradeRequest",
    "Upgraded",
    "Welcome",
    "decode_message",
    "encode_message",
    "frame",
]
