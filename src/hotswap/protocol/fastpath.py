"""Hand-written codecs for the messages on the hot path: ``send``, ``send_checked``, ``output``.

A node must turn 100,000 inputs a second into outputs (docs/protocol.md, section 13), and
the generic codec (codec.py: cbor2 decode, schema checks, re-encode to confirm determinism) costs
a few microseconds per message. A deterministic encoding makes both messages a fixed sequence of
bytes with three holes, so here they are written by concatenation and read by comparing the
fixed parts and parsing the three heads in place, which checks minimality as it goes.

These functions accept a subset of what the generic codec accepts and agree with it there:
``encode_*`` return None when a field is not of its kind, ``decode_*`` return None on any
deviation from the one canonical layout, and the caller then runs the generic codec, which
produces the error message (tests/test_protocol_properties.py checks the agreement on random and
mutated payloads). Heads follow RFC 8949 section 3: major type in the top three bits, then the
argument in the low five bits or in the next 1, 2, 4 or 8 bytes, always the shortest.
"""

from __future__ import annotations

import re

from hotswap.protocol.events import MAX_KEY_BYTES, MAX_UINT, Output, Send, SendChecked

_UINT, _BYTES, _TEXT = 0x00, 0x40, 0x60
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}").fullmatch

# The fixed parts, in canonical key order: id, key (version 3), code, type, then the others
# shortest key first. A map's head counts its pairs: 4, one more for a key, one more for
# "state": false, one more for the code of a send_checked.
_ID = b"\x62id"  # "id", after the map's head
_KEY = b"\x63key"  # "key", after the request id
_SEND_OPEN = b"\xa4\x62id"  # map(4), "id"
_SEND_MIDDLE = b"\x64type\x64send\x65input"  # "type": "send", "input"
_SEND_MACHINE = b"\x67machine"
_NO_STATE = b"\x65state\xf4"  # "state": false, between the input and the machine
_SEND_OPEN_NO_STATE = b"\xa5\x62id"  # map(5), "id"
_CHECKED_OPEN = b"\xa5\x62id"  # map(5), "id"
_CHECKED_OPEN_NO_STATE = b"\xa6\x62id"  # map(6), "id"
_CHECKED_CODE = b"\x64code\x78\x40"  # "code": text(64)
_CHECKED_MIDDLE = b"\x64type\x6csend_checked\x65input"  # "type": "send_checked", "input"
_IDENTITY = re.compile(rb"[0-9a-f]{64}").fullmatch
_OUTPUT_OPEN = _SEND_OPEN
_OUTPUT_MIDDLE = b"\x64type\x66output\x65state"  # "type": "output", "state"
_OUTPUT_OUTPUT = b"\x66output"


def head(major: int, argument: int) -> bytes:
    """The shortest head for ``major`` (already shifted) and a non-negative argument."""
    if argument < 24:
        return bytes((major | argument,))
    if argument < 0x100:
        return bytes((major | 24, argument))
    if argument < 0x10000:
        return bytes((major | 25,)) + argument.to_bytes(2)
    if argument < 0x100000000:
        return bytes((major | 26,)) + argument.to_bytes(4)
    return bytes((major | 27,)) + argument.to_bytes(8)


def _read_head(payload: bytes, position: int, major: int) -> tuple[int, int]:
    """(argument, next position) of a shortest head of ``major``, or (-1, 0)."""
    if position >= len(payload):
        return -1, 0
    initial = payload[position]
    if initial & 0xE0 != major:
        return -1, 0
    info = initial & 0x1F
    if info < 24:
        return info, position + 1
    if info > 27:
        return -1, 0
    size = 1 << (info - 24)  # 1, 2, 4 or 8 bytes
    end = position + 1 + size
    if end > len(payload):
        return -1, 0
    argument = int.from_bytes(payload[position + 1 : end])
    # shortest form: the argument needs this many bytes (24..255 for one byte)
    if argument < (24 if size == 1 else 1 << (4 * size)):
        return -1, 0
    return argument, end


def encode_send(event: Send) -> bytes | None:
    """The canonical payload of ``event``, or None if a field is not of its kind."""
    tail = _input_and_machine_bytes(event.id, event.input, event.machine, event.state)
    key = _key_bytes(event.key)
    if tail is None or key is None:
        return None
    if not key:
        opening = _SEND_OPEN if event.state is True else _SEND_OPEN_NO_STATE
        return b"".join((opening, head(_UINT, event.id), _SEND_MIDDLE, *tail))
    pairs = bytes((0xA5 if event.state is True else 0xA6,))
    return b"".join((pairs, _ID, head(_UINT, event.id), key, _SEND_MIDDLE, *tail))


