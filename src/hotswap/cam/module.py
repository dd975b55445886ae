"""The canonical binary module format (docs/bytecode.md, "Modules").

    module   = magic "\\0hsm", version 0x01 or 0x02, sections
    section  = id (1 byte), size (uLEB128), payload
    1 types      count, entries: 0x00 Unit | 0x01 Int | 0x02 a b (x) | 0x03 a b (+)
                 format 2 adds 0x04 Str | 0x05 a (List) | 0x06 k v (Map)
    2 functions  count, entries: dom, cod, instruction count, instructions
    3 machine    input, state, output (type indices), init, step (function indices)
    4 migration  function index (old state -> new state)
    0 custom     name (uLEB128 length + UTF-8), data; after all others, names ascending

Semantic sections appear in ascending id order, at most once each; types and functions are
required, and at least one of machine and migration. The identity of a module is the SHA-256 of
its bytes up to the end of the last semantic section: custom sections (names, source) never
change it. Decoding rejects anything non-canonical, so ``encode(decode(b)) == b``.

The format version is 2 exactly when the module uses something of format 2 (a Str, List or Map
type, a format 2 opcode or primitive), and 1 otherwise, so every module written before format 2
existed keeps its bytes and its identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import assert_never

from hotswap.cam import limits
from hotswap.cam.encoding import Reader, sleb, uleb
from hotswap.cam.instructions import JUMPS, TYPED, V1_OPCODES, Code, Instr, Opcode
from hotswap.errors import DecodeError
from hotswap.lang.check import MAX_STR_LEN
from hotswap.lang.ints import in_range
from hotswap.lang.terms import V1_OPS, Op
from hotswap.lang.types import (
    INT,
    STR,
    UNIT,
    IntT,
    ListT,
    MapT,
    Prod,
    StrT,
    Sum,
    Type,
    UnitT,
    is_key_type,
    is_v1_type,
)

MAGIC = b"\x00hsm"
#: The newest format version; :func:`format_version` gives the one a module is written in.
VERSION = 2
VERSIONS = (1, 2)

SECTION_CUSTOM = 0
SECTION_TYPES = 1
SECTION_FUNCTIONS = 2
SECTION_MACHINE = 3
SECTION_MIGRATION = 4


@dataclass(frozen=True, slots=True)
class Function:
    """``code : dom -> cod``."""

    dom: Type
    cod: Type
    code: Code


@dataclass(frozen=True, slots=True)
class MachineSig:
    """A machine: ``init : Unit -> state`` and ``step : input x state -> state x output``,
    given as indices into the module's functions."""

    input: Type
    state: Type
    output: Type
    init: int
    step: int


@dataclass(frozen=True, slots=True)
class Module:
    """A decoded module. ``custom`` holds (name, data) pairs sorted by name."""

    functions: tuple[Function, ...]
    machine: MachineSig | None = None
    migration: int | None = None
    custom: tuple[tuple[str, bytes], ...] = ()


# --- encoding -------------------------------------------------------------------------------


def _function_roots(m: Module) -> list[int]:
    roots = [m.machine.init, m.machine.step] if m.machine else []
    return roots + ([m.migration] if m.migration is not None else [])


def _type_roots(m: Module) -> Iterator[Type]:
    """Every type the module mentions, in canonical order (children come first, see below)."""
    for f in m.functions:
        yield f.dom
        yield f.cod
        for instr in f.code:
            if instr.op in TYPED:
                assert not isinstance(instr.arg, int | str | Op | None)
                yield instr.arg
    if m.machine:
        yield from (m.machine.input, m.machine.state, m.machine.output)


def type_table(m: Module) -> dict[Type, int]:
    """Canonical type indices: types in order of first mention, each after its components."""
    table: dict[Type, int] = {}
    for root in _type_roots(m):
        stack: list[tuple[Type, bool]] = [(root, False)]
        while stack:
            t, expanded = stack.pop()
            if t in table:
                continue
            if expanded or isinstance(t, UnitT | IntT | StrT):
                table[t] = len(table)
            elif isinstance(t, ListT):
                stack.extend(((t, True), (t.elem, False)))
            else:
                stack.extend(((t, True), (t.right, False), (t.left, False)))
    return table


