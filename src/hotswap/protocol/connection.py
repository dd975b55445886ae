"""Sans-IO connections: bytes in, events out; events in, bytes out (the h11 model).

A node wraps each accepted socket in a :class:`ServerConnection`, a client its socket in a
:class:`ClientConnection`. Neither does any I/O: the caller passes received bytes to
``receive_data`` (``b""`` at end of input), pulls events with ``next_event`` until it returns
``NEED_DATA``, and writes whatever ``send`` returns. Timeouts are the caller's job too
(docs/protocol.md, "Recommended timeouts").

Both ends walk the same table (states.py). On top of it a connection tracks the requests
awaiting a reply, in order, so that every reply answers the oldest one with the right kind of
message, and the frame limits each side announced in the handshake.

Errors. Our own misuse raises LocalProtocolError, the peer's RemoteProtocolError; either moves
the connection to the sticky ERROR state, except :class:`FrameTooLarge`, which rejects one
event before anything changes so that the caller can send something smaller instead. After the
*client's* violation a server may still answer the requests it received and send one
``Goodbye`` (``ServerConnection.failure`` is the one to send).
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar, NoReturn, assert_never

from hotswap.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from hotswap.protocol.codec import UnsupportedVersion, decode_message, encode_message
from hotswap.protocol.events import (
    HANDSHAKE_MAX_FRAME,
    NEED_DATA,
    SUPPORTED_VERSIONS,
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
    Event,
    GetModule,
    Goodbye,
    Hello,
    InstancesReply,
    InstancesRequest,
    Machines,
    MachinesReply,
    Message,
    ModuleReply,
    NeedData,
    Output,
    Release,
    Released,
    Reply,
    Request,
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
from hotswap.protocol.fastpath import Input, output_payload, read_request
from hotswap.protocol.framing import LENGTH, PREFIX_SIZE, FrameReader, frame
from hotswap.protocol.states import (
    CLIENT,
    ERROR,
    ERROR_CODES,
    GOODBYE_CODES,
    HELLO,
    KIND_OF,
    READY,
    REPLY_TO,
    SERVER,
    TRANSITIONS,
    Role,
    State,
    expected_kinds,
)


class FrameTooLarge(LocalProtocolError):
    """An event does not fit in the peer's ``max_frame``; it was not sent, nothing changed."""