def encode_send_checked(event: SendChecked) -> bytes | None:
    """The canonical payload of ``event``, or None if a field is not of its kind."""
    code = event.code
    tail = _input_and_machine_bytes(event.id, event.input, event.machine, event.state)
    key = _key_bytes(event.key)
    if tail is None or key is None or type(code) is not str or not code.isascii():
        return None
    raw = code.encode("ascii")
    if _IDENTITY(raw) is None:
        return None
    if not key:
        opening = _CHECKED_OPEN if event.state is True else _CHECKED_OPEN_NO_STATE
        rid = head(_UINT, event.id)
        return b"".join((opening, rid, _CHECKED_CODE, raw, _CHECKED_MIDDLE, *tail))
    pairs = bytes((0xA6 if event.state is True else 0xA7,))
    return b"".join(
        (pairs, _ID, head(_UINT, event.id), key, _CHECKED_CODE, raw, _CHECKED_MIDDLE, *tail)
    )


def _key_bytes(key: object) -> bytes | None:
    """``"key": key`` as it follows the request id; ``b""`` for no key; None if invalid."""
    if key is None:
        return b""
    if type(key) is not str or not key or "\0" in key:
        return None
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if len(raw) > MAX_KEY_BYTES:
        return None
    return b"".join((_KEY, head(_TEXT, len(raw)), raw))


def _read_key(payload: bytes, position: int) -> tuple[str | None, int]:
    """The key at ``position`` if one is there (and the position after it), ``(None,
    position)`` if none is, ``(None, -1)`` if it is not a valid key in shortest form."""
    if not payload.startswith(_KEY, position):
        return None, position
    size, start = _read_head(payload, position + len(_KEY), _TEXT)
    if not 1 <= size <= MAX_KEY_BYTES or start + size > len(payload):
        return None, -1
    try:
        key = payload[start : start + size].decode("utf-8")
    except UnicodeDecodeError:
        return None, -1
    if "\0" in key:
        return None, -1
    return key, start + size


def _input_and_machine_bytes(
    request_id: object, data: object, machine: object, state: object
) -> list[bytes] | None:
    """The input, ``"state": false`` if the state is not wanted, then ``"machine": name``, as
    the two send messages end, if the fields (and the request id) are of their kinds."""
    if (
        type(request_id) is not int
        or not 0 <= request_id <= MAX_UINT
        or type(data) is not bytes
        or type(machine) is not str
        or _NAME(machine) is None
        or type(state) is not bool
    ):
        return None
    return [
        head(_BYTES, len(data)),
        data,
        b"" if state else _NO_STATE,
        _SEND_MACHINE,
        head(_TEXT, len(machine)),
        machine.encode("ascii"),
    ]  # names are ASCII: characters are bytes


def encode_output(event: Output) -> bytes | None:
    """The canonical payload of ``event``, or None if a field is not of its kind."""
    request_id, output, state = event.id, event.output, event.state
    if (
        type(request_id) is not int
        or not 0 <= request_id <= MAX_UINT
        or type(output) is not bytes
        or type(state) is not bytes
    ):
        return None
    return output_payload(request_id, output, state)


def output_payload(request_id: int, output: bytes, state: bytes) -> bytes:
    """:func:`encode_output` of fields known to be of their kinds (a request id the node
    read, encoded values): what the node's hot path calls."""
    if request_id < 24:
        rid = _SMALL_HEADS[request_id]
    elif request_id < 0x10000:
        rid = (
            b"\x18" + request_id.to_bytes(1)
            if request_id < 0x100
            else b"\x19" + request_id.to_bytes(2)
        )
    elif request_id < 0x100000000:
        rid = b"\x1a" + request_id.to_bytes(4)
    else:
        rid = head(_UINT, request_id)
    return b"".join(
        (
            _OUTPUT_OPEN,
            rid,
            _OUTPUT_MIDDLE,
            _BYTE_HEADS[len(state)] if len(state) < 24 else head(_BYTES, len(state)),
            state,
            _OUTPUT_OUTPUT,
            _BYTE_HEADS[len(output)] if len(output) < 24 else head(_BYTES, len(output)),
            output,
        )
    )


_SMALL_HEADS = [bytes((_UINT | n,)) for n in range(24)]
_BYTE_HEADS = [bytes((_BYTES | n,)) for n in range(24)]


