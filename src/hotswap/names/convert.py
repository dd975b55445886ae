"""Compiled conversions between Python values and core values, one pair per schema.

:func:`hotswap.names.schema.to_core` and :func:`~hotswap.names.schema.from_core` walk the
schema at every node of every value; here a schema is turned once into the Python source of one
function that does the same work inline (type tests, attribute reads, tuple building), compiled
and cached, like the fast path (``hotswap.cam.codegen``) and the value codecs
(``hotswap.cam.values``). :func:`machine_runner` fuses a machine's whole ``.run`` (convert the
input and the state, step on the fast path, convert back) into one such function.

Semantics are the reference walkers' by construction: a compiled function checks at least what
the walker checks, and whenever anything goes wrong (a value of the wrong shape, or any
exception at all) it runs the reference walker on the same value, which raises the documented
:class:`~hotswap.errors.ValueTypeError` with its message naming the place (or returns the
result, where the compiled check was stricter than needed). The "trusted" decoders, used on the
results of verified code only, check nothing, as :func:`hotswap.cam.values.value_encoder`.

A ``list`` or ``dict`` becomes a loop over its items in the generated code (or, when each item
converts to itself, as ``int`` and ``str`` do, a loop that only checks and one call that copies:
``make_list(x)``, ``OMap.from_dict(dict(x))``); a ``str`` is checked for its length and, when
it is not ASCII, for lone surrogates (by encoding it), as :func:`hotswap.lang.values.check_text`
does.

A record comes back as what the walker's ``cls(**fields)`` makes, built the cheapest way that
makes exactly that (:func:`construction`): a plain dataclass (the ``__init__`` dataclasses
generated, nothing of its own around it) is a new object whose ``__dict__`` gets the fields in
order, three times faster than the frozen ``__init__``'s ``object.__setattr__`` calls; other
classes are called, by position when their signature takes the fields in order; a
:class:`Record` gets its two slots.

Safety: the source is generated from a schema alone; variables come from a counter; classes,
record names and other objects reach the code through its namespace, never as text; a field
name is spliced (``v.amount``, ``C(amount=...)``, ``d['amount']``) only when it is an ASCII
identifier and not a keyword, else it goes through the namespace too (``getattr(v, K)``,
``C(**{K: ...})``); the code runs with no builtins but the few it names. Nesting is bounded:
past :data:`_NEST_LIMIT` nested branches, a sub-schema gets a function of its own.
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress
from operator import attrgetter, is_, is_not
from types import FunctionType, MappingProxyType
from typing import Any

from hotswap.cam.codegen import OutOfFuel, out_of_fuel
from hotswap.lang.check import MAX_ELEMENTS, MAX_STR_LEN
from hotswap.lang.evaluate import FALSE, TRUE, Value
from hotswap.lang.ints import INT_MAX, INT_MIN, SMALL_INT
from hotswap.lang.persistent import EMPTY_LIST, OMap, make_list
from hotswap.names.schema import (
    BoolSchema,
    DictSchema,
    IntSchema,
    ListSchema,
    NoneSchema,
    Record,
    RecordSchema,
    Schema,
    StrSchema,
    TupleSchema,
    UnionSchema,
    components,
    from_core_reference,
    nodes,
    records,
    to_core_reference,
)

#: Nested branches (one per union) a generated function holds before a sub-schema gets its own.
_NEST_LIMIT = 8
#: Parentheses an expression may nest before its parts are bound to variables.
_EXPR_DEPTH = 8

Encoder = Callable[[object, str], Value]
Decoder = Callable[[Value], Any]


#: The setters of a :class:`Record`'s two slots, which its ``__init__`` sets.
_RECORD_NAME: Callable[[Record, str], None] = vars(Record)["_name"].__set__
_RECORD_FIELDS: Callable[[Record, Mapping[str, Any]], None] = vars(Record)["_fields"].__set__
#: A class whose ``__new__`` is this one makes its instances as ``object`` does.
_OBJECT_NEW: object = object.__new__


class _Bad(Exception):
    """Raised by compiled code on a value it does not accept: the reference walker decides."""


@dataclass(frozen=True, slots=True)
class _E:
    """A Python expression and how deeply it nests parentheses (0: a name or a constant)."""

    text: str
    depth: int = 0


def _plain_name(name: str) -> bool:
    """Whether ``name`` can be spliced as an attribute or keyword as it is (NFKC-proof)."""
    return (
        name.isascii()
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and name != "__debug__"  # an identifier Python refuses to bind, even as a keyword
    )


def _by_name(name: str, names: tuple[str, ...]) -> Callable[[object], tuple[Any, ...] | None]:
    """For a record known by name only: its field values in order when ``v`` stands for it
    (``_belongs``: a :class:`Record` of that name and fields, or a dataclass instance of a class
    of that name and fields), else None. What a class stands for is remembered per class."""
    if not names:
        get: Callable[[object], tuple[Any, ...]] = lambda v: ()  # noqa: E731 - a table entry
    elif len(names) == 1:
        one = attrgetter(names[0])
        get = lambda v: (one(v),)  # noqa: E731
    else:
        get = attrgetter(*names)
    known: dict[type, bool] = {}

    def fields_of(v: object) -> tuple[Any, ...] | None:
        if isinstance(v, Record):
            if v.record_name == name and tuple(v.record_fields) == names:
                found = v.record_fields
                return tuple(found[n] for n in names)
            return None
        t = type(v)
        ok = known.get(t)
        if ok is None:
            ok = (
                dataclasses.is_dataclass(v)
                and not isinstance(v, type)
                and t.__name__ == name
                and tuple(f.name for f in dataclasses.fields(v)) == names
            )
            if len(known) < 64:
                known[t] = ok
        return get(v) if ok else None

    return fields_of


class _Source:
    """One generated function's namespace and a counter for its variables."""

    def __init__(self) -> None:
        self.count = 0
        self.ns: dict[str, Any] = {
            "__builtins__": {},
            "type": type,
            "isinstance": isinstance,
            "len": len,
            "tuple": tuple,
            "int": int,
            "bool": bool,
            "getattr": getattr,
            "str": str,
            "list": list,
            "dict": dict,
            "Exception": Exception,
            "_PV": type(EMPTY_LIST),
            "_OMap": OMap,
            "_OMap_of": OMap.from_dict,
            "_mklist": make_list,
            "_Bad": _Bad,
            "_T": TRUE,
            "_F": FALSE,
            "_Record": Record,
            "_new": object.__new__,
            "_rec_name": _RECORD_NAME,
            "_rec_fields": _RECORD_FIELDS,
            "_Proxy": MappingProxyType,
            "_id": id,
            "map": map,
            "zip": zip,
            "_compress": compress,
            "_is_not": is_not,
            "_is": is_,
            "all": all,
        }
        self._consts: dict[int, str] = {}
        #: In a :func:`machine_runner`: records of :func:`_shareable` classes are noted in
        #: ``_memo`` by the core value made of them, and come back as themselves.
        self.memo = False
        #: The classes noted so far: only those can come back from ``_memo``.
        self.noted: set[type] = set()
        #: The dict the records converted now are noted in (a state's own, when it is cached).
        self.memo_var = "_memo"
        #: While a cached state is decoded: the records it comes back with are noted in
        #: ``_mo`` too, by the core value they were made of (:func:`_state_cache`).
        self.note_out = False
        #: For each field of a cached state whose dict comes back by difference
        #: (:func:`_diffable`): the variables holding the Python copy it was converted from,
        #: its keys, and the core map it became (None when there is none to compare with).
        self.prior: dict[int, tuple[str, str, str]] = {}

    def fresh(self, prefix: str = "v") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, obj: object) -> str:
        """A namespace name bound to ``obj``."""
        name = self._consts.get(id(obj))
        if name is None:
            name = self._consts[id(obj)] = self.fresh("_k")
            self.ns[name] = obj
        return name

    def bind(self, e: _E, out: list[str], ind: str) -> _E:
        if e.depth == 0:
            return e
        name = self.fresh()
        out.append(f"{ind}{name} = {e.text}")
        return _E(name)

    def pair(self, a: _E, b: _E, out: list[str], ind: str) -> _E:
        if a.depth >= _EXPR_DEPTH:
            a = self.bind(a, out, ind)
        if b.depth >= _EXPR_DEPTH:
            b = self.bind(b, out, ind)
        return _E(f"({a.text}, {b.text})", max(a.depth, b.depth) + 1)

    def nest(self, items: list[_E], out: list[str], ind: str) -> _E:
        """Unit, the one item, or right-nested pairs (:func:`nest_values`)."""
        if not items:
            return _E("()")
        result = items[-1]
        for item in reversed(items[:-1]):
            result = self.pair(item, result, out, ind)
        return result

    def inject(self, index: int, count: int, e: _E, out: list[str], ind: str) -> _E:
        """Alternative ``index`` of ``count`` (:func:`inject_value`)."""
        if index != count - 1:
            e = self.pair(_E("0"), e, out, ind)
        for _ in range(min(index, count - 1)):
            e = self.pair(_E("1"), e, out, ind)
        return e

    def compile(self, lines: list[str], name: str) -> Any:
        source = "\n".join([*lines, ""])
        exec(compile(source, f"<hotswap conversion {name}>", "exec"), self.ns)
        return self.ns[name]