def format_version(m: Module) -> int:
    """2 if ``m`` uses anything of format 2, else 1."""
    for f in m.functions:
        for instr in f.code:
            if instr.op not in V1_OPCODES or (instr.op is Opcode.PRIM and instr.arg not in V1_OPS):
                return 2
    return 1 if all(is_v1_type(t) for t in type_table(m)) else 2


def _section(out: bytearray, section_id: int, payload: bytes) -> None:
    out.append(section_id)
    out += uleb(len(payload))
    out += payload


def encode_module(m: Module) -> bytes:
    """The canonical bytes of ``m``."""
    types = type_table(m)
    out = bytearray(MAGIC)
    out.append(format_version(m))
    payload = bytearray(uleb(len(types)))
    for t in types:
        match t:
            case UnitT():
                payload.append(0)
            case IntT():
                payload.append(1)
            case StrT():
                payload.append(4)
            case ListT(elem):
                payload.append(5)
                payload += uleb(types[elem])
            case Prod(left, right) | Sum(left, right) | MapT(left, right):
                payload.append(2 if isinstance(t, Prod) else 3 if isinstance(t, Sum) else 6)
                payload += uleb(types[left]) + uleb(types[right])
            case _:
                assert_never(t)
    _section(out, SECTION_TYPES, bytes(payload))
    payload = bytearray(uleb(len(m.functions)))
    for f in m.functions:
        payload += uleb(types[f.dom]) + uleb(types[f.cod]) + uleb(len(f.code))
        for instr in f.code:
            payload.append(instr.op)
            payload += _immediate(instr, types)
    _section(out, SECTION_FUNCTIONS, bytes(payload))
    if m.machine:
        sig = m.machine
        fields = (types[sig.input], types[sig.state], types[sig.output], sig.init, sig.step)
        _section(out, SECTION_MACHINE, b"".join(uleb(n) for n in fields))
    if m.migration is not None:
        _section(out, SECTION_MIGRATION, uleb(m.migration))
    for name, data in sorted(m.custom):
        raw = name.encode()
        _section(out, SECTION_CUSTOM, uleb(len(raw)) + raw + data)
    return bytes(out)


def _immediate(instr: Instr, types: dict[Type, int]) -> bytes:
    match instr.arg:
        case None:
            return b""
        case Op() as p:
            return bytes([p.value])
        case int() as n:
            return sleb(n) if instr.op is Opcode.LIT else uleb(n)
        case str() as text:
            raw = text.encode("utf-8")
            return uleb(len(raw)) + raw
        case t:
            return uleb(types[t])


def semantic_length(data: bytes) -> int:
    """Length of the identity-bearing prefix of valid module bytes."""
    r = Reader(data, len(MAGIC) + 1)
    while not r.at_end():
        start = r.pos
        if r.byte() == SECTION_CUSTOM:
            return start
        r.section("section")
    return len(data)


def module_identity(data: bytes) -> str:
    """Hex SHA-256 of the semantic part of valid module bytes."""
    return hashlib.sha256(data[: semantic_length(data)]).hexdigest()


# --- decoding -------------------------------------------------------------------------------


