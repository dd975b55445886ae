"""Value decoders generated as Python source, one function per type (docs/bytecode.md, "Values").

The closures of :mod:`hotswap.cam.values` cost a call and a returned pair per node of a value.
A decoder made here (for values of ``values.GENERATED_FROM`` bytes or more: making one costs
about 80 us a node of the type) is one function whose body follows the type: products are
consecutive reads into
locals, sums an ``if`` on the tag, lists and maps a loop, and a one-byte ``Int`` (-64 to 63,
always minimal) is read inline. Everything else is read by the very functions the closures use
(``_decode_int`` past one byte, ``_decode_str``, ``_count``), so a generated decoder accepts
exactly the bytes the closures accept, builds the same values and raises the same errors at
the same places, with the same messages. Types it does not take (a list of a zero-width type,
whose bounded decoder keeps an allowance; very large types) are left to the closures.
"""

from __future__ import annotations

from collections.abc import Callable

from hotswap.errors import DecodeError
from hotswap.lang.persistent import EMPTY_LIST, OMap, make_list, safe_key
from hotswap.lang.types import IntT, ListT, MapT, Prod, StrT, Sum, Type, UnitT

_Dec = Callable[[bytes, int], tuple[object, int]]

#: Sums, lists and maps nested in one generated function before the inner part gets its own.
_NEST_LIMIT = 6
#: Types of more nodes than this are decoded by the closures: making a decoder costs about
#: 80 us a node (20 ms for 256), paid once, at the first value large enough to be read by one.
MAX_GENERATED_SIZE = 256


class _Source:
    def __init__(self, prims: dict[str, object]) -> None:
        self.ns: dict[str, object] = {
            "__builtins__": {},
            "DecodeError": DecodeError,
            "OMap": OMap,
            "EMPTY_LIST": EMPTY_LIST,
            "make_list": make_list,
            "safe_key": safe_key,
            "tuple": tuple,
            "type": type,
            "range": range,
            "set": set,
            **prims,
        }
        self.count = 0

    def fresh(self, prefix: str = "v") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, obj: object) -> str:
        name = self.fresh("_k")
        self.ns[name] = obj
        return name


def generated_decoder(t: Type, prims: dict[str, object], min_width: Callable[[Type], int]) -> _Dec:
    """``walk(data, pos) -> (value, pos)`` for ``t``, as the closures' decoder of ``t`` is;
    ``prims`` are the closures' own readers (``_decode_int``, ``_decode_str``, ``_count``)."""
    src = _Source(prims)
    return _function(src, t, min_width)


def _function(src: _Source, t: Type, min_width: Callable[[Type], int]) -> _Dec:
    lines = ["def walk(data, pos):"]
    result = _emit(src, t, lines, "    ", 0, min_width)
    lines.append(f"    return {result}, pos")
    code = compile("\n".join(lines) + "\n", f"<hotswap decoder {t}>", "exec")
    ns = dict(src.ns)
    exec(code, ns)
    walk: _Dec = ns["walk"]  # type: ignore[assignment]
    return walk


def _emit(
    src: _Source,
    t: Type,
    out: list[str],
    ind: str,
    level: int,
    min_width: Callable[[Type], int],
) -> str:
    """Emit the reads of a value of ``t`` at ``pos`` (advancing ``pos``); the expression of
    the value (a variable or a constant)."""
    match t:
        case UnitT():
            return "()"
        case IntT():  # one byte (-64 to 63, always minimal) inline, longer by the reader
            v, b = src.fresh(), src.fresh("b")
            out.append(f"{ind}{b} = data[pos]")
            out.append(f"{ind}if {b} < 0x80:")
            out.append(f"{ind}    {v} = {b} - 128 if {b} & 0x40 else {b}")
            out.append(f"{ind}    pos += 1")
            out.append(f"{ind}else:")
            out.append(f"{ind}    {v}, pos = _decode_int(data, pos)")
            return v
        case StrT():
            v = src.fresh()
            out.append(f"{ind}{v}, pos = _decode_str(data, pos)")
            return v
        case Prod(left, right):
            a = _emit(src, left, out, ind, level, min_width)
            b = _emit(src, right, out, ind, level, min_width)
            v = src.fresh()
            out.append(f"{ind}{v} = ({a}, {b})")
            return v
        case _ if level >= _NEST_LIMIT and isinstance(t, Sum | ListT | MapT):
            fn = src.const(_function(_Source(_prims_of(src)), t, min_width))
            v = src.fresh()
            out.append(f"{ind}{v}, pos = {fn}(data, pos)")
            return v
        case Sum(left, right):
            v, tag, at = src.fresh(), src.fresh("t"), src.fresh("at")
            out.append(f"{ind}{at} = pos")
            out.append(f"{ind}{tag} = data[pos]")
            out.append(f"{ind}pos += 1")
            out.append(f"{ind}if {tag} == 0:")
            a = _emit(src, left, out, ind + "    ", level + 1, min_width)
            out.append(f"{ind}    {v} = (0, {a})")
            out.append(f"{ind}elif {tag} == 1:")
            b = _emit(src, right, out, ind + "    ", level + 1, min_width)
            out.append(f"{ind}    {v} = (1, {b})")
            out.append(f"{ind}else:")
            out.append(
                f"{ind}    raise DecodeError(f'value at byte {{{at}}}: sum tag must be 0 or 1, "
                f"got {{{tag}}}')"
            )
            return v
        case ListT(elem):
            v, n, items, i = src.fresh(), src.fresh("n"), src.fresh("xs"), src.fresh("i")
            out.append(f"{ind}{n}, pos = _count(data, pos, 'list', {min_width(elem)})")
            out.append(f"{ind}if {n} == 0:")
            out.append(f"{ind}    {v} = EMPTY_LIST")
            out.append(f"{ind}else:")
            out.append(f"{ind}    {items} = []")
            out.append(f"{ind}    for {i} in range({n}):")
            x = _emit(src, elem, out, ind + "        ", level + 1, min_width)
            out.append(f"{ind}        {items}.append({x})")
            out.append(f"{ind}    {v} = make_list({items})")
            return v
        case MapT(key, value):
            v, n, items, seen, i = (
                src.fresh(),
                src.fresh("n"),
                src.fresh("kvs"),
                src.fresh("seen"),
                src.fresh("i"),
            )
            at, safe = src.fresh("at"), src.fresh("s")
            width = min_width(key) + min_width(value)
            out.append(f"{ind}{n}, pos = _count(data, pos, 'map', {width})")
            out.append(f"{ind}{items} = []")
            out.append(f"{ind}{seen} = set()")
            out.append(f"{ind}for {i} in range({n}):")
            inner = ind + "    "
            out.append(f"{inner}{at} = pos")
            k = _emit(src, key, out, inner, level + 1, min_width)
            out.append(f"{inner}{safe} = safe_key({k}) if type({k}) is tuple else {k}")
            out.append(f"{inner}if {safe} in {seen}:")
            out.append(
                f"{inner}    raise DecodeError(f'value at byte {{{at}}}: a map key appears twice')"
            )
            out.append(f"{inner}{seen}.add({safe})")
            x = _emit(src, value, out, inner, level + 1, min_width)
            out.append(f"{inner}{items}.append(({k}, {x}))")
            out.append(f"{ind}{v} = OMap({items})")
            return v
    raise AssertionError(t)  # pragma: no cover - the match is exhaustive


def _prims_of(src: _Source) -> dict[str, object]:
    return {name: src.ns[name] for name in ("_decode_int", "_decode_str", "_count")}