def _uint(payload: bytes, position: int) -> tuple[int, int]:
    """:func:`_read_head` of an unsigned int, inline for the heads of up to five bytes (the
    request ids of the first four billion requests); only the shortest form is taken."""
    n = len(payload)
    if position < n:
        initial = payload[position]
        if initial < 24:
            return initial, position + 1
        if initial == 24 and position + 1 < n and payload[position + 1] >= 24:
            return payload[position + 1], position + 2
        if initial == 25 and position + 2 < n:
            value = payload[position + 1] << 8 | payload[position + 2]
            if value >= 0x100:
                return value, position + 3
        elif initial == 26 and position + 4 < n:
            value = int.from_bytes(payload[position + 1 : position + 5])
            if value >= 0x10000:
                return value, position + 5
    return _read_head(payload, position, _UINT)


#: ``"machine": name`` as a send ends, for the names seen (each checked once), to the name.
_MACHINE_ENDS: dict[bytes, str] = {}
#: At most this many names are kept (any text can be sent as a name; most are refused).
_MACHINE_ENDS_KEPT = 4096


def _machine_end(payload: bytes, position: int) -> str | None:
    """The machine's name if ``payload`` ends at ``position`` with ``"machine": name``."""
    tail = payload[position:]
    name = _MACHINE_ENDS.get(tail)
    if name is not None:
        return name
    if not tail.startswith(_SEND_MACHINE):
        return None
    size, start = _read_head(tail, len(_SEND_MACHINE), _TEXT)
    if size < 0 or start + size != len(tail):
        return None
    raw = tail[start:]
    if not raw.isascii():  # a valid name is ASCII; anything else takes the slow path
        return None
    name = raw.decode("ascii")
    if _NAME(name) is None:
        return None
    if len(_MACHINE_ENDS) < _MACHINE_ENDS_KEPT:
        _MACHINE_ENDS[tail] = name
    return name


#: The code identities ``send_checked`` named (each checked once), as text: a lookup costs
#: 0.3 us where matching and decoding the 64 hex digits cost 1.6, on each checked input.
_CODES: dict[bytes, str] = {}
#: At most this many are kept (any 64 hex digits can be sent; most name no code).
_CODES_KEPT = 4096


#: A send or send_checked as :func:`read_request` reads it: (request id, machine, code (None:
#: a send), input, state wanted, key (None: the default instance)).
Input = tuple[int, str, str | None, bytes, bool, str | None]


def decode_request(payload: bytes) -> Send | SendChecked | None:
    """The Send or SendChecked in ``payload`` if it is one in canonical form with valid
    fields, else None."""
    fields = read_request(payload)
    if fields is None:
        return None
    request_id, machine, code, data, state, key = fields
    if code is None:
        return Send(request_id, machine, data, state, key)
    return SendChecked(request_id, machine, code, data, state, key)


def read_request(payload: bytes) -> Input | None:
    """:func:`decode_request`'s fields, without making the event (the node's hot path takes
    them as they are). Written out in one function: this runs once per input a node takes."""
    if payload[1:4] != _ID:
        return None
    request_id, position = _uint(payload, 4)
    if request_id < 0:
        return None
    key: str | None = None
    if payload.startswith(_KEY, position):
        key, position = _read_key(payload, position)
        if position < 0:
            return None
    pairs = payload[0] - (key is not None)
    code: str | None = None
    if payload.startswith(_SEND_MIDDLE, position):
        if pairs not in (0xA4, 0xA5):
            return None
        state = pairs == 0xA4
        position += len(_SEND_MIDDLE)
    elif payload.startswith(_CHECKED_CODE, position):
        if pairs not in (0xA5, 0xA6):
            return None
        state = pairs == 0xA5
        position += len(_CHECKED_CODE)
        raw = payload[position : position + 64]
        code = _CODES.get(raw)
        if code is None:
            if _IDENTITY(raw) is None:
                return None
            code = raw.decode("ascii")
            if len(_CODES) < _CODES_KEPT:
                _CODES[raw] = code
        if not payload.startswith(_CHECKED_MIDDLE, position + 64):
            return None
        position += 64 + len(_CHECKED_MIDDLE)
    else:
        return None
    # the input's bytes
    if position >= len(payload):
        return None
    initial = payload[position]
    if _BYTES <= initial < _BYTES + 24:
        size, position = initial - _BYTES, position + 1
    else:
        size, position = _read_head(payload, position, _BYTES)
        if size < 0:
            return None
    end = position + size
    data = payload[position:end]
    if not state:
        if not payload.startswith(_NO_STATE, end):
            return None
        end += len(_NO_STATE)
    machine = _machine_end(payload, end)
    if machine is None:
        return None
    return request_id, machine, code, data, state, key