#: Not an ``int`` of the core's range, asked first of ``SMALL_INT``, which CPython compares fast.
_INT_CHECK = (
    f"type({{x}}) is not int or (not -{SMALL_INT} <= {{x}} <= {SMALL_INT} "
    f"and not {INT_MIN} <= {{x}} <= {INT_MAX})"
)
#: A ``str`` the core takes as it is (a subclass goes to the walker, which copies its text).
_STR_CHECK = f"type({{x}}) is not str or len({{x}}) > {MAX_STR_LEN}"


def _text(x: str, out: list[str], ind: str) -> None:
    """Emit the checks of a Str in ``x`` (``check_text``): the exact class, the length, and no
    lone surrogate (only non-ASCII text can hold one; encoding it raises on one)."""
    out.append(f"{ind}if {_STR_CHECK.format(x=x)}: raise _Bad")
    out.append(f'{ind}if not {x}.isascii(): {x}.encode("utf-8")')


def _loop(
    head: str,
    names: list[str],
    body: Callable[[list[str], str], list[_E]],
    out: list[str],
    ind: str,
) -> tuple[list[str], list[_E]]:
    """The statements of a loop ``for names in head`` whose body ``body`` emits at ``ind`` plus
    one level (returning the converted items), and those items' expressions. Nothing is
    emitted yet: the caller decides how the items are collected."""
    inner = ind + "    "
    lines: list[str] = []
    items = body(lines, inner)
    return [f"{ind}for {', '.join(names)} in {head}:", *lines], items


# --- Python -> core -------------------------------------------------------------------------


def _enc(src: _Source, s: Schema, x: str, out: list[str], ind: str, level: int) -> _E:
    """Emit the checks and reads converting the Python value in variable ``x``; the result."""
    match s:
        case IntSchema():
            out.append(f"{ind}if {_INT_CHECK.format(x=x)}: raise _Bad")
            return _E(x)
        case BoolSchema():
            out.append(f"{ind}if type({x}) is not bool: raise _Bad")
            return _E(f"(_T if {x} else _F)", 1)
        case NoneSchema():
            out.append(f"{ind}if {x} is not None: raise _Bad")
            return _E("()")
        case StrSchema():
            _text(x, out, ind)
            return _E(x)
        case ListSchema(item):
            out.append(
                f"{ind}if not isinstance({x}, list) or len({x}) > {MAX_ELEMENTS}: raise _Bad"
            )
            e = src.fresh("e")
            loop, (conv,) = _loop(
                x,
                [e],
                lambda lines, inner: [_enc_part(src, item, e, lines, inner, level)],
                out,
                ind,
            )
            return _collect_list(src, x, e, conv, loop, out, ind)
        case DictSchema(key, value):
            out.append(
                f"{ind}if not isinstance({x}, dict) or len({x}) > {MAX_ELEMENTS}: raise _Bad"
            )
            k, e = src.fresh("k"), src.fresh("e")
            loop, (kc, vc) = _loop(
                f"{x}.items()",
                [k, e],
                lambda lines, inner: [
                    _enc_part(src, key, k, lines, inner, level),
                    _enc_part(src, value, e, lines, inner, level),
                ],
                out,
                ind,
            )
            if kc.text == k and vc.text == e:  # a check only: the pairs are the core pairs
                if len(loop) > 1:
                    out.extend(loop)
                result = src.fresh("m")
                out.append(f"{ind}{result} = _OMap_of(dict({x}))")
            else:
                acc = src.fresh("acc")
                out.append(f"{ind}{acc} = {{}}")
                out.extend(loop)
                out.append(f"{ind}    {acc}[{kc.text}] = {vc.text}")
                result = src.fresh("m")
                out.append(f"{ind}{result} = _OMap_of({acc})")
            if kc.text != k:  # two keys may have made one (keys that are their own core can't)
                out.append(f"{ind}if len({result}) != len({x}): raise _Bad")
            return _E(result)
        case TupleSchema(items):
            out.append(f"{ind}if type({x}) is not tuple or len({x}) != {len(items)}: raise _Bad")
            names = [src.fresh() for _ in items]
            out.append(f"{ind}{', '.join(names)} = {x}")
            parts = [_enc(src, t, n, out, ind, level) for t, n in zip(items, names, strict=True)]
            return src.nest(parts, out, ind)
        case RecordSchema(cls=cls) if cls is not None:
            out.append(f"{ind}if type({x}) is not {src.const(cls)}: raise _Bad")
            made = _enc_fields(src, s, x, None, out, ind, level)
            if not (src.memo and _shareable(s)):
                return made
            core = src.fresh("c")
            src.noted.add(cls)
            out.append(f"{ind}{core} = {made.text}")
            out.append(f"{ind}{src.memo_var}[_id({core})] = {x}")
            return _E(core)
        case RecordSchema(name=name):
            found = src.fresh("fs")
            get = src.const(_by_name(name, s.field_names()))
            out.append(f"{ind}{found} = {get}({x})")
            out.append(f"{ind}if {found} is None: raise _Bad")
            return _enc_fields(src, s, x, found, out, ind, level)
        case UnionSchema(alternatives):
            return _enc_union(src, alternatives, x, out, ind, level)
    raise AssertionError(s)  # pragma: no cover - the match is exhaustive


