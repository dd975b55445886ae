"""Frames: a 4-byte big-endian unsigned length, then that many bytes of payload.

docs/protocol.md, "Framing". The length counts the payload only. A reader enforces its limit
as soon as the four length bytes have arrived, before buffering any of the body, so a peer
cannot make it hold more than one limit's worth of bytes (plus whatever arrived in the same
read). An empty payload is never valid (it is not a CBOR map), so it is rejected here too.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

from hotswap.errors import RemoteProtocolError

LENGTH = struct.Struct(">I")
#: Bytes in the length prefix.
PREFIX_SIZE = LENGTH.size
#: Payloads up to this size are copied out of the buffer the way that is fastest for them.
_SMALL = 1 << 16
#: Payloads of more than this many bytes are handed out as views (``next_view``).
_LARGE = 1 << 20


def frame(payload: bytes) -> bytes:
    """One frame carrying ``payload`` (whose length the caller has checked)."""
    return LENGTH.pack(len(payload)) + payload


class FrameReader:
    """Reassembles frames from arbitrarily split bytes.

    ``max_frame`` may be raised after construction (the handshake raises it); ``feed`` appends
    bytes, ``close`` records end of input, ``next_frame`` returns the next complete payload or
    None. After ``close``, ``truncated`` tells whether bytes of an incomplete frame remain.
    """

    __slots__ = ("_buffer", "ahead", "closed", "max_frame")

    def __init__(self, max_frame: int) -> None:
        self._buffer = bytearray()
        self.max_frame = max_frame
        self.closed = False
        #: What a caller read ahead from the first frames of the buffer (with :meth:`peek_at`),
        #: one item a frame, in order: it takes those frames with :meth:`skip`, in order too.
        #: Any other way of taking a frame forgets them.
        self.ahead: deque[tuple[int, Any]] = deque()

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    def close(self) -> None:
        """Record that no more bytes will arrive."""
        self.closed = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return len(self._buffer)

    @property
    def truncated(self) -> bool:
        """Whether input ended inside a frame."""
        return self.closed and bool(self._buffer)

    def next_frame(self) -> bytes | None:
        """The next complete payload, or None if more bytes are needed.

        Raises RemoteProtocolError for an empty or oversized frame.
        """
        payload = self.next_view()
        return payload if payload is None or isinstance(payload, bytes) else bytes(payload)

    def next_view(self) -> bytes | memoryview | None:
        """:meth:`next_frame`, but a payload of more than a megabyte comes as a view of the
        bytes received, not a copy of them (16 MiB took the event loop 20 ms to copy): the
        reader goes on in a buffer of its own with what followed the frame."""
        if self.ahead:
            self.ahead.clear()
        buffer = self._buffer
        if len(buffer) >= _LARGE + PREFIX_SIZE:
            (length,) = LENGTH.unpack_from(buffer)
            end = PREFIX_SIZE + length
            if length > _LARGE and length <= self.max_frame and len(buffer) >= end:
                self._buffer = bytearray(memoryview(buffer)[end:])
                return memoryview(buffer)[PREFIX_SIZE:end]
        if len(buffer) < PREFIX_SIZE:
            return None
        (length,) = LENGTH.unpack_from(buffer)
        if length > self.max_frame or length == 0:
            raise RemoteProtocolError(self._bad_length(length))
        end = PREFIX_SIZE + length
        if len(buffer) < end:
            return None
        if length <= _SMALL:
            payload = bytes(buffer[PREFIX_SIZE:end])
        else:  # one copy instead of two: a bytearray slice is itself a copy
            with memoryview(buffer) as view:
                payload = bytes(view[PREFIX_SIZE:end])
        # Deleting from the front of a bytearray is amortised O(1) in CPython.
        del buffer[:end]
        return payload

    def peek(self) -> bytes | None:
        """A copy of the next payload if it is complete and of at most :data:`_SMALL` bytes
        (and valid in length), left in the buffer: :meth:`skip` then takes it, or
        :meth:`next_view` hands it out again. None otherwise."""
        buffer = self._buffer
        if len(buffer) < PREFIX_SIZE:
            return None
        (length,) = LENGTH.unpack_from(buffer)
        end = PREFIX_SIZE + length
        if length == 0 or length > _SMALL or length > self.max_frame or len(buffer) < end:
            return None
        return bytes(buffer[PREFIX_SIZE:end])

    def peek_at(self, offset: int) -> bytes | None:
        """:meth:`peek` of the frame that starts ``offset`` bytes into the buffer (the end of
        frames peeked before it), left there too."""
        buffer = self._buffer
        start = offset + PREFIX_SIZE
        if len(buffer) < start:
            return None
        (length,) = LENGTH.unpack_from(buffer, offset)
        end = start + length
        if length == 0 or length > _SMALL or length > self.max_frame or len(buffer) < end:
            return None
        return bytes(buffer[start:end])

    def beyond_first(self) -> bool:
        """Whether bytes follow the first frame (whole or not) in the buffer."""
        buffer = self._buffer
        if len(buffer) < PREFIX_SIZE:
            return False
        length: int = LENGTH.unpack_from(buffer)[0]
        return len(buffer) > PREFIX_SIZE + length

    def skip(self, length: int) -> None:
        """Take the frame whose payload of ``length`` bytes :meth:`peek` returned."""
        del self._buffer[: PREFIX_SIZE + length]

    def _bad_length(self, length: int) -> str:
        if length == 0:
            return "frame length is 0: a payload is one CBOR map and cannot be empty"
        head = bytes(self._buffer[:PREFIX_SIZE])
        hint = ""
        if head.isascii() and all(32 <= byte < 127 for byte in head):
            hint = f" (the prefix reads {head!r}: is the peer speaking the hotswap protocol?)"
        return f"frame length {length} exceeds the limit of {self.max_frame} bytes{hint}"
