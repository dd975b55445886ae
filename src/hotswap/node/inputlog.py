"""The input log: acknowledged inputs appended to a file beside the store, ahead of SQLite.

A commit that holds a few inputs and nothing else (a lone client's input, a turn of a few
clients) writes them here, one ``write`` of checksummed frames to a file opened with
``O_APPEND``, instead of a SQLite transaction: about 3 us where the transaction cost 20 to 25.
The rows go into SQLite's ``log`` table later, many in one transaction (:meth:`Store.settle
<hotswap.node.store.Store.settle>`, or the next full commit), and the file is then cut back to
its header. So SQLite's log always holds a prefix of the entries, by seq, and this file the
entries after it; opening the store writes what the file holds past SQLite's last entry into
SQLite before anything reads the log (:meth:`InputLog.read`), so recovery reads one log.

The file (``DATA/node.inputs``; docs/node.md, "The input log"): a header line, ``hotswap-inputs
1\\n``, then frames, each ``u32 length | u32 crc32 | body`` (little-endian; the CRC-32 is of
the body), the body ``u8 kind | i64 seq | i64 count | f64 time | u16 machine | u8 identity |
u32 payload`` (the three lengths in bytes) and those three strings (UTF-8, ASCII hex, the
input's bytes); a keyed input (kind 2) adds ``u16 key`` and the key (UTF-8). ``count`` is the
default instance's input count after this input (kind 1), or the generation a keyed input ran
on (kind 2; -1 for none).

A write is acknowledged only once ``write`` returned (and, with ``--fsync``, ``fdatasync``):
a write cut short (the process killed in it, power lost) was never acknowledged, and since a
write's frames go in seq order it leaves a prefix of its entries and perhaps a torn frame;
reading stops at the first frame that does not check (:attr:`Read.dropped` says how many
bytes it left out, and the node's trace says so at start).
"""

from __future__ import annotations

import os
import struct
import zlib
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from hotswap.errors import StoreError

#: The file's first line: its format and version.
HEADER = b"hotswap-inputs 1\n"
#: A default instance's input: (seq, machine, identity, payload, inputs, time), the row of
#: ``store._INPUT``.
DEFAULT = 1
#: A keyed instance's input: (seq, machine, identity, payload, time, key, generation), the row
#: of ``store._KEYED_INPUT``.
KEYED = 2

_FRAME = struct.Struct("<II")
_BODY = struct.Struct("<BqqdHBI")
_KEY = struct.Struct("<H")
#: No frame is longer: a payload is bounded far below (the protocol's frame limit).
MAX_FRAME = 1 << 30

DefaultRow = tuple[int, str, str, bytes, int, float]
KeyedRow = tuple[int, str, str, bytes, float, str, "int | None"]


@dataclass
class Read:
    """What :meth:`InputLog.read` found: the rows, in file order; the bytes of a torn end it
    left out (0: none), a write cut short, which was never acknowledged; and ``damage``, what
    is wrong where the file stops reading as frames before its end (None: nothing), in which
    case the rows are those before the damage, and those after it are lost."""

    inputs: list[DefaultRow] = field(default_factory=list)
    keyed: list[KeyedRow] = field(default_factory=list)
    dropped: int = 0
    damage: str | None = None