def _enc_part(src: _Source, s: Schema, x: str, out: list[str], ind: str, level: int) -> _E:
    """An item of a list or dict: inline, or past the nesting limit a function of its own."""
    if level + 1 > _NEST_LIMIT:
        return _E(f"{src.const(_raw_encoder(s))}({x})", 1)
    return _enc(src, s, x, out, ind, level + 1)


def _collect_list(
    src: _Source, x: str, e: str, conv: _E, loop: list[str], out: list[str], ind: str
) -> _E:
    """A list's items collected into a persistent list: a copy when each item is itself."""
    result = src.fresh("l")
    if conv.text == e:
        if len(loop) > 1:  # the items are checked, not converted
            out.extend(loop)
        out.append(f"{ind}{result} = _mklist({x})")
        return _E(result)
    acc = src.fresh("acc")
    out.append(f"{ind}{acc} = []")
    out.extend(loop)
    out.append(f"{ind}    {acc}.append({conv.text})")
    out.append(f"{ind}{result} = _mklist({acc})")
    return _E(result)


def _enc_fields(
    src: _Source, s: RecordSchema, x: str, found: str | None, out: list[str], ind: str, level: int
) -> _E:
    """A record's fields, read from ``x`` (or the tuple ``found`` of a record known by name)."""
    if found is not None and s.fields:
        names = [src.fresh() for _ in s.fields]
        out.append(f"{ind}{', '.join(names)}, = {found}")
    parts = []
    for i, f in enumerate(s.fields):
        if found is not None:
            var = names[i]
        else:
            var = src.fresh()
            read = f"{x}.{f.name}" if _plain_name(f.name) else f"getattr({x}, {src.const(f.name)})"
            out.append(f"{ind}{var} = {read}")
        parts.append(_enc(src, f.schema, var, out, ind, level))
    return src.nest(parts, out, ind)


def _enc_union(
    src: _Source, alternatives: tuple[Schema, ...], x: str, out: list[str], ind: str, level: int
) -> _E:
    """The first alternative ``x`` belongs to (``_belongs``, in order), injected."""
    kind, result = src.fresh("t"), src.fresh("r")
    out.append(f"{ind}{kind} = type({x})")
    inner, keyword_ = ind + "    ", "if"
    count = len(alternatives)
    for index, alt in enumerate(alternatives):
        found: str | None = None
        match alt:
            case IntSchema():
                test = f"{kind} is int"
            case BoolSchema():
                test = f"{kind} is bool"
            case NoneSchema():
                test = f"{x} is None"
            case StrSchema():
                test = f"isinstance({x}, str)"
            case ListSchema():
                test = f"isinstance({x}, list)"
            case DictSchema():
                test = f"isinstance({x}, dict)"
            case TupleSchema():
                test = f"isinstance({x}, tuple)"
            case RecordSchema(cls=cls) if cls is not None:
                test = f"{kind} is {src.const(cls)}"
            case RecordSchema(name=name):
                found = src.fresh("fs")
                test = (
                    f"({found} := {src.const(_by_name(name, alt.field_names()))}({x})) is not None"
                )
            case _:  # a union never belongs to a union: the alternative is never chosen
                continue
        out.append(f"{ind}{keyword_} {test}:")
        keyword_ = "elif"
        if level + 1 > _NEST_LIMIT:
            fn = src.const(_raw_encoder(alt))
            e = _E(f"{fn}({x})", 1)
        elif isinstance(alt, RecordSchema):
            e = _enc_fields(src, alt, x, found, out, inner, level + 1)
        else:
            e = _enc(src, alt, x, out, inner, level + 1)
        e = src.inject(index, count, e, out, inner)
        out.append(f"{inner}{result} = {e.text}")
    out.append(f"{ind}else:" if keyword_ == "elif" else f"{ind}if True:")
    out.append(f"{inner}raise _Bad")
    return _E(result)


def _raw_encoder(s: Schema) -> Callable[[object], Value]:
    """A function converting ``s``'s values that raises :class:`_Bad` on anything else."""
    src = _Source()
    lines = ["def enc(x):"]
    e = _enc(src, s, "x", lines, "    ", 0)
    lines.append(f"    return {e.text}")
    fn: Callable[[object], Value] = src.compile(lines, "enc")
    return fn


def _build_encoder(s: Schema) -> Encoder:
    src = _Source()
    src.ns["_walk"], src.ns["_S"] = to_core_reference, s
    body: list[str] = []
    e = _enc(src, s, "v", body, "        ", 0)
    lines = [
        'def to_core(v, path="value"):',
        "    try:",
        *body,
        f"        return {e.text}",
        "    except Exception:",
        "        pass",
        "    return _walk(_S, v, path)",
    ]
    fn: Encoder = src.compile(lines, "to_core")
    return fn


# --- core -> Python -------------------------------------------------------------------------


