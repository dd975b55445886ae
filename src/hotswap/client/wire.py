"""What every client connection shares, sans-IO: the protocol connection, the handshake, the
rule that an unanswered request makes the connection unusable, and every error message.

A request that fails without a reply (timeout, lost connection, protocol error, an interrupt or
a cancellation while waiting) leaves its outcome unknown: a late reply would otherwise be taken
for the answer to the next request (docs/protocol.md, section 11). The connection is then
*broken*: later calls raise ``NodeError`` ``unreachable`` and the caller opens a new one.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from hotswap.address import check_machine_name
from hotswap.auth import LOCAL_TOKEN
from hotswap.client.session import Input, Session
from hotswap.errors import HotswapError, NodeError, ProtocolError
from hotswap.protocol.connection import ClientConnection
from hotswap.protocol.events import (
    NEED_DATA,
    PROTOCOL_VERSION,
    Confirm,
    ConnectionClosed,
    Delete,
    Deploy,
    DryRun,
    GetModule,
    Goodbye,
    Hello,
    InstancesRequest,
    NeedData,
    Output,
    Request,
    Revert,
    Send,
    SendChecked,
    Status,
    UpgradeRequest,
    Welcome,
)
from hotswap.protocol.fastpath import CheckedParts, read_output, send_checked_frame
from hotswap.protocol.fields import IDENTITY, InvalidField, key_problem
from hotswap.protocol.states import ERROR, READY

DEFAULT_TIMEOUT = 30.0
#: The version a client says hello with again, on a new connection, when a node refuses the
#: latest as unsupported (a node of the previous release, during a rolling upgrade of nodes).
FALLBACK_VERSION = 3


def older_node(error: NodeError, version: int) -> bool:
    """Whether ``error``, the answer to a hello of ``version``, asks for the fallback."""
    return error.code == "unsupported_version" and version > FALLBACK_VERSION


def check_identity(identity: str) -> None:
    try:
        IDENTITY.encode(identity)
    except InvalidField:
        msg = f"bad identity {identity!r}: expected 64 lowercase hex digits"
        raise HotswapError(msg) from None


def check_key(key: object, what: str = "key") -> None:
    """Refuse what is not an instance key (1 to 256 bytes of UTF-8, no NUL), saying why."""
    if not isinstance(key, str):
        raise HotswapError(f"bad {what} {key!r}: an instance key is a string (str)")
    problem = key_problem(key)
    if problem is not None:
        raise HotswapError(f"bad {what} {key[:40]!r}: {problem}")


def check_request(event: Request) -> None:
    """Refuse, before the connection sees any of a batch, a request whose fields the protocol
    cannot carry, with a message that names the field: one mistyped machine name must not leave
    half a pipeline sent."""
    for what in ("key", "prefix", "after"):
        value = getattr(event, what, None)
        if value is not None:
            check_key(value, what)
    match event:
        case (
            Send(machine=name)
            | SendChecked(machine=name)
            | Status(machine=name)
            | Confirm(machine=name)
            | Revert(machine=name)
            | InstancesRequest(machine=name)
            | Delete(machine=name)
            | Deploy(machine=name)
        ):
            check_machine_name(name)
        case (
            UpgradeRequest(machine=name, expected=expected)
            | DryRun(machine=name, expected=expected)
        ):
            check_machine_name(name)
            check_identity(expected)
        case GetModule(identity=identity):
            check_identity(identity)
        case _:
            pass


def default_token(address: str) -> str | None:
    """``$HOTSWAP_TOKEN``; else, for a node on this machine (a loopback address), the token its
    data directory holds (``$HOTSWAP_DATA``, default ``hotswap-data``); else none. A token from
    a file is never sent to another machine."""
    token = os.environ.get("HOTSWAP_TOKEN")
    if token:
        return token
    host = address.rpartition(":")[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    path = Path(os.environ.get("HOTSWAP_DATA", "hotswap-data")) / LOCAL_TOKEN
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class LeanConnection(ClientConnection):
    """The client's end, with a hot path beside ``send`` and ``next_event`` for the one message
    an input needs each way (as ``ServerConnection.next_input`` is the node's): a
    ``send_checked`` written from its fixed parts, and a canonical ``output`` read with no
    codec, both only where the long way would do exactly the same (the conversation ready,
    the fields of their kinds, the reply answering the oldest request); anything else is left
    to ``send`` and ``next_event``, which say what is wrong. The bytes, the requests awaiting
    replies and the errors are the same either way."""

    def send_input(
        self, parts: CheckedParts, request_id: int, data: bytes, version: int
    ) -> bytes | None:
        """The frame of ``SendChecked(request_id, ..., data, False, key)`` from its ``parts``
        (``fastpath.send_checked_parts``), the request recorded as awaiting its reply, as
        ``send`` would; None, with nothing changed, unless the conversation is ready, the id
        is not awaiting a reply already, the frame is within the node's limit and the version
        agreed on (at least ``version``) has every field it uses."""
        if self._state is not READY or request_id in self._pending_ids:
            return None
        hello = self._hello
        if hello is None or hello.version < version:
            return None
        data_frame = send_checked_frame(parts, request_id, data, self._their_max_frame)
        if data_frame is None:
            return None
        self._pending.append((request_id, SendChecked))
        self._pending_ids.add(request_id)
        return data_frame

    @property
    def drained(self) -> bool:
        """Whether nothing received is left to read and more may come: ``next_event`` would
        return NEED_DATA."""
        reader = self._reader
        return not reader.buffered and not reader.closed and self._state is not ERROR

    def next_output(self) -> Output | None:
        """The next frame as ``next_event`` would return it, if it is an ``output`` in the
        canonical layout that answers the oldest request (a send) in a ready conversation;
        None otherwise, with nothing taken."""
        pending = self._pending
        if self._state is not READY or not pending:
            return None
        reader = self._reader
        payload = reader.peek()
        if payload is None:
            return None
        fields = read_output(payload)
        if fields is None:
            return None
        request_id, kind = pending[0]
        if fields[0] != request_id or (kind is not SendChecked and kind is not Send):
            return None
        reader.skip(len(payload))
        pending.popleft()
        self._pending_ids.discard(request_id)
        return Output(request_id, fields[1], fields[2])


#: The oldest protocol version the hot path writes ``send_checked`` for (its ``"state":
#: false`` needs 2, a key 3; the client speaks 3 or later).
LEAN_VERSION = 3


class Wire:
    """One client connection's protocol state, for a node at ``address``."""

    def __init__(self, address: str, token: str | None = None) -> None:
        self.address = address
        #: Sent in the hello, for a node that authenticates its clients (``--auth``).
        self.token = token if token is not None else default_token(address)
        self.conn = LeanConnection()
        self.session = Session()
        #: Why the connection is unusable, once a request went unanswered.
        self.broken: str | None = None
        self.welcomed = False
        #: Whether the transport is TLS (set by the client that opens it): what to suggest
        #: when the node ends the connection before its welcome.
        self.tls = False

    # --- the handshake ----------------------------------------------------------------------

    def hello(self, version: int = PROTOCOL_VERSION) -> bytes:
        """The hello, for ``version``: the latest, or :data:`FALLBACK_VERSION` for a node of
        the previous release (it lacks only the audit trail's fields)."""
        return self.conn.send(Hello(version=version, token=self.token))

    def welcome(self, event: object) -> Welcome:
        if isinstance(event, Goodbye):
            raise NodeError(str(event.code), f"the node refused the connection: {event.message}")
        if not isinstance(event, Welcome):
            raise NodeError("bad_request", f"node answered hello with {event!r}")
        self.welcomed = True
        return event

    def _before_welcome(self) -> str:
        """What a connection that ends before the node's welcome may mean."""
        if self.welcomed:
            return ""
        if self.tls:
            return (
                " before answering hello (over TLS, a node that requires client certificates "
                "(--tls-ca) ends the session of a client without a valid one: give a "
                "certificate its authority signed, not expired, with --tls-cert and --tls-key "
                "or $HOTSWAP_TLS_CERT and $HOTSWAP_TLS_KEY)"
            )
        return (
            " before answering hello (a node that serves TLS closes plain connections: "
            "connect with TLS, e.g. --tls-ca FILE or $HOTSWAP_TLS_CA)"
        )

    # --- requests and replies ---------------------------------------------------------------

    def encode(self, events: Sequence[Request]) -> bytes:
        """The bytes of a batch of requests, all checked before any is encoded. A request too
        large for the node raises; if requests before it in the batch were already taken by
        the connection, it is broken (they await replies nobody will read)."""
        if self.broken is not None:
            raise NodeError(
                "unreachable", f"the connection to {self.address} is unusable after: {self.broken}"
            )
        for event in events:
            check_request(event)
        try:
            return b"".join(self.conn.send(e) for e in events)
        except HotswapError as e:
            if len(events) > 1:
                self.broken = str(e)
            raise

    def send_input(self, sent: Input) -> bytes | None:
        """The frame of an input on the hot path, as :meth:`encode` would make it of its
        ``SendChecked`` (:meth:`LeanConnection.send_input`, from its lane's parts); None where
        :meth:`encode` must (a connection unusable, a key of no parts, anything unusual), with
        nothing changed."""
        parts = sent.lane.parts_for(sent.key)
        if self.broken is not None or parts is None:
            return None
        return self.conn.send_input(parts, sent.rid, sent.data, LEAN_VERSION)

    def receive(self, data: bytes) -> None:
        self.conn.receive_data(data)

    def next_event(self) -> object | NeedData:
        """The next reply received, or ``NEED_DATA``; a goodbye, the node closing or a protocol
        error raises :class:`NodeError`."""
        output = self.conn.next_output()  # the hot path: an input's output
        if output is not None:
            return output
        try:
            event = self.conn.next_event()
        except ProtocolError as e:
            raise NodeError(
                "bad_request", f"protocol error talking to {self.address}: {e}"
            ) from None
        if isinstance(event, Goodbye):
            raise NodeError(str(event.code), f"node closed the connection: {event.message}")
        if isinstance(event, ConnectionClosed):
            message = f"node at {self.address} closed the connection{self._before_welcome()}"
            raise NodeError("unreachable", message)
        return NEED_DATA if event is NEED_DATA else event

    def unanswered(self, error: BaseException) -> None:
        """A request got no reply: the connection may never be used again."""
        self.broken = str(error) or type(error).__name__

    # --- errors of the transport ------------------------------------------------------------

    def cannot_reach(self, error: BaseException, tls: bool = False) -> NodeError:
        message = f"cannot reach a node at {self.address}: {error}"
        if isinstance(error, ssl.SSLCertVerificationError):
            message += (
                " (the node's certificate must be signed by the authority given as tls_ca, "
                "--tls-ca or $HOTSWAP_TLS_CA, and name the host connected to)"
            )
        elif tls and (
            isinstance(error, (ssl.SSLEOFError, ConnectionResetError))
            or getattr(error, "reason", None) == "UNEXPECTED_EOF_WHILE_READING"
        ):
            message += (
                " (the node ended the connection during the TLS handshake: it may be at its "
                "limit of connections, --max-connections, or not serve TLS; try again later, "
                "and see the node's trace)"
            )
        elif tls and isinstance(error, ssl.SSLError):
            message += " (does the node serve TLS? it is started with --tls-cert and --tls-key)"
        return NodeError("unreachable", message)

    def lost(self, error: BaseException) -> NodeError:
        message = f"lost the node at {self.address}: {error}{self._before_welcome()}"
        return NodeError("unreachable", message)

    def timed_out(self) -> NodeError:
        if not self.welcomed:  # only the hello was sent: nothing to look for
            return NodeError(
                "timeout",
                f"no reply from {self.address} in time to the hello: nothing else was sent "
                "(is a hotswap node listening there, and not overloaded?); the connection "
                "is closed",
            )
        return NodeError(
            "timeout",
            f"no reply from {self.address} in time: what was sent may have been applied or "
            "not (look, with status, before sending it again); the connection is closed",
        )