class InputLog:
    """The open file. :meth:`append` and :meth:`clear` raise :class:`StoreError` on a failed
    write (the caller acknowledges nothing of it)."""

    def __init__(self, path: Path, fsync: bool) -> None:
        self.path = path
        self._fsync = fsync
        self._names: dict[str, bytes] = {}  # machine name -> its UTF-8 (most inputs: a few)
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise StoreError(f"cannot open the input log {path}: {e}") from None
        #: Bytes in the file (its header included), as this process wrote or found them.
        self.size = os.fstat(self._fd).st_size

    def read(self) -> Read:
        """The frames the file holds (:class:`Read`). An empty file gets its header.

        A write cut short leaves a prefix of its bytes at the very end: a frame whose header
        or body runs past the end of the file, or zeros (space a file system allocated and
        never wrote, after power loss). Anything else that does not read as a frame (a
        checksum that fails on a whole frame, fields that do not fill it, another header) is
        damage, which the store refuses unless told to accept the loss."""
        try:
            data = os.pread(self._fd, self.size, 0)
        except OSError as e:
            raise StoreError(f"cannot read the input log {self.path}: {e}") from None
        if not data:
            self._write(HEADER)
            return Read()
        if not data.startswith(HEADER):
            first = data[: len(HEADER)].decode("ascii", "backslashreplace")
            return Read(
                damage=f"it does not begin with the line {HEADER.decode().strip()!r} (it begins "
                f"with {first!r}): not an input log this release writes (a newer release's, or "
                "another file)"
            )
        found = Read()
        at, end = len(HEADER), len(data)
        view = memoryview(data)
        while at + _FRAME.size <= end:
            length, crc = _FRAME.unpack_from(data, at)
            body = view[at + _FRAME.size : at + _FRAME.size + length]
            if len(body) < length <= MAX_FRAME:
                break  # the body runs past the end: a write cut short
            if length < _BODY.size or len(body) < length or zlib.crc32(body) != crc:
                if not any(view[at:]):
                    break  # zeros to the end: allocated, never written (power loss)
                found.damage = f"the frame at byte {at:,} does not check (its checksum fails)"
                break
            problem = self._frame(bytes(body), found)
            if problem is not None:
                found.damage = f"the frame at byte {at:,} checks but is not an input ({problem})"
                break
            at += _FRAME.size + length
        if found.damage is None:
            found.dropped = end - at
        return found

    def _frame(self, body: bytes, found: Read) -> str | None:
        """Add the entry of one frame whose checksum holds to ``found``; or what is wrong
        with it, if its fields do not fill it exactly (only another writer makes one)."""
        kind, seq, count, when, m, i, p = _BODY.unpack_from(body)
        o = _BODY.size
        try:
            if kind not in (DEFAULT, KEYED):
                raise ValueError(f"kind {kind}")
            machine = body[o : o + m].decode("utf-8")
            identity = body[o + m : o + m + i].decode("ascii")
            payload = body[o + m + i : o + m + i + p]
            o += m + i + p
            if kind == DEFAULT:
                if o != len(body):
                    raise ValueError(f"{len(body)} bytes for fields of {o}")
                found.inputs.append((seq, machine, identity, payload, count, when))
                return None
            if o + _KEY.size > len(body):
                raise ValueError("no key length")
            (k,) = _KEY.unpack_from(body, o)
            if o + _KEY.size + k != len(body):
                raise ValueError(f"{len(body)} bytes for fields of {o + _KEY.size + k}")
            key = body[o + _KEY.size :].decode("utf-8")
        except (ValueError, UnicodeDecodeError) as e:
            return str(e)
        generation = None if count < 0 else count
        found.keyed.append((seq, machine, identity, payload, when, key, generation))
        return None

    def set_aside(self) -> Path:
        """Keep the file's bytes as they are under a new name (``node.inputs.damaged``, or
        ``.damaged-2`` and so on), and start this one again from its header: what
        ``--accept-loss`` does with a damaged input log, after taking the entries before the
        damage."""
        n, aside = 1, self.path.with_name(self.path.name + ".damaged")
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.damaged-{n}")
        try:
            data = os.pread(self._fd, self.size, 0)
            aside.write_bytes(data)
            os.ftruncate(self._fd, 0)
        except OSError as e:
            raise StoreError(f"setting the input log {self.path} aside failed: {e}") from None
        self.size = 0
        self._write(HEADER)
        return aside

    def append(self, inputs: list[DefaultRow], keyed: list[KeyedRow]) -> None:
        """Write the frames of ``inputs`` and ``keyed`` in one ``write`` (and sync them with
        ``--fsync``): once this returns they are as durable as a commit. The frames go in seq
        order, so that a write cut short (a process killed in it, power lost) leaves a
        prefix of the entries, never one with a gap."""
        frames = [
            self._frame_of(DEFAULT, seq, count, when, name, identity, payload, b"")
            for seq, name, identity, payload, count, when in inputs
        ]
        seqs = [row[0] for row in inputs]
        for seq, name, identity, payload, when, key, generation in keyed:
            k = key.encode()
            count = -1 if generation is None else generation
            tail = _KEY.pack(len(k)) + k
            frames.append(self._frame_of(KEYED, seq, count, when, name, identity, payload, tail))
            seqs.append(seq)
        if inputs and keyed:  # each list is in seq order; together they interleave
            frames = [frame for _, frame in sorted(zip(seqs, frames, strict=True))]
        self._write(b"".join(frames) if len(frames) > 1 else frames[0])

    def _frame_of(
        self,
        kind: int,
        seq: int,
        count: int,
        when: float,
        name: str,
        identity: str,
        payload: bytes,
        tail: bytes,
    ) -> bytes:
        """One frame: its length and checksum, then the body (``tail``: a keyed input's key)."""
        m = self._names.get(name) or self._names.setdefault(name, name.encode())
        head = _BODY.pack(kind, seq, count, when, len(m), len(identity), len(payload))
        data = b"%b%b%b%b%b" % (head, m, identity.encode(), payload, tail)
        return _FRAME.pack(len(data), zlib.crc32(data)) + data

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            if self._fsync:
                getattr(os, "fdatasync", os.fsync)(self._fd)
        except OSError as e:
            with suppress(OSError):  # no torn frame left for later frames to follow
                os.ftruncate(self._fd, self.size)
            raise StoreError(f"writing the input log {self.path} failed: {e}") from None
        self.size += len(data)

    def clear(self) -> None:
        """Cut the file back to its header: SQLite's log holds every frame it had (committed;
        with ``--fsync``, synced). A crash before this leaves frames that SQLite holds too,
        which :meth:`read` returns and the store skips by their seq."""
        try:
            os.ftruncate(self._fd, len(HEADER))
        except OSError as e:
            raise StoreError(f"cutting back the input log {self.path} failed: {e}") from None
        self.size = len(HEADER)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