def _dec(
    src: _Source, s: Schema, x: str, out: list[str], ind: str, level: int, checked: bool
) -> _E:
    """Emit the reads (and, ``checked``, the checks) converting the core value in ``x``."""
    match s:
        case IntSchema():
            if checked:
                out.append(f"{ind}if {_INT_CHECK.format(x=x)}: raise _Bad")
            return _E(x)
        case BoolSchema():
            if checked:
                out.append(
                    f"{ind}if type({x}) is not tuple or len({x}) != 2 or type({x}[0]) is not int "
                    f"or {x}[0] not in (0, 1) or type({x}[1]) is not tuple or {x}[1]: raise _Bad"
                )
            return _E(f"({x}[0] == 1)", 1)
        case NoneSchema():
            if checked:
                out.append(f"{ind}if type({x}) is not tuple or {x}: raise _Bad")
            return _E("None")
        case StrSchema():
            if checked:
                _text(x, out, ind)
            return _E(x)
        case ListSchema(item):
            if checked:
                out.append(f"{ind}if type({x}) is not _PV or len({x}) > {MAX_ELEMENTS}: raise _Bad")
            e = src.fresh("e")
            loop, (conv,) = _loop(
                x,
                [e],
                lambda lines, inner: [_dec_part(src, item, e, lines, inner, level, checked)],
                out,
                ind,
            )
            result = src.fresh("l")
            if conv.text == e:
                if len(loop) > 1:
                    out.extend(loop)
                out.append(f"{ind}{result} = {x}.tolist()")
            else:
                out.append(f"{ind}{result} = []")
                out.extend(loop)
                out.append(f"{ind}    {result}.append({conv.text})")
            return _E(result)
        case DictSchema(key, value):
            if checked:
                out.append(
                    f"{ind}if type({x}) is not _OMap or len({x}) > {MAX_ELEMENTS}: raise _Bad"
                )
            k, e = src.fresh("k"), src.fresh("e")
            loop, (kc, vc) = _loop(
                f"({x}._small or {x}).items()",  # a small map's own dict, else its slots
                [k, e],
                lambda lines, inner: [
                    _dec_part(src, key, k, lines, inner, level, checked),
                    _dec_part(src, value, e, lines, inner, level, checked),
                ],
                out,
                ind,
            )
            result = src.fresh("d")
            if kc.text == k and vc.text == e:
                if len(loop) > 1:
                    out.extend(loop)
                out.append(f"{ind}{result} = dict({x}.items())")
            else:
                out.append(f"{ind}{result} = {{}}")
                out.extend(loop)
                out.append(f"{ind}    {result}[{kc.text}] = {vc.text}")
            if checked:  # two keys that come back equal: the walker says which
                out.append(f"{ind}if len({result}) != len({x}): raise _Bad")
            return _E(result)
        case RecordSchema(cls=cls) if src.memo and not checked and cls in src.noted:
            result, ident = src.fresh(), src.fresh("j")
            out.append(f"{ind}{ident} = _id({x})")
            out.append(f"{ind}{result} = _memo.get({ident})")
            out.append(f"{ind}if type({result}) is not {src.const(cls)}:")
            src.memo = False  # the record's own fields are built as usual
            made = _dec(src, s, x, out, ind + "    ", level, checked)
            src.memo = True
            out.append(f"{ind}    {result} = {made.text}")
            if src.note_out:
                out.append(f"{ind}_mo[{ident}] = {result}")
            return _E(result)
        case TupleSchema() | RecordSchema():
            parts = [
                _dec(src, t, var, out, ind, level, checked)
                for t, var in zip(components(s), _unnest(src, x, s, out, ind, checked), strict=True)
            ]
            if isinstance(s, TupleSchema):
                return _E(f"({', '.join(p.text for p in parts)},)", 1 + max(p.depth for p in parts))
            return _make_record(src, s, parts, out, ind)
        case UnionSchema(alternatives):
            return _dec_union(src, alternatives, x, out, ind, level, checked)
    raise AssertionError(s)  # pragma: no cover - the match is exhaustive


def _make_record(src: _Source, s: RecordSchema, parts: list[_E], out: list[str], ind: str) -> _E:
    """Emit the construction of a record of ``s`` from its fields' values ``parts``: what the
    reference walker's ``cls(**fields)`` (or ``Record(name, **fields)``) makes, built as
    :func:`construction` says is the same."""
    result = src.fresh()
    names = s.field_names()
    plain = all(_plain_name(n) for n in names)
    keys = [repr(n) if plain else src.const(n) for n in names]  # an ASCII identifier's repr
    entries = ", ".join(f"{k}: {p.text}" for k, p in zip(keys, parts, strict=True))
    if s.cls is None:  # our own Record, its two slots set as its __init__ sets them
        out.append(f"{ind}{result} = _new(_Record)")
        out.append(f"{ind}_rec_name({result}, {src.const(s.name)})")
        out.append(f"{ind}_rec_fields({result}, _Proxy({{{entries}}}))")
        return _E(result)
    cls = src.const(s.cls)
    how = construction(s.cls, names)
    if how == "direct":
        out.append(f"{ind}{result} = _new({cls})")
        if parts:
            fields = src.fresh("f")
            out.append(f"{ind}{fields} = {result}.__dict__")
            out.extend(f"{ind}{fields}[{k}] = {p.text}" for k, p in zip(keys, parts, strict=True))
    elif how == "positional":
        out.append(f"{ind}{result} = {cls}({', '.join(p.text for p in parts)})")
    elif plain:
        args = ", ".join(f"{n}={p.text}" for n, p in zip(names, parts, strict=True))
        out.append(f"{ind}{result} = {cls}({args})")
    else:
        out.append(f"{ind}{result} = {cls}(**{{{entries}}})")
    return _E(result)


def construction(cls: type, names: tuple[str, ...]) -> str:
    """How compiled code may build an instance of ``cls`` from the values of the fields
    ``names`` (in order) and get exactly what ``cls(**fields)`` gives:

    - ``"direct"``: a new object whose ``__dict__`` gets the fields in order, which is all the
      ``__init__`` a dataclass generates does (for a frozen one, through
      ``object.__setattr__``) when nothing else is involved: no ``__post_init__``, no
      ``__new__``, ``__getattribute__`` or metaclass of its own, no descriptor (a slot, a
      property) under a field's name, every field set by ``__init__``, and an ``__init__``
      made by ``dataclasses`` itself, taking the fields in that order;
    - ``"positional"``: ``cls(a, b, ...)``, when its signature takes exactly the fields, in
      order, each by position or keyword;
    - ``"keyword"``: ``cls(name=a, ...)`` otherwise.

    Decided when the conversion is compiled, from the class as it is then."""
    if type(cls) is not type or getattr(cls, "__new__", None) is not _OBJECT_NEW:
        return "keyword"
    if _generated_init(cls, names):
        return "direct"
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - a class's signature is always known
        return "keyword"
    by_position = inspect.Parameter.POSITIONAL_OR_KEYWORD
    if [p.name for p in params] == list(names) and all(p.kind is by_position for p in params):
        return "positional"
    return "keyword"