def decode_output(payload: bytes) -> Output | None:
    """The Output in ``payload`` if it is one in canonical form, else None."""
    if not payload.startswith(_OUTPUT_OPEN):
        return None
    request_id, position = _read_head(payload, 4, _UINT)
    if request_id < 0 or not payload.startswith(_OUTPUT_MIDDLE, position):
        return None
    size, position = _read_head(payload, position + len(_OUTPUT_MIDDLE), _BYTES)
    end = position + size
    if size < 0 or not payload.startswith(_OUTPUT_OUTPUT, end):
        return None
    state = payload[position:end]
    size, position = _read_head(payload, end + len(_OUTPUT_OUTPUT), _BYTES)
    if size < 0 or position + size != len(payload):
        return None
    return Output(request_id, payload[position:], state)


# --- the client's hot path: a send_checked written from its fixed parts, an output read ----


#: The fixed parts of one client's ``send_checked`` asking for no state, as
#: :func:`send_checked_parts` makes them: (the map's head and ``"id"``, what follows the
#: request id up to the input's head, what follows the input).
CheckedParts = tuple[bytes, bytes, bytes]


def send_checked_parts(machine: str, code: str, key: str | None) -> CheckedParts | None:
    """The parts of :func:`encode_send_checked` of every ``SendChecked(id, machine, code,
    input, False, key)``, whatever its id and input, or None if ``machine``, ``code`` or
    ``key`` is not of its kind (the generic codec then says why)."""
    if type(machine) is not str or _NAME(machine) is None:
        return None
    if type(code) is not str or not code.isascii():
        return None
    raw = code.encode("ascii")
    key_part = _key_bytes(key)
    if _IDENTITY(raw) is None or key_part is None:
        return None
    opening = _CHECKED_OPEN_NO_STATE if not key_part else b"\xa7" + _ID
    middle = b"".join((key_part, _CHECKED_CODE, raw, _CHECKED_MIDDLE))
    tail = b"".join((_NO_STATE, _SEND_MACHINE, head(_TEXT, len(machine)), machine.encode()))
    return opening, middle, tail


def send_checked_frame(
    parts: CheckedParts, request_id: int, data: bytes, limit: int
) -> bytes | None:
    """The whole frame (length prefix and payload) of the ``send_checked`` of ``parts`` with
    ``request_id`` and input ``data``: the bytes of ``frame(encode_send_checked(...))``; None if
    the id is not one (0 to 2**64 - 1) or the payload is longer than ``limit`` bytes (or than a
    frame can be)."""
    if not 0 <= request_id <= MAX_UINT:
        return None
    opening, middle, tail = parts
    rid = _SMALL_HEADS[request_id] if request_id < 24 else head(_UINT, request_id)
    size = len(data)
    data_head = _BYTE_HEADS[size] if size < 24 else head(_BYTES, size)
    length = len(opening) + len(rid) + len(middle) + len(data_head) + size + len(tail)
    if length > limit or length > 0xFFFFFFFF:
        return None
    return b"".join((length.to_bytes(4), opening, rid, middle, data_head, data, tail))


def read_output(payload: bytes) -> tuple[int, bytes, bytes] | None:
    """The fields (request id, output, state) of :func:`decode_output` of ``payload``, or None
    where it returns None: the same acceptance, without making the event."""
    if not payload.startswith(_OUTPUT_OPEN):
        return None
    request_id, position = _uint(payload, 4)
    if request_id < 0 or not payload.startswith(_OUTPUT_MIDDLE, position):
        return None
    position += len(_OUTPUT_MIDDLE)
    n = len(payload)
    if position < n and _BYTES <= payload[position] < _BYTES + 24:  # a state of < 24 bytes
        size, position = payload[position] - _BYTES, position + 1
    else:
        size, position = _read_head(payload, position, _BYTES)
        if size < 0:
            return None
    end = position + size
    if not payload.startswith(_OUTPUT_OUTPUT, end):
        return None
    state = payload[position:end]
    position = end + len(_OUTPUT_OUTPUT)
    if position < n and _BYTES <= payload[position] < _BYTES + 24:
        size, position = payload[position] - _BYTES, position + 1
    else:
        size, position = _read_head(payload, position, _BYTES)
        if size < 0:
            return None
    if position + size != n:
        return None
    return request_id, payload[position:], state