class Connection:
    """One end of a hotswap connection; use ClientConnection or ServerConnection."""

    our_role: ClassVar[Role]
    their_role: ClassVar[Role]

    def __init__(self) -> None:
        self._state = HELLO
        self._reader = FrameReader(HANDSHAKE_MAX_FRAME)
        self._their_max_frame = HANDSHAKE_MAX_FRAME
        self._hello: Hello | None = None
        self._pending: deque[tuple[int, type]] = deque()
        self._pending_ids: set[int] = set()
        self._blame: Role | None = None
        self._error: ProtocolError | None = None
        self._goodbye_sent = False
        self._eof_reported = False

    # --- observers --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """Where the conversation is (states.py)."""
        return self._state

    @property
    def version(self) -> int | None:
        """The protocol version agreed on, once the client's hello is sent or received."""
        return None if self._hello is None else self._hello.version

    @property
    def pending(self) -> tuple[int, ...]:
        """Ids of the requests awaiting a reply, oldest first."""
        return tuple(request_id for request_id, _ in self._pending)

    @property
    def their_max_frame(self) -> int:
        """Largest payload the peer accepts: the limit ``send`` enforces."""
        return self._their_max_frame

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as events: an unfinished frame, or frames
        not read yet."""
        return self._reader.buffered

    @property
    def our_max_frame(self) -> int:
        """Largest payload we accept now: the limit ``next_event`` enforces."""
        return self._reader.max_frame

    # --- bytes in, events out ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes received from the peer; ``b""`` means the peer closed its side."""
        if self._reader.closed and data:
            self._fail(self.our_role, LocalProtocolError("receive_data() after end of input"))
        if data:
            self._reader.feed(data)
        else:
            self._reader.close()

    def next_event(self) -> Event | NeedData:
        """The next event from the peer, or NEED_DATA until more bytes arrive."""
        if self._state is ERROR:
            self._raise_again()
        event: Event
        try:
            payload = self._reader.next_view()  # a large frame is not copied out
            if payload is not None:
                event = decode_message(
                    payload, from_client=self.our_role is SERVER, version=self.version or 1
                )
            elif not self._reader.closed:
                return NEED_DATA
            elif self._reader.truncated:
                msg = (
                    f"connection closed inside a frame "
                    f"({self._reader.buffered} byte(s) of it received)"
                )
                raise RemoteProtocolError(msg)
            elif self._eof_reported:
                return ConnectionClosed()
            else:
                self._eof_reported = True
                event = ConnectionClosed()
            self._advance(event, self.their_role)
        except UnsupportedVersion as exc:
            if self._state is not HELLO:  # a second hello is out of place, whatever its version
                msg = f"client sent Hello in state {self._state.value}"
                self._fail(self.their_role, RemoteProtocolError(msg))
            self._fail(self.their_role, exc)
        except RemoteProtocolError as exc:
            self._fail(self.their_role, exc)
        return event

    # --- events in, bytes out ---------------------------------------------------------------

    def send(self, event: Message) -> bytes:
        """The bytes to write for ``event``; raises if we may not send it now.

        An event that cannot be encoded (an ill-formed field) or is too large for the peer is
        refused with nothing sent and nothing changed; sending an event the conversation does
        not allow moves the connection to ERROR."""
        payload = encode_message(event, self.version or 1)
        if len(payload) > self._their_max_frame:
            msg = (
                f"{type(event).__name__} needs a frame of {len(payload)} bytes; "
                f"the peer accepts at most {self._their_max_frame}"
            )
            raise FrameTooLarge(msg)
        try:
            self._advance(event, self.our_role)
        except LocalProtocolError as exc:
            self._fail(self.our_role, exc)
        return frame(payload)

    # --- the rules --------------------------------------------------------------------------

    def _violation(self, sender: Role, message: str) -> ProtocolError:
        if sender is self.our_role:
            return LocalProtocolError(message)
        return RemoteProtocolError(message)

    def _advance(self, event: Event, sender: Role) -> None:
        """Apply ``sender`` sending ``event``, or raise if that breaks a rule (nothing changes)."""
        state = self._state
        if state is ERROR and not (
            sender is SERVER and self._blame is CLIENT and not self._goodbye_sent
        ):
            msg = f"cannot send {type(event).__name__} after: {self._error}"
            raise self._violation(sender, msg)
        new_state = TRANSITIONS.get((state, sender, KIND_OF[type(event)]))
        if new_state is None:
            allowed = " or ".join(expected_kinds(state, sender)) or "nothing"
            msg = f"{sender.value} sent {type(event).__name__} in state {state.value}; "
            raise self._violation(sender, f"{msg}allowed: {allowed}")
        match event:  # the two hot cases first: each class pattern is an isinstance test
            case Send():
                self._request(event, sender)
            case Output():
                self._reply(event, sender)
            case (
                SendChecked()
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
                self._request(event, sender)
            case (
                Upgraded()
                | Released()
                | StatusReply()
                | MachinesReply()
                | ModuleReply()
                | DryRunReport()
                | TrialEnded()
                | InstancesReply()
                | Deleted()
                | Deployed()
                | Error()
            ):
                self._reply(event, sender)
            case Hello():
                if event.version not in SUPPORTED_VERSIONS:
                    if sender is self.their_role:
                        raise UnsupportedVersion(event.version)
                    raise LocalProtocolError(f"version {event.version} is not supported")
                self._hello = event
                if sender is CLIENT and self.our_role is SERVER:
                    self._their_max_frame = event.max_frame
            case Welcome():
                assert self._hello is not None  # the table puts welcome after hello
                if event.version != self._hello.version:
                    asked = self._hello.version
                    msg = f"welcome for version {event.version} answers hello for {asked}"
                    raise self._violation(sender, msg)
                if self.our_role is SERVER:
                    self._reader.max_frame = event.max_frame
                else:
                    self._reader.max_frame = self._hello.max_frame
                    self._their_max_frame = event.max_frame
            case Goodbye():
                if event.code not in GOODBYE_CODES:
                    msg = f"goodbye cannot carry code {str(event.code)!r}"
                    raise self._violation(sender, msg)
                if self.our_role is SERVER:
                    self._goodbye_sent = True
            case ConnectionClosed():
                pass
            case _:
                assert_never(event)
        if state is not ERROR:
            self._state = new_state

    def _request(self, request: Request, sender: Role) -> None:
        """Record an outstanding request; its id must not be outstanding already."""
        if request.id in self._pending_ids:
            msg = f"duplicate request id {request.id}: still awaiting its reply"
            raise self._violation(sender, msg)
        self._pending.append((request.id, type(request)))
        self._pending_ids.add(request.id)

    def _reply(self, reply: Reply, sender: Role) -> None:
        """Retire the oldest request, which ``reply`` must answer with a message fit for it."""
        pending = self._pending
        if not pending or pending[0][0] != reply.id:
            if reply.id in self._pending_ids:
                first = pending[0][0]
                msg = f"reply to request {reply.id} out of order: request {first} came first"
            else:
                msg = f"reply to unknown request id {reply.id}"
            raise self._violation(sender, msg)
        request = pending[0][1]
        if type(reply) is Error:
            if reply.code not in ERROR_CODES[request]:
                msg = f"error code {str(reply.code)!r} cannot answer {request.__name__} {reply.id}"
                raise self._violation(sender, msg)
        elif type(reply) is not REPLY_TO[request]:
            msg = f"{type(reply).__name__} cannot answer {request.__name__} {reply.id}"
            raise self._violation(sender, msg)
        pending.popleft()
        self._pending_ids.discard(reply.id)

    def _fail(self, blame: Role, exc: ProtocolError) -> NoReturn:
        """Enter ERROR for good, remembering the first violation, and raise ``exc``."""
        if self._error is None:
            self._blame = blame
            self._error = exc
        self._state = ERROR
        raise exc

    def _raise_again(self) -> NoReturn:
        msg = f"connection is in the ERROR state after: {self._error}"
        if self._blame is self.our_role:
            raise LocalProtocolError(msg)
        raise RemoteProtocolError(msg)


class ClientConnection(Connection):
    """The client's end: sends Hello and requests, receives Welcome, replies and Goodbye."""

    our_role = CLIENT
    their_role = SERVER


class ServerConnection(Connection):
    """The node's end: receives Hello and requests, sends Welcome, replies and Goodbye."""

    our_role = SERVER
    their_role = CLIENT

    def __init__(self) -> None:
        super().__init__()
        #: The inputs :meth:`look_ahead` read from the frames at the front of the buffer, in
        #: order, each with its payload's length; :meth:`next_input` hands them out, and
        #: taking a frame as an event forgets them (the reader's ``ahead``, one object).
        self.ahead: deque[tuple[int, Input]] = self._reader.ahead

    # --- the hot path: inputs in, outputs out, with no event made -------------------------

    def next_input(self) -> Input | None:
        """The next frame's ``send`` or ``send_checked`` as :func:`read_request` reads it, if
        it is one in the canonical layout that may come now (the conversation ready, no reply
        owed, its fields known to the version agreed on); None otherwise, with nothing taken
        (:meth:`next_event` then reads it, and says what is wrong with it if anything is).

        The caller answers it before reading on: with :meth:`output_frame`, or, for any other
        reply, :meth:`expect` and then :meth:`send`."""
        if self._state is not READY or self._pending:
            return None
        reader = self._reader
        ahead = self.ahead
        if ahead:  # read already (look_ahead)
            length, taken = ahead.popleft()
            reader.skip(length)
            return taken
        payload = reader.peek()
        if payload is None:
            return None
        fields = read_request(payload)
        if fields is None:
            return None
        assert self._hello is not None  # READY comes after the hello
        version = self._hello.version
        if version < 3 and (fields[5] is not None or (version < 2 and not fields[4])):
            return None  # a key before version 3, no state before 2: refused the long way
        reader.skip(len(payload))
        return fields

    def look_ahead(self, limit: int) -> deque[tuple[int, Input]]:
        """The inputs :meth:`next_input` will hand out next (up to ``limit``, each with its
        payload's length), read now and kept for it, so each frame is read once: a node reads
        ahead the instances they go to in one query. It stops at the first frame that is not
        such an input. It reads nothing (and returns what is left) while inputs read ahead are
        left, while the connection is not ready or owes a reply, and while at most one frame
        has arrived (whole or not); the frames stay in the buffer until :meth:`next_input`
        takes them."""
        ahead = self.ahead
        if ahead or self._state is not READY or self._pending:
            return ahead
        reader = self._reader
        if not reader.beyond_first():
            return ahead  # a frame at most: next_input reads it as it comes
        assert self._hello is not None  # READY comes after the hello
        version = self._hello.version
        peek_at, append = reader.peek_at, ahead.append
        offset = 0
        room = limit
        while room:  # as next_input reads a frame, written out: this runs once an input
            payload = peek_at(offset)
            if payload is None:
                break
            fields = read_request(payload)
            if fields is None or (
                version < 3 and (fields[5] is not None or (version < 2 and not fields[4]))
            ):
                break
            size = len(payload)
            append((size, fields))
            offset += PREFIX_SIZE + size
            room -= 1
        return ahead

    def output_frame(self, request_id: int, output: bytes, state: bytes) -> bytes:
        """The frame of the ``output`` answering the input :meth:`next_input` just read
        (FrameTooLarge if the client does not take it: answer with :meth:`expect` and an
        Error then)."""
        payload = output_payload(request_id, output, state)
        if len(payload) > self._their_max_frame:
            msg = (
                f"Output needs a frame of {len(payload)} bytes; "
                f"the peer accepts at most {self._their_max_frame}"
            )
            raise FrameTooLarge(msg)
        return LENGTH.pack(len(payload)) + payload

    def expect(self, request_id: int, checked: bool) -> None:
        """Record the input :meth:`next_input` just read (a ``send_checked`` if ``checked``)
        as awaiting a reply, which :meth:`send` then sends as any other."""
        self._pending.append((request_id, SendChecked if checked else Send))
        self._pending_ids.add(request_id)

    @property
    def failure(self) -> Goodbye | None:
        """After the client's violation, the goodbye to send before closing; else None."""
        if self._blame is not CLIENT or self._goodbye_sent:
            return None
        if isinstance(self._error, UnsupportedVersion):
            return Goodbye(ErrorCode.UNSUPPORTED_VERSION, str(self._error))
        return Goodbye(ErrorCode.BAD_REQUEST, str(self._error))