def _generated_init(cls: type, names: tuple[str, ...]) -> bool:
    """Whether building ``cls`` is setting ``names`` in its instance's ``__dict__``, in order
    (:func:`construction`)."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return False
    params = getattr(cls, "__dataclass_params__", None)
    fields = dataclasses.fields(cls)
    if (
        not getattr(params, "init", False)
        or tuple(f.name for f in fields) != names
        or not all(f.init for f in fields)
        or not cls.__dictoffset__  # instances without a __dict__ (slots)
        or cls.__getattribute__ is not object.__getattribute__
        or not (getattr(params, "frozen", False) or cls.__setattr__ is object.__setattr__)
    ):
        return False
    for name in names:  # a data descriptor on the class would take the field's value
        found = inspect.getattr_static(cls, name, None)
        kind = type(found)
        if hasattr(kind, "__set__") or hasattr(kind, "__delete__"):
            return False
    init = inspect.getattr_static(cls, "__init__", None)
    if not isinstance(init, FunctionType):
        return False
    code = init.__code__
    # dataclasses compiles __init__ from text, inside a function __create_fn__ (3.11 to 3.13)
    if code.co_filename != "<string>" or code.co_qualname != "__create_fn__.<locals>.__init__":
        return False
    taken = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]  # after self
    in_order = [f.name for f in fields if not f.kw_only] + [f.name for f in fields if f.kw_only]
    starred = code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)
    return list(taken) == in_order and not starred


def _dec_part(
    src: _Source, s: Schema, x: str, out: list[str], ind: str, level: int, checked: bool
) -> _E:
    """An item of a list or dict: inline, or past the nesting limit a function of its own."""
    if level + 1 > _NEST_LIMIT:
        return _E(f"{src.const(_raw_decoder(s, checked))}({x})", 1)
    return _dec(src, s, x, out, ind, level + 1, checked)


def _unnest(
    src: _Source, x: str, s: TupleSchema | RecordSchema, out: list[str], ind: str, checked: bool
) -> Iterator[str]:
    """Variables holding the components of the right-nested product in ``x``."""
    n = len(components(s))
    if n == 0:
        if checked:
            out.append(f"{ind}if type({x}) is not tuple or {x}: raise _Bad")
        return
    rest = x
    for _ in range(n - 1):
        if checked:
            out.append(f"{ind}if type({rest}) is not tuple or len({rest}) != 2: raise _Bad")
        first, second = src.fresh(), src.fresh()
        out.append(f"{ind}{first}, {second} = {rest}")
        yield first
        rest = second
    yield rest


def _dec_union(
    src: _Source,
    alternatives: tuple[Schema, ...],
    x: str,
    out: list[str],
    ind: str,
    level: int,
    checked: bool,
) -> _E:
    """``inl`` is the first alternative, ``inr`` the union of the others (the last: itself)."""
    if len(alternatives) == 1:
        return _dec(src, alternatives[0], x, out, ind, level, checked)
    result, payload, inner = src.fresh("r"), src.fresh(), ind + "    "
    if checked:
        out.append(
            f"{ind}if type({x}) is not tuple or len({x}) != 2 or type({x}[0]) is not int: "
            "raise _Bad"
        )
    out.append(f"{ind}{payload} = {x}[1]")
    second = f"elif {x}[0] == 1:" if checked else "else:"
    for alt, head in ((alternatives[0], f"if {x}[0] == 0:"), (_rest(alternatives), second)):
        out.append(f"{ind}{head}")
        if level + 1 > _NEST_LIMIT:
            fn = src.const(_raw_decoder(alt, checked))
            e = _E(f"{fn}({payload})", 1)
        else:
            e = _dec(src, alt, payload, out, inner, level + 1, checked)
        out.append(f"{inner}{result} = {e.text}")
    if checked:
        out.append(f"{ind}else:")
        out.append(f"{inner}raise _Bad")
    return _E(result)


def _rest(alternatives: tuple[Schema, ...]) -> Schema:
    """The alternatives after the first, as one schema of the same layout and values."""
    if len(alternatives) == 2:
        return alternatives[1]
    return UnionSchema(alternatives[1:])


def _raw_decoder(s: Schema, checked: bool) -> Callable[[Value], Any]:
    src = _Source()
    lines = ["def dec(x):"]
    e = _dec(src, s, "x", lines, "    ", 0, checked)
    lines.append(f"    return {e.text}")
    fn: Callable[[Value], Any] = src.compile(lines, "dec")
    return fn


def _build_decoder(s: Schema) -> Decoder:
    src = _Source()
    src.ns["_walk"], src.ns["_S"] = from_core_reference, s
    body: list[str] = []
    e = _dec(src, s, "x", body, "        ", 0, checked=True)
    lines = [
        "def from_core(x):",
        "    try:",
        *body,
        f"        return {e.text}",
        "    except Exception:",
        "        pass",
        "    return _walk(_S, x)",
    ]
    fn: Decoder = src.compile(lines, "from_core")
    return fn


# --- caches and runners ---------------------------------------------------------------------


def _classes(s: Schema) -> tuple[type | None, ...]:
    """The classes of a schema's records in order: with the schema (whose equality ignores
    them), what decides its conversions."""
    return tuple(r.cls for r in records(s))


@lru_cache(maxsize=512)
def _encoder(s: Schema, classes: tuple[type | None, ...]) -> Encoder:
    return _build_encoder(s)


@lru_cache(maxsize=512)
def _decoder(s: Schema, classes: tuple[type | None, ...]) -> Decoder:
    return _build_decoder(s)


@lru_cache(maxsize=512)
def _trusted(s: Schema, classes: tuple[type | None, ...]) -> Callable[[Value], Any]:
    return _raw_decoder(s, checked=False)


def to_core_function(s: Schema) -> Encoder:
    """``to_core(s, ·, path)`` compiled: ``f(value, path="value")``, the same results and the
    same errors as the reference walker. Cached by schema and classes."""
    return _encoder(s, _classes(s))


def from_core_function(s: Schema) -> Decoder:
    """``from_core(s, ·)`` compiled: the same results and errors (the value is checked)."""
    return _decoder(s, _classes(s))


def trusted_from_core_function(s: Schema) -> Callable[[Value], Any]:
    """``from_core(s, ·)`` for values known to be of ``core_type(s)`` (results of verified
    code): no checks, like :func:`hotswap.cam.values.value_encoder`."""
    return _trusted(s, _classes(s))


def _shareable(s: Schema) -> bool:
    """Whether values of ``s`` are frozen dataclasses all the way down (no list, dict, or
    class that could change): two equal ones can stand for each other."""
    match s:
        case IntSchema() | BoolSchema() | NoneSchema() | StrSchema():
            return True
        case TupleSchema(items):
            return all(_shareable(t) for t in items)
        case RecordSchema(cls=cls) if cls is not None:
            params = getattr(cls, "__dataclass_params__", None)  # eq=False: identity matters
            frozen, eq = getattr(params, "frozen", False), getattr(params, "eq", False)
            return bool(frozen and eq) and all(_shareable(f.schema) for f in s.fields)
        case UnionSchema(alternatives):
            return all(_shareable(t) for t in alternatives)
    return False


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


#: What a :func:`machine_runner` with ``rebind`` sees in place of an argument not given.
UNSET: Any = _Unset()

#: ``rebind(i, s, rest, kw)``: a machine's run called otherwise than with two positional
#: arguments (``i`` and ``s`` the first two or :data:`UNSET`, then the others and the keywords).
Rebind = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], tuple[Any, Any]]


#: States of at most this many list items and dict entries in all (:func:`_state_cache`) are
#: kept by a :func:`machine_runner`, in its last :data:`CACHE_SLOTS` states.
CACHE_ELEMENTS = 4096
#: The states a :func:`machine_runner` keeps, the most recently used first.
CACHE_SLOTS = 4


def _state_cache(s: Schema) -> tuple[str, ...] | None:
    """How a state of ``s`` is told unchanged, when it can be (else None): a record of a class
    (not one known by name) whose fields are each :func:`_shareable` (``"same"``: the same
    object is the same value) or a ``list`` or ``dict`` of shareable items (``"list"``,
    ``"dict"``: the same object, its items those of a copy taken when it was kept, compared
    by ``==``, which an identical item passes at once, or by identity where an equal item may
    not convert (:func:`_confusable`: ``True == 1``); a dict's keys in the same order). At
    least one field is a list or dict: a state of shareable values alone converts as fast as
    it is told unchanged."""
    if not isinstance(s, RecordSchema) or s.cls is None:
        return None
    kinds: list[str] = []
    for f in s.fields:
        match f.schema:
            case ListSchema(item) if _shareable(item):
                kinds.append("list")
            case DictSchema(key, value) if _shareable(key) and _shareable(value):
                kinds.append("dict")
            case other if _shareable(other):
                kinds.append("same")
            case _:
                return None
    return tuple(kinds) if {"list", "dict"} & set(kinds) else None


def machine_runner(
    input: Schema,
    state: Schema,
    output: Schema,
    step: Callable[..., Value],
    rebind: Rebind | None = None,
    fuel: int | None = None,
) -> Callable[..., tuple[Any, Any]]:
    """``run(input, state) -> (state, output)`` in Python values around the fast-path ``step``
    of a machine whose types are those of the schemas: one function, the conversions inline.
    A value that does not convert raises what ``to_core(schema, value, "input"/"state")`` does.
    Given ``rebind``, ``run`` takes any arguments, and any call but ``run(input, state)`` is
    ``rebind``'s (which binds them as the plain function would): so ``run`` can stand for
    ``Machine.run`` itself, with no wrapper to call first. Given ``fuel``, ``step`` is metered
    fast-path code (``hotswap.cam.codegen``), called as ``step(value, fuel)[0]`` with its
    :class:`OutOfFuel` raised as the trap ``out_of_fuel(fuel)``: the wrapper
    ``LoadedModule.function`` makes around it, inline.

    Records the step passes through untouched come back as the very objects that went in, as
    they do from the plain function (``dict(cart.lines)`` shares its lines): each frozen record
    converted on the way in is noted by the ``id`` of the core value made of it (``_memo``),
    and on the way out a core value of that ``id``, where the same class is expected, is that
    record again. An ``id`` names one object only while it lives: every core value noted is
    part of the converted input or state, which the function holds until it returns (and when
    the walker converts them instead, the notes are dropped). Only records that nothing can
    change (:func:`_shareable`) are noted, so sharing one is never observable.

    States are kept (:func:`_state_cache`): a state of at most :data:`CACHE_ELEMENTS` items
    that ``run`` converted, or returned, is kept with its core value and its notes, in the
    last :data:`CACHE_SLOTS` such states (a tuple of entries, replaced whole, so threads
    calling ``run`` at once each see a consistent one). A state given again, the same object,
    of the same class, with the same object in each field and each list and dict holding the
    items of the copy taken when it was kept (equal, or the very objects where an equal item
    might not convert; so changed in place since, it is converted again), is that
    core value: nothing in it can have changed, so converting it would give an equal value.
    The copies and the core values the entries hold are what the bound is for: at most
    ``CACHE_SLOTS * CACHE_ELEMENTS`` items copied and as many held; a larger state is
    converted at each call, as before. The dicts and lists ``run`` returns are always new.
    When the step returns the very core value of a state kept or converted here (a refusal,
    say), the new state is made from that state's entry (:func:`_given_back`): a new record,
    its fields the same objects, each list and dict a new copy of the entry's copy, and that
    state kept too, converting nothing.

    A dict of the new state comes back by difference from the dict of the state given, when
    both are small maps (:func:`_dec_by_difference`): the entries the step left as they were
    are the Python values they were, and only the others are converted. None of that dict's
    entries, kept or converted, is noted in the returned state's entry: a record that a later
    step moves to another key is built again (equal, another object)."""
    src = _Source()
    src.memo = True
    src.ns["_step"] = step
    if fuel is not None:
        src.ns["_fuel"], src.ns["_OutOfFuel"], src.ns["_oof"] = fuel, OutOfFuel, out_of_fuel
    src.ns["_in"], src.ns["_st"] = to_core_function(input), to_core_function(state)
    kinds = _state_cache(state)
    a, b = src.fresh("a"), src.fresh("b")
    body: list[str] = []
    tail: list[str] = []
    if kinds is None:
        for var, schema, arg in ((a, input, "i"), (b, state, "s")):
            e = _enc(src, schema, arg, body, "        ", 0)
            body.append(f"        {var} = {e.text}")
        c = _dec(src, state, "n", tail, "    ", 0, checked=False)
    else:
        assert isinstance(state, RecordSchema)
        # the entries kept, the most recently used first (none yet: a state no one has)
        src.ns["_h"] = [((object(),),) * CACHE_SLOTS]
        body.extend(_cached_state(src, state, kinds, b))
        state_noted, src.noted = src.noted, set()
        inp: list[str] = []
        e = _enc(src, input, "i", inp, "        ", 0)
        # the state's notes are its entry's, never changed: the input's go into a copy
        body.append(f"        _memo = _ms{'.copy()' if src.noted else ''}")
        body.extend(inp)
        body.append(f"        {a} = {e.text}")
        src.noted |= state_noted
        # a state made by a class's own __init__ might not hold what it was made of: kept
        # only when each record in it is built as its fields say (construction "direct")
        built = all(
            r.cls is not None and construction(r.cls, r.field_names()) == "direct"
            for r in records(state)
        )
        c = _dec_cached_state(src, state, kinds, tail, keep=built)
        # the step gave back the core value of a state told unchanged or converted here: the
        # new state is made from the entry's parts, nothing converted
        again: list[str] = []
        r = _given_back(src, state, kinds, b, again, keep=built)
        tail = [
            f"    if n is {b} and _e is not None:",
            *again,
            "    else:",
            *("    " + line for line in tail),
            f"        {r} = {c.text}",
        ]
        c = _E(r)
    d = _dec(src, output, "o", tail, "    ", 0, checked=False)
    if rebind is None:
        head = ["def run(i, s):"]
    else:
        src.ns["_rebind"], src.ns["_UNSET"] = rebind, UNSET
        head = [
            "def run(i=_UNSET, s=_UNSET, /, *rest, **kw):",
            "    if rest or kw or s is _UNSET: return _rebind(i, s, rest, kw)",
        ]
    lines = [
        *head,
        *(["    _memo = {}"] if src.noted and kinds is None else []),  # nothing to note: none
        "    try:",
        *body,
        "    except Exception:",
        *(["        _memo = {}"] if src.noted else []),  # what it noted may be gone
        *(["        _e = None"] if kinds is not None else []),  # no entry: the walker's value
        *(f"        {prior[2]} = None" for prior in src.prior.values()),  # nothing to compare
        f'        {a} = _in(i, "input")',
        f'        {b} = _st(s, "state")',
        *(
            [f"    n, o = _step(({a}, {b}))"]
            if fuel is None
            else [
                "    try:",
                f"        n, o = _step(({a}, {b}), _fuel)[0]",
                "    except _OutOfFuel:",
                "        raise _oof(_fuel) from None",
            ]
        ),
        *tail,
        f"    return ({c.text}, {d.text})",
    ]
    fn: Callable[..., tuple[Any, Any]] = src.compile(lines, "run")
    return fn


def _read(src: _Source, x: str, name: str) -> str:
    """The expression reading attribute ``name`` of ``x``."""
    return f"{x}.{name}" if _plain_name(name) else f"getattr({x}, {src.const(name)})"


def _cached_state(src: _Source, s: RecordSchema, kinds: tuple[str, ...], b: str) -> list[str]:
    """The state in variable ``s`` to core in ``b``, its notes in ``_ms``: an entry's
    (:func:`machine_runner`) when the state is the same object, unchanged, else converted (its
    records noted in a new ``_ms``) and, when small enough, kept. An entry is ``(state, core,
    notes, field, [copy, [keys, core map,]] ...)``: each field's object, a copy of each list
    and dict, and a dict's keys in order (equal dicts may differ in their order, which is part
    of the value) and the core map the copy is. For a dict that can come back by difference
    (:func:`_diffable`), the copy, its keys and its core map are also left in the variables
    ``src.prior`` names (the core map None when the dict was not copied, being too large or
    not exactly a ``dict``, and when the walker converted the state)."""
    assert s.cls is not None
    cls, ind = src.const(s.cls), "        "
    reads = [_read(src, "s", f.name) for f in s.fields]
    checks, hit, at = [f"type(s) is {cls}"], [], 3
    for j, (f, read, kind) in enumerate(zip(s.fields, reads, kinds, strict=True)):
        if kind == "same":
            checks.append(f"{read} is _e[{at}]")
            at += 1
            continue
        # equal to the copy, or, where an equal item may be of another type (True == 1, which
        # converting refuses for an Int), the very items of the copy
        copy = f"_e[{at + 1}]"
        checks.append(f"(_x := {read}) is _e[{at}]")
        if kind == "list":
            assert isinstance(f.schema, ListSchema)
            if _confusable(f.schema.item):
                checks.append(f"len(_x) == len({copy}) and all(map(_is, _x, {copy}))")
            else:
                checks.append(f"_x == {copy}")
            at += 2
            continue
        assert isinstance(f.schema, DictSchema)
        if _confusable(f.schema.value):
            checks.append(f"len(_x) == len({copy})")
            checks.append(f"all(map(_is, _x.values(), {copy}.values()))")
        else:
            checks.append(f"_x == {copy}")
        # and the same keys in the same order (equal dicts may differ in their order)
        keys = f"_e[{at + 2}]"
        if _confusable(f.schema.key):
            checks.append(f"all(map(_is, _x, {keys}))")  # the length is checked above
        else:
            checks.append(f"[*_x] == {keys}")
        if _diffable(f.schema):
            prior = src.prior[j] = (src.fresh("_pw"), src.fresh("_pk"), src.fresh("_pm"))
            hit.append(f"{ind}    {', '.join(prior)} = _e[{at + 1}], _e[{at + 2}], _e[{at + 3}]")
        at += 4
    out = [f"{ind}_c = _h[0]"]
    for k in range(CACHE_SLOTS):  # the entry of this state, moved first
        out.append(f"{ind}{'elif' if k else 'if'} _c[{k}][0] is s:")
        out.append(f"{ind}    _e = _c[{k}]")
        if k:
            rest = ", ".join(f"_c[{j}]" for j in range(CACHE_SLOTS) if j != k)
            out.append(f"{ind}    _h[0] = (_e, {rest})")
    out += [
        f"{ind}else:",
        f"{ind}    _e = None",
        f"{ind}if _e is not None and {' and '.join(checks)}:",
        f"{ind}    {b} = _e[1]",
        f"{ind}    _ms = _e[2]",
        *hit,
        f"{ind}else:",
        f"{ind}    _e = None  # not this state's, if it failed the checks",
        f"{ind}    _ms = {{}}",
        f"{ind}    if type(s) is not {cls}: raise _Bad",
    ]
    body = ind + "    "
    src.memo_var = "_ms"
    entry, sizes, copied = ["s", b, "_ms"], [], []
    parts = []
    for j, (f, read, kind) in enumerate(zip(s.fields, reads, kinds, strict=True)):
        var = src.fresh()
        out.append(f"{body}{var} = {read}")
        entry.append(var)
        if kind == "same":
            parts.append(_enc(src, f.schema, var, out, body, 0))
            continue
        # converted from a copy, taken first: the copy is what was converted
        copy = src.fresh("w")
        small = f"type({var}) is {kind} and len({var}) <= {CACHE_ELEMENTS}"
        out.append(f"{body}{copy} = {kind}({var}) if {small} else {var}")
        entry.append(copy)
        sizes.append(f"len({copy})")
        copied.append(f"{copy} is not {var}")
        part = src.bind(_enc(src, f.schema, copy, out, body, 0), out, body)
        parts.append(part)
        if kind == "dict":
            keys = f"[*{copy}]"
            if j in src.prior:
                pw, pk, pm = src.prior[j]
                out.append(f"{body}if {copy} is not {var}:")
                out.append(f"{body}    {pw}, {pk}, {pm} = {copy}, {keys}, {part.text}")
                out.append(f"{body}else:")
                out.append(f"{body}    {pm} = None")
                keys = pk
            entry += [keys, part.text]
    src.memo_var = "_memo"
    made = src.nest(parts, out, body)
    out.append(f"{body}{b} = {made.text}")
    out.append(f"{body}if {' and '.join(copied)} and {' + '.join(sizes)} <= {CACHE_ELEMENTS}:")
    out.append(f"{body}    _e = ({', '.join(entry)})")
    out.append(f"{body}    {_push(['_e'])}")
    return out


def _given_back(
    src: _Source, s: RecordSchema, kinds: tuple[str, ...], b: str, out: list[str], keep: bool
) -> str:
    """Emit, into ``out``, the new state when the step returned ``b``, the core value of the
    state given, whose entry (:func:`_cached_state`) is ``_e``: a record of the entry's field
    objects (their values :func:`_shareable`), each list and dict a new copy of the entry's
    copy, which is the value ``b`` is; with ``keep``, that record kept as an entry of its own,
    which shares the entry's copies (never handed out, never changed). The variable that
    holds the record."""
    ind = "        "
    parts, entry, at = [], ["", b, "_e[2]"], 3
    for kind in kinds:
        if kind == "same":
            parts.append(_E(f"_e[{at}]"))
            entry.append(f"_e[{at}]")
            at += 1
            continue
        var = src.fresh("g")
        out.append(f"{ind}{var} = _e[{at + 1}].copy()")
        parts.append(_E(var))
        entry += [var, f"_e[{at + 1}]"]
        at += 2
        if kind == "dict":
            entry += [f"_e[{at}]", f"_e[{at + 1}]"]
            at += 2
    made = _make_record(src, s, parts, out, ind)
    if keep:
        entry[0] = made.text
        out.append(f"{ind}{_push(entry)}")
    return made.text


def _push(entry: list[str]) -> str:
    """The statement putting the entry of ``entry``'s items first in the kept states, the last
    one dropped: the slots of one tuple of entries (``_t``) named one by one, which is cheaper
    than slicing it."""
    kept = [f"_t[{k}]" for k in range(CACHE_SLOTS - 1)]
    if kept:
        kept[0] = "(_t := _h[0])[0]"
    return f"_h[0] = (({', '.join(entry)}), {', '.join(kept)})"


def _confusable(s: Schema) -> bool:
    """Whether a value of ``s`` may equal one that does not convert: an ``int`` where a
    ``bool`` is expected, or a ``bool`` where an ``int`` is (``True == 1``), anywhere in it.
    Any other value equal to one of ``s`` converts to the same core value (a ``str`` or a
    ``tuple`` of a subclass is converted as its text or items) or is refused by ``==`` too."""
    return any(isinstance(t, IntSchema | BoolSchema) for t in nodes(s))


def _diffable(s: Schema) -> bool:
    """Whether a state's dict of ``s`` comes back by difference (:func:`_dec_by_difference`):
    its keys are their own core values (``int``, ``str``), and its values hold no record but,
    at most, the value itself. A value is then looked up in the notes (the input's, the
    state's) as one record, when its entry changed; records inside it would each need a
    lookup of their own, which the whole conversion does instead."""
    if not isinstance(s, DictSchema) or not isinstance(s.key, IntSchema | StrSchema):
        return False
    found = list(records(s.value))
    return not found or (len(found) == 1 and found[0] is s.value)


def _dec_cached_state(
    src: _Source, s: RecordSchema, kinds: tuple[str, ...], out: list[str], keep: bool
) -> _E:
    """The new state ``n`` back to Python (trusted); with ``keep``, kept as an entry
    (:func:`_cached_state`) when small enough, its records noted in ``_mo`` by their core
    values as they are made."""
    ind = "    "
    if not keep:
        return _dec(src, s, "n", out, ind, 0, checked=False)
    out.append(f"{ind}_mo = {{}}")
    src.note_out = True
    cores = list(_unnest(src, "n", s, out, ind, False))
    parts, keys = [], []
    for j, (f, var) in enumerate(zip(s.fields, cores, strict=True)):
        if j in src.prior:
            assert isinstance(f.schema, DictSchema)
            part, ks = _dec_by_difference(src, f.schema, var, src.prior[j], out, ind)
            keys.append(f"({ks} if {ks} is not None else [*{part.text}])")
        else:
            part = src.bind(_dec(src, f.schema, var, out, ind, 0, False), out, ind)
            keys.append(f"[*{part.text}]")
        parts.append(part)
    src.note_out = False
    made = _make_record(src, s, parts, out, ind)
    entry, sizes = [made.text, "n", "_mo"], []
    for part, kind, core, key in zip(parts, kinds, cores, keys, strict=True):
        entry.append(part.text)
        if kind != "same":
            entry.append(f"{kind}({part.text})")
            if kind == "dict":
                entry += [key, core]
            sizes.append(f"len({part.text})")
    out.append(f"{ind}if {' + '.join(sizes)} <= {CACHE_ELEMENTS}:")
    out.append(f"{ind}    {_push(entry)}")
    return made


def _dec_by_difference(
    src: _Source, s: DictSchema, x: str, prior: tuple[str, str, str], out: list[str], ind: str
) -> tuple[_E, str]:
    """The new state's dict (the core map in ``x``) back to Python from the dict the step's
    state was converted from (``prior``: that dict's copy, its keys, and the core map it became;
    :func:`_cached_state`): an entry whose core value is the very one it had there is the
    Python value it had there (a value :func:`_shareable`, of exactly the types converting
    it back makes: the compiled conversion takes no subclass of ``str`` or ``tuple``); only the
    others are converted. A step that changes one entry of a small map converts that entry
    alone, and the loops over the others run in C. When either map is large (no ``_small``
    dict) or there is nothing to compare with, the dict is converted whole. Also the variable
    holding the dict's keys in order (None when converted whole)."""
    pw, pk, pm = prior
    ns, old, ks, d = src.fresh("ns"), src.fresh("os"), src.fresh("ks"), src.fresh("d")
    k, e, ch, inner = src.fresh("k"), src.fresh("e"), src.fresh("ch"), ind + "    "
    out += [
        f"{ind}if {pm} is not None and ({ns} := {x}._small) is not None "
        f"and ({old} := {pm}._small) is not None:",
        f"{inner}{ks} = [*{ns}]",
        f"{inner}if {ks} == {pk}:  # the same keys in the same order: the values side by side",
        f"{inner}    {d} = {pw}.copy()",
        f"{inner}    {ch} = _compress({ks}, map(_is_not, {ns}.values(), {old}.values()))",
        f"{inner}else:",
        f"{inner}    {d} = dict(zip({ks}, map({pw}.get, {ks})))",
        f"{inner}    {ch} = _compress({ks}, map(_is_not, {ns}.values(), map({old}.get, {ks})))",
        f"{inner}for {k} in {ch}:",
        f"{inner}    {e} = {ns}[{k}]",
    ]
    note, src.note_out = src.note_out, False
    v = _dec_part(src, s.value, e, out, inner + "    ", 0, False)
    src.note_out = note
    out.append(f"{inner}    {d}[{k}] = {v.text}")
    out += [f"{ind}else:", f"{inner}{ks} = None"]
    whole = _dec(src, s, x, out, inner, 0, False)
    out.append(f"{inner}{d} = {whole.text}")
    return _E(d), ks


def migration_runner(
    old: Schema, new: Schema, migrate: Callable[[Value], Value]
) -> Callable[[object], Any]:
    """``run(old_state) -> new_state`` in Python values around the fast-path ``migrate``."""
    enc, dec = to_core_function(old), trusted_from_core_function(new)

    def run(state: object) -> Any:
        return dec(migrate(enc(state, "state")))

    return run