def decode_module(data: bytes) -> Module:
    """Decode canonical module bytes, or raise :class:`DecodeError` saying what is wrong.

    Decoding checks the format only; :func:`hotswap.cam.verify_module.verify_module` checks that
    the code is well typed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"a module is bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > limits.MAX_MODULE_BYTES:
        raise DecodeError(f"module of {len(data)} bytes exceeds {limits.MAX_MODULE_BYTES}")
    if data[: len(MAGIC)] != MAGIC:
        raise DecodeError(f"not a hotswap module: bad magic {data[:4]!r}")
    if len(data) < len(MAGIC) + 1:
        raise DecodeError("module ends before its format version")
    version = data[len(MAGIC)]
    if version not in VERSIONS:
        raise DecodeError(
            f"unsupported module format version {version} (this release reads versions 1 and 2)"
        )
    sections = _split_sections(data)
    if SECTION_TYPES not in sections or SECTION_FUNCTIONS not in sections:
        raise DecodeError("module needs a types and a functions section")
    types = _decode_types(sections[SECTION_TYPES])
    functions = _decode_functions(sections[SECTION_FUNCTIONS], types)
    machine = (
        _decode_machine(sections[SECTION_MACHINE], types, len(functions))
        if (SECTION_MACHINE in sections)
        else None
    )
    migration = None
    if SECTION_MIGRATION in sections:
        r = sections[SECTION_MIGRATION]
        if not functions:
            raise r.fail("a migration needs a function")
        migration = r.uleb(len(functions) - 1)
        if not r.at_end():
            raise r.fail("trailing bytes in the migration section")
    if machine is None and migration is None:
        raise DecodeError("module has neither a machine nor a migration section")
    customs = tuple((name, r.take(r.end - r.pos)) for name, r in _custom_sections(data))
    module = Module(functions, machine, migration, customs)
    needed = format_version(module)
    if needed != version:
        why = "uses types or instructions of format 2" if needed == 2 else "uses nothing of it"
        raise DecodeError(f"module says format version {version}, but it {why}")
    _check_canonical(module, data, types)
    return module


def _split_sections(data: bytes) -> dict[int, Reader]:
    sections: dict[int, Reader] = {}
    r = Reader(data, len(MAGIC) + 1, what="module")
    last = 0
    while not r.at_end():
        section_id = r.byte()
        if section_id == SECTION_CUSTOM:
            break
        if section_id > SECTION_MIGRATION:
            r.pos -= 1
            raise r.fail(f"unknown section id {section_id}")
        if section_id <= last:
            r.pos -= 1
            raise r.fail(f"section {section_id} out of order or repeated")
        last = section_id
        sections[section_id] = r.section(f"section {section_id}")
    return sections


def _custom_sections(data: bytes) -> Iterator[tuple[str, Reader]]:
    r = Reader(data, semantic_length(data), what="module")
    previous: str | None = None
    count = 0
    while not r.at_end():
        section_id = r.byte()
        if section_id != SECTION_CUSTOM:
            r.pos -= 1
            raise r.fail(f"section {section_id} after a custom section")
        body = r.section("custom section")
        raw = body.take(body.uleb())
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise body.fail("custom section name is not UTF-8") from None
        if not name or (previous is not None and name <= previous):
            raise body.fail(f"custom section {name!r} empty, repeated or out of order")
        count += 1
        if count > limits.MAX_CUSTOM_SECTIONS:
            raise body.fail(f"more than {limits.MAX_CUSTOM_SECTIONS} custom sections")
        previous = name
        yield name, body


def _decode_types(r: Reader) -> list[Type]:
    count = r.uleb(limits.MAX_TYPES)
    types: list[Type] = []
    seen: set[int] = set()
    for i in range(count):
        tag = r.byte()
        t: Type
        if tag == 0:
            t = UNIT
        elif tag == 1:
            t = INT
        elif tag == 4:
            t = STR
        elif tag in (2, 3, 5, 6):
            if i == 0:
                raise r.fail("a compound type cannot be the first type")
            a = types[r.uleb(i - 1)]
            if tag == 5:
                t = ListT(a)
            else:
                b = types[r.uleb(i - 1)]
                if tag == 6 and not is_key_type(a):
                    raise r.fail(f"type {i}: a map's key type may not hold a list or map ({a})")
                t = Prod(a, b) if tag == 2 else Sum(a, b) if tag == 3 else MapT(a, b)
            if t.depth > limits.MAX_TYPE_DEPTH or t.size > limits.MAX_TYPE_SIZE:
                raise r.fail(f"type {i} exceeds the limits on type depth or size")
        else:
            r.pos -= 1
            raise r.fail(f"unknown type tag {tag}")
        if id(t) in seen:
            raise r.fail(f"type {i} repeats an earlier type ({t})")
        seen.add(id(t))
        types.append(t)
    if not r.at_end():
        raise r.fail("trailing bytes in the types section")
    return types


def _decode_functions(r: Reader, types: list[Type]) -> tuple[Function, ...]:
    count = r.uleb(limits.MAX_FUNCTIONS)
    if not types:
        raise r.fail("functions need types, but the types section is empty")
    last_type = len(types) - 1
    functions = []
    for _ in range(count):
        dom, cod = types[r.uleb(last_type)], types[r.uleb(last_type)]
        length = r.uleb(limits.MAX_CODE)
        code = tuple(_decode_instr(r, types) for _ in range(length))
        functions.append(Function(dom, cod, code))
    if not r.at_end():
        raise r.fail("trailing bytes in the functions section")
    return tuple(functions)


def _decode_instr(r: Reader, types: list[Type]) -> Instr:
    byte = r.byte()
    try:
        op = Opcode(byte)
    except ValueError:
        r.pos -= 1
        raise r.fail(f"unknown opcode 0x{byte:02x}") from None
    if op is Opcode.LIT:
        start = r.pos
        n = r.sleb()
        if not in_range(n):
            r.pos = start
            raise r.fail(f"literal {n} is outside the signed 64-bit range")
        return Instr(op, n)
    if op is Opcode.PRIM:
        p = r.byte()
        try:
            return Instr(op, Op(p))
        except ValueError:
            r.pos -= 1
            raise r.fail(f"unknown primitive {p}") from None
    if op in TYPED:
        return Instr(op, types[r.uleb(len(types) - 1)])
    if op is Opcode.STR:
        start = r.pos
        raw = r.take(r.uleb(4 * MAX_STR_LEN))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            r.pos = start
            raise r.fail(f"text literal is not valid UTF-8 ({e.reason})") from None
        if len(text) > MAX_STR_LEN:
            r.pos = start
            raise r.fail(f"text literal of {len(text)} code points exceeds {MAX_STR_LEN}")
        return Instr(op, text)
    if op in JUMPS:
        return Instr(op, r.uleb(limits.MAX_CODE))
    return Instr(op)


def _decode_machine(r: Reader, types: list[Type], n_functions: int) -> MachineSig:
    last_type = len(types) - 1
    input_t, state_t, output_t = (types[r.uleb(last_type)] for _ in range(3))
    if n_functions == 0:
        raise r.fail("a machine needs functions")
    sig = MachineSig(input_t, state_t, output_t, r.uleb(n_functions - 1), r.uleb(n_functions - 1))
    if not r.at_end():
        raise r.fail("trailing bytes in the machine section")
    return sig


def _check_canonical(m: Module, data: bytes, types: list[Type]) -> None:
    roots = _function_roots(m)
    expected_order = list(dict.fromkeys(roots))
    if expected_order != list(range(len(m.functions))):
        raise DecodeError(
            f"functions must be listed once each in order of use {expected_order}, "
            f"found {len(m.functions)} functions"
        )
    canonical = type_table(m)
    if len(canonical) != len(types):
        unused = [str(t) for t in types if t not in canonical]
        raise DecodeError(f"unused types in the types section: {', '.join(unused[:3])}")
    if list(canonical) != types:
        raise DecodeError("types are not in canonical order (first mention, components first)")
    # The custom sections were read with minimal lengths, sorted unique names and nothing
    # after them, so they are canonical as read: only what comes before them is encoded again
    # (encoding a 16 MiB custom section again to compare it took three copies of it).
    encoded = encode_module(replace(m, custom=()))
    if len(encoded) != semantic_length(data) or not data.startswith(encoded):
        raise DecodeError("module bytes are not canonical")
