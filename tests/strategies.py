"""Hypothesis strategies for every test, and the oracle of the DSL tests.

Core language: types, values of a type, and well-typed terms of a given domain. DSL: Python
types in the subset and Python values of a schema, and the oracle, which runs a machine's plain
Python function with every int replaced by a :class:`CheckedInt`, whose arithmetic traps exactly
like the core language (signed 64-bit overflow, division by zero, with the same :class:`Trap`).
Then the plain function *is* the specification, traps included, and any compiled path must give
the same outcome.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import operator
import re
import tokenize
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from hotswap.errors import Trap
from hotswap.lang import ints as core_ints
from hotswap.lang.check import infer
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import INT_MAX, INT_MIN
from hotswap.lang.persistent import EMPTY_MAP, OMap, PVector, make_list
from hotswap.lang.terms import (
    ARITHMETIC,
    COMPARISONS,
    DISTL,
    FST,
    ID,
    SND,
    TERMINAL,
    Case,
    Compose,
    Fail,
    Fanout,
    Fold,
    Inl,
    Inr,
    Lit,
    Op,
    Prim,
    StrLit,
    Term,
    compose,
)
from hotswap.lang.types import (
    BOOL,
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
)
from hotswap.lang.values import constant
from hotswap.names.schema import (
    BoolSchema,
    IntSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    TupleSchema,
    UnionSchema,
)

# --- core types, values and well-typed terms ------------------------------------------------------

leaf_types = st.sampled_from([UNIT, INT, BOOL])


def types(max_leaves: int = 6) -> st.SearchStrategy[Type]:
    return st.recursive(
        leaf_types,
        lambda inner: st.builds(Prod, inner, inner) | st.builds(Sum, inner, inner),
        max_leaves=max_leaves,
    )


#: Mostly small integers, sometimes near the edges of the range so that traps happen.
ints = st.one_of(
    st.integers(-5, 5),
    st.integers(INT_MIN, INT_MAX),
    st.sampled_from([INT_MIN, INT_MIN + 1, INT_MAX - 1, INT_MAX, 2**62, -(2**62)]),
)


def values(t: Type) -> st.SearchStrategy[Value]:
    """Values of type ``t``."""
    match t:
        case UnitT():
            return st.just(())
        case IntT():
            return ints
        case Prod(left, right):
            return st.tuples(values(left), values(right))
        case Sum(left, right):
            return st.one_of(
                values(left).map(lambda v: (0, v)), values(right).map(lambda v: (1, v))
            )
    raise AssertionError(t)


def _int_paths(t: Type, path: Term = ID) -> list[Term]:
    """Projections from ``t`` to each of its Int (or Bool) components reachable by fst/snd."""
    if t is INT or t is BOOL:
        return [path]
    if isinstance(t, Prod):
        return _int_paths(t.left, Compose(path, FST)) + _int_paths(t.right, Compose(path, SND))
    return []


@st.composite
def terms(draw: st.DrawFn, dom: Type, depth: int = 4) -> Term:
    """A term well typed at ``dom``, of any codomain."""
    choices: list[str] = ["id", "terminal", "lit", "inl", "inr"]
    if depth > 0:
        choices += ["compose", "fanout", "compose", "prim"]
    if isinstance(dom, Prod):
        choices += ["fst", "snd", "fst", "snd"]
        if isinstance(dom.right, Sum):
            choices.append("distl")
        if depth > 0:
            choices.append("match")
    if isinstance(dom, Sum) and depth > 0:
        choices += ["case", "case"]
    kind = draw(st.sampled_from(choices))
    sub = depth - 1
    match kind:
        case "id":
            return ID
        case "terminal":
            return TERMINAL
        case "lit":
            return Lit(draw(ints))
        case "inl":
            return Inl(draw(types(3)))
        case "inr":
            return Inr(draw(types(3)))
        case "fst":
            return FST
        case "snd":
            return SND
        case "distl":
            return DISTL
        case "compose":
            f = draw(terms(dom, sub))
            return Compose(f, draw(terms(infer(f, dom), sub)))
        case "fanout":
            return Fanout(draw(terms(dom, sub)), draw(terms(dom, sub)))
        case "prim":
            return draw(_prim_term(dom, sub))
        case "case":
            assert isinstance(dom, Sum)
            return _case(draw(terms(dom.left, sub)), draw(terms(dom.right, sub)), dom)
        case "match":
            scrutinee = draw(_sum_term(dom, sub))
            s = infer(scrutinee, dom)
            assert isinstance(s, Sum)
            left = draw(terms(Prod(dom, s.left), sub))
            right = draw(terms(Prod(dom, s.right), sub))
            return Compose(
                Fanout(ID, scrutinee),
                Compose(DISTL, _case(left, right, Sum(Prod(dom, s.left), Prod(dom, s.right)))),
            )
    raise AssertionError(kind)


def _case(f: Term, g: Term, dom: Sum) -> Term:
    """``[f | g]``, with the arms' codomains made to agree by injecting into their sum."""
    a, b = infer(f, dom.left), infer(g, dom.right)
    if a is b:
        return Case(f, g)
    return Case(Compose(f, Inl(b)), Compose(g, Inr(a)))


@st.composite
def _int_term(draw: st.DrawFn, dom: Type, depth: int) -> Term:
    paths = [p for p in _int_paths(dom) if infer(p, dom) is INT]
    options = [Lit(draw(ints)), *paths]
    if depth > 0:
        op = draw(st.sampled_from(sorted(ARITHMETIC, key=lambda o: o.value)))
        a, b = draw(_int_term(dom, depth - 1)), draw(_int_term(dom, depth - 1))
        options.append(Compose(Fanout(a, b), Prim(op)))
        options.append(Compose(a, Prim(Op.NEG)))
    return draw(st.sampled_from(options))


@st.composite
def _bool_term(draw: st.DrawFn, dom: Type, depth: int) -> Term:
    paths = [p for p in _int_paths(dom) if infer(p, dom) is BOOL]
    op = draw(st.sampled_from(sorted(COMPARISONS, key=lambda o: o.value)))
    a, b = draw(_int_term(dom, depth)), draw(_int_term(dom, depth))
    options = [Compose(Fanout(a, b), Prim(op)), *paths]
    if depth > 0:
        x, y = draw(_bool_term(dom, depth - 1)), draw(_bool_term(dom, depth - 1))
        logic = draw(st.sampled_from([Op.AND, Op.OR]))
        options += [Compose(Fanout(x, y), Prim(logic)), Compose(x, Prim(Op.NOT))]
    return draw(st.sampled_from(options))


@st.composite
def _prim_term(draw: st.DrawFn, dom: Type, depth: int) -> Term:
    if draw(st.booleans()):
        return draw(_int_term(dom, min(depth, 2)))
    return draw(_bool_term(dom, min(depth, 2)))


@st.composite
def _sum_term(draw: st.DrawFn, dom: Type, depth: int) -> Term:
    """A term from ``dom`` into some sum type: a comparison, a projection, or an injection."""
    sums = [p for p in _sum_paths(dom)]
    options = [
        draw(_bool_term(dom, min(depth, 2))),
        Compose(draw(terms(dom, depth)), Inl(draw(types(3)))),
    ]
    return draw(st.sampled_from(options + sums))


def _sum_paths(t: Type, path: Term = ID) -> list[Term]:
    if isinstance(t, Sum):
        return [path]
    if isinstance(t, Prod):
        return _sum_paths(t.left, Compose(path, FST)) + _sum_paths(t.right, Compose(path, SND))
    return []


@st.composite
def typed_terms(draw: st.DrawFn, depth: int = 4) -> tuple[Term, Type, Type, Value]:
    """``(term, dom, cod, value)`` with ``term : dom -> cod`` and ``value : dom``."""
    dom = draw(types())
    term = draw(terms(dom, depth))
    return term, dom, infer(term, dom), draw(values(dom))


# --- the DSL oracle: plain Python under the core language's integer rules -------------------------


def _lift(f: Callable[[int, int], int]) -> Any:
    def forward(self: CheckedInt, other: object) -> object:
        if not isinstance(other, int) or isinstance(other, bool):
            return NotImplemented
        return CheckedInt(f(int(self), int(other)))

    return forward


def _lift_reflected(f: Callable[[int, int], int]) -> Any:
    def reflected(self: CheckedInt, other: object) -> object:
        if not isinstance(other, int) or isinstance(other, bool):
            return NotImplemented
        return CheckedInt(f(int(other), int(self)))

    return reflected


class CheckedInt(int):
    """An int whose arithmetic follows the core language: results outside 64 bits trap."""

    __add__ = _lift(core_ints.add)
    __radd__ = _lift_reflected(core_ints.add)
    __sub__ = _lift(core_ints.sub)
    __rsub__ = _lift_reflected(core_ints.sub)
    __mul__ = _lift(core_ints.mul)
    __rmul__ = _lift_reflected(core_ints.mul)
    __floordiv__ = _lift(core_ints.floordiv)
    __rfloordiv__ = _lift_reflected(core_ints.floordiv)
    __mod__ = _lift(core_ints.mod)
    __rmod__ = _lift_reflected(core_ints.mod)

    def __neg__(self) -> CheckedInt:
        return CheckedInt(core_ints.neg(int(self)))

    def __pos__(self) -> CheckedInt:
        return self

    def __abs__(self) -> CheckedInt:
        return -self if self < 0 else self


def checked(v: Any) -> Any:
    """``v`` with every int (not bool) replaced by a :class:`CheckedInt`."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return CheckedInt(v)
    if isinstance(v, tuple):
        return tuple(checked(x) for x in v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return type(v)(**{f.name: checked(getattr(v, f.name)) for f in dataclasses.fields(v)})
    return v


def plain(v: Any) -> Any:
    """The inverse of :func:`checked`."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, tuple):
        return tuple(plain(x) for x in v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return type(v)(**{f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)})
    return v


Outcome = tuple[str, object]


def outcome(run: Callable[..., Any], *args: Any) -> Outcome:
    """``("ok", result)`` or ``("trap", trap)``."""
    try:
        return ("ok", run(*args))
    except Trap as t:
        return ("trap", t)


def python_outcome(fn: Callable[..., Any], *args: Any) -> Outcome:
    """What the plain Python function does under the core language's integer rules."""
    return outcome(lambda *a: plain(fn(*(checked(x) for x in a))), *args)


# --- Python values of a schema --------------------------------------------------------------------

#: Ints for Python values: mostly near zero, sometimes at the edges of the range.
python_ints = st.one_of(
    st.integers(-1000, 1000),
    st.integers(INT_MIN, INT_MAX),
    st.sampled_from([INT_MIN, INT_MAX, INT_MIN + 1, INT_MAX - 1, 0, -1]),
)


def python_values(s: Schema, small: bool = False) -> st.SearchStrategy[Any]:
    """Python values of a schema whose records have classes; ``small`` keeps ints near zero."""
    match s:
        case IntSchema():
            return st.integers(-100, 100) if small else python_ints
        case BoolSchema():
            return st.booleans()
        case NoneSchema():
            return st.none()
        case TupleSchema(items):
            return st.tuples(*(python_values(i, small) for i in items))
        case RecordSchema(fields=fields, cls=cls):
            assert cls is not None
            kwargs = {f.name: python_values(f.schema, small) for f in fields}
            return st.builds(cls, **kwargs)
        case UnionSchema(alternatives):
            return st.one_of(*(python_values(a, small) for a in alternatives))
    raise AssertionError(s)


# --- Python types in the DSL subset ---------------------------------------------------------------

_RECORD_NAMES = ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta"]
_FIELD_NAMES = ["a", "b", "c", "amount", "since"]


@st.composite
def record_classes(draw: st.DrawFn, depth: int, name: str | None = None) -> type:
    """A frozen dataclass with zero to three fields of subset types."""
    name = name if name is not None else draw(st.sampled_from(_RECORD_NAMES))
    fields = draw(st.lists(st.sampled_from(_FIELD_NAMES), max_size=3, unique=True))
    spec = [(f, draw(python_types(depth - 1))) for f in fields]
    return dataclasses.make_dataclass(name, spec, frozen=True)


@st.composite
def python_types(draw: st.DrawFn, depth: int = 3) -> Any:
    """A type object in the DSL subset: int, bool, None, tuples, records and unions."""
    leaves = [int, bool, type(None)]
    if depth <= 0:
        return draw(st.sampled_from(leaves))
    kind = draw(st.sampled_from(["leaf", "tuple", "record", "union"]))
    if kind == "leaf":
        return draw(st.sampled_from(leaves))
    if kind == "tuple":
        items = draw(st.lists(python_types(depth - 1), min_size=2, max_size=3))
        return tuple.__class_getitem__(tuple(items))
    if kind == "record":
        return draw(record_classes(depth))
    names = draw(st.lists(st.sampled_from(_RECORD_NAMES), min_size=0, max_size=3, unique=True))
    alternatives: list[Any] = [draw(record_classes(depth, name)) for name in names]
    if draw(st.booleans()):
        alternatives.append(type(None))
    if draw(st.booleans()):
        alternatives.append(draw(st.sampled_from([int, bool])))
    if draw(st.booleans()):
        items = draw(st.lists(python_types(depth - 1), min_size=2, max_size=3))
        alternatives.append(tuple.__class_getitem__(tuple(items)))
    if len(alternatives) < 2:
        alternatives = [int, type(None)]
    order = draw(st.permutations(alternatives))
    return functools.reduce(operator.or_, order)


# --- format 2: types, values and well-typed terms with Str, List and Map ---------------------
#
# ``data_terms(dom, cod)`` is goal-directed: it builds a term of exactly ``dom -> cod``, so that
# every primitive of format 2 can be reached with arguments of the right types (an undirected
# generator almost never lines up a ``List A x (Int x A)``). Subterms come from projections of
# the domain, constants, primitives, matches, cases, compositions, folds (whose bodies sometimes
# stop early with ``inr``) and guarded or unguarded ``fail``.

#: Map keys: no list or map inside.
key_leaf_types = st.sampled_from([INT, STR, BOOL, UNIT])


_KEY_TYPES = [INT, STR, BOOL, UNIT, Prod(INT, STR), Sum(UNIT, INT), Prod(STR, Sum(INT, BOOL))]


@functools.cache
def key_types(max_leaves: int = 2) -> st.SearchStrategy[Type]:
    """Types without lists and maps: leaves, pairs and sums of them."""
    if max_leaves <= 2:
        return st.sampled_from(_KEY_TYPES)  # no retries of a recursive draw
    return st.recursive(
        key_leaf_types,
        lambda inner: st.builds(Prod, inner, inner) | st.builds(Sum, inner, inner),
        max_leaves=max_leaves,
    )


@functools.cache
def data_types(max_leaves: int = 5) -> st.SearchStrategy[Type]:
    """Types of format 2: Unit, Int, Bool, Str, products, sums, lists and maps."""
    return st.recursive(
        st.sampled_from([UNIT, INT, BOOL, STR]),
        lambda inner: st.one_of(
            st.builds(Prod, inner, inner),
            st.builds(Sum, inner, inner),
            st.builds(ListT, inner),
            st.builds(MapT, key_types(), inner),
        ),
        max_leaves=max_leaves,
    )


#: Ints for collection terms: mostly small, so that indices hit and ranges stay short; sometimes
#: at the edges, so that overflow and huge ranges (out of fuel) happen too.
data_ints = st.one_of(
    st.integers(-3, 6),
    st.integers(-3, 6),
    st.integers(-3, 6),
    st.sampled_from([INT_MIN, INT_MAX, 2**62, -1, 0, 64]),
    st.integers(INT_MIN, INT_MAX),
)

#: Text: short and often repeated (so that equality, membership and keys collide), non-ASCII,
#: and longer than one cost chunk (prims.TEXT_CHUNK, 16 code points).
texts = st.one_of(
    st.sampled_from(["", "a", "b", "ab", "ba", "h\u00e9", "\u65e5\u672c", "a\x00b", "\U0001f642"]),
    st.sampled_from([" a  b ", "\u3000x\ty\n", "a,b,,a", ",", "abab", " ", "\x1c\x85\u2028"]),
    st.text(max_size=5),
    st.sampled_from(["x" * 64, "y" * 70, "\u00e9" * 130]),
    st.text(min_size=60, max_size=140),
)


@st.composite
def _maps(draw: st.DrawFn, key: Type, value: Type, max_size: int) -> OMap:
    """A map built by a sequence of inserts and deletes, so that its slots have holes and its
    order is not the order of first insertion alone."""
    ops = draw(
        st.lists(
            st.tuples(st.booleans(), data_values(key, max_size), data_values(value, max_size)),
            max_size=2 * max_size,
        )
    )
    m = EMPTY_MAP
    for keep, k, v in ops:
        m = m.set(k, v) if keep or len(m) >= max_size else m.delete(k)
    return m


@functools.cache
def data_values(t: Type, max_size: int = 4) -> st.SearchStrategy[Value]:
    """Values of a type of format 2 (lists and maps of at most ``max_size`` entries)."""
    match t:
        case UnitT():
            return st.just(())
        case IntT():
            return data_ints
        case StrT():
            return texts
        case Prod(left, right):
            return st.tuples(data_values(left, max_size), data_values(right, max_size))
        case Sum(left, right):
            return st.one_of(
                data_values(left, max_size).map(lambda v: (0, v)),
                data_values(right, max_size).map(lambda v: (1, v)),
            )
        case ListT(elem):
            return st.lists(data_values(elem, max_size), max_size=max_size).map(make_list)
        case MapT(key, value):
            return _maps(key, value, max_size)
    raise AssertionError(t)


def components(t: Type) -> list[Type]:
    """Every type in ``t``'s tree, each once, outermost first."""
    seen: dict[Type, None] = {}
    stack = [t]
    while stack:
        x = stack.pop()
        if x in seen:
            continue
        seen[x] = None
        if isinstance(x, ListT):
            stack.append(x.elem)
        elif isinstance(x, Prod | Sum | MapT):
            stack.extend((x.right, x.left))
    return list(seen)


def _paths_to(dom: Type, cod: Type, path: Term = ID) -> list[Term]:
    """Projections (fst/snd chains) from ``dom`` that reach a ``cod``."""
    found = [path] if dom is cod else []
    if isinstance(dom, Prod):
        found += _paths_to(dom.left, cod, Compose(path, FST))
        found += _paths_to(dom.right, cod, Compose(path, SND))
    return found


_small_types = st.sampled_from(
    [INT, INT, BOOL, STR, UNIT, ListT(INT), ListT(STR), Prod(INT, STR), Sum(UNIT, INT)]
)
_ARITH = [Op.ADD, Op.SUB, Op.MUL, Op.FLOORDIV, Op.MOD]
_INT_CMP = [Op.LT, Op.LE, Op.EQ, Op.NE, Op.GT, Op.GE]
_STR_CMP = [Op.STR_LT, Op.STR_LE, Op.STR_GT, Op.STR_GE, Op.STR_CONTAINS]
_ERRORS = ["ValueError", "KeyError", "Refused"]


def _aux(draw: st.DrawFn, dom: Type, ok: Callable[[Type], bool], fallback: Type) -> Type:
    """A type satisfying ``ok``: one found in ``dom`` (so that paths reach it) or ``fallback``."""
    found = [t for t in components(dom) if ok(t)]
    local = draw(st.integers(0, 2)) > 0
    if found and local:
        return draw(st.sampled_from(found))
    return fallback


def _any_type(draw: st.DrawFn, dom: Type) -> Type:
    return _aux(draw, dom, lambda t: t.depth <= 3, draw(_small_types))


def _key_type(draw: st.DrawFn, dom: Type) -> Type:
    return _aux(draw, dom, lambda t: is_key_type(t) and t.depth <= 2, draw(key_types()))


def _list_type(draw: st.DrawFn, dom: Type) -> ListT:
    maps = [m for m in components(dom) if isinstance(m, MapT)]
    if maps and not draw(st.integers(0, 2)):  # what a map's keys, values or items give
        m = draw(st.sampled_from(maps))
        return ListT(draw(st.sampled_from([m.key, m.value, Prod(m.key, m.value)])))
    t = _aux(draw, dom, lambda t: isinstance(t, ListT), ListT(draw(_small_types)))
    assert isinstance(t, ListT)
    return t


def _map_type(draw: st.DrawFn, dom: Type, value: Type | None = None) -> MapT:
    fallback = MapT(_key_type(draw, dom), value if value is not None else draw(_small_types))
    t = _aux(draw, dom, lambda t: isinstance(t, MapT) and value in (None, t.value), fallback)
    assert isinstance(t, MapT)
    return t


def _prim_kinds(cod: Type) -> list[str]:
    kinds = ["list_index", "map_index"]  # any type can be an element or a map's value
    kinds += ["get_or"] * 2  # map_get then a default: a lookup that cannot trap
    if cod is INT:
        kinds += ["arith", "arith", "neg", "str_len", "list_len", "map_len", "str_find"]
    elif cod is BOOL:
        kinds += ["int_cmp", "equal", "equal", "str_cmp", "list_contains", "map_contains"]
        kinds += ["not", "logic"]
    elif cod is STR:
        kinds += ["str_concat", "str_concat", "str_join", "str_slice", "str_index", "int_to_str"]
    elif isinstance(cod, ListT):
        kinds += ["append", "append", "concat", "slice", "list_set", "values"]
        if cod.elem in (INT, STR):
            kinds.append("sort")
        if cod.elem is INT:
            kinds.append("range")
        if cod.elem is STR:
            kinds.append("str_split")
        if is_key_type(cod.elem):
            kinds.append("keys")
        if isinstance(cod.elem, Prod) and is_key_type(cod.elem.left):
            kinds.append("items")
    elif isinstance(cod, MapT):
        kinds += ["insert", "insert", "delete", "merge"]
    elif isinstance(cod, Sum) and cod.left is UNIT:
        kinds += ["map_get", "map_get"]
    return kinds


def _prim(draw: st.DrawFn, dom: Type, cod: Type, depth: int) -> Term:
    kind = draw(st.sampled_from(_prim_kinds(cod)))

    def on(arg: Type, op: Op) -> Term:
        return Compose(_data_term(draw, dom, arg, depth - 1), Prim(op))

    match kind:
        case "list_index":
            if draw(st.integers(0, 3)):  # mostly in range: xs.append(y)[i], i near the ends
                xs = _data_term(draw, dom, ListT(cod), depth - 1)
                y = _data_term(draw, dom, cod, depth - 1)
                appended = compose(Fanout(xs, y), Prim(Op.LIST_APPEND))
                at = Lit(draw(st.sampled_from([0, -1, -1, 1])))
                return compose(Fanout(appended, at), Prim(Op.LIST_INDEX))
            return on(Prod(ListT(cod), INT), Op.LIST_INDEX)
        case "map_index":
            m = _map_type(draw, dom, cod)
            if draw(st.integers(0, 3)):  # mostly a key that is there: d[k] after d[k] = v
                k = _data_term(draw, dom, m.key, depth - 1)
                entry = Fanout(k, _data_term(draw, dom, cod, -1))
                d = _data_term(draw, dom, m, depth - 1)
                inserted = compose(Fanout(d, entry), Prim(Op.MAP_INSERT))
                return compose(Fanout(inserted, k), Prim(Op.MAP_INDEX))
            return on(Prod(m, m.key), Op.MAP_INDEX)
        case "get_or":  # d.get(k, default): [default | snd] after map_get
            m = _map_type(draw, dom, cod)
            lookup = Fanout(ID, on(Prod(m, m.key), Op.MAP_GET))
            default = Compose(FST, _data_term(draw, dom, cod, depth - 1))
            return compose(lookup, DISTL, Case(default, SND))
        case "arith":
            return on(Prod(INT, INT), draw(st.sampled_from(_ARITH)))
        case "neg":
            return on(INT, Op.NEG)
        case "str_len":
            return on(STR, Op.STR_LEN)
        case "list_len":
            return on(_list_type(draw, dom), Op.LIST_LEN)
        case "map_len":
            return on(_map_type(draw, dom), Op.MAP_LEN)
        case "int_cmp":
            return on(Prod(INT, INT), draw(st.sampled_from(_INT_CMP)))
        case "equal":
            a = _any_type(draw, dom)
            return on(Prod(a, a), draw(st.sampled_from([Op.EQUAL, Op.NOT_EQUAL])))
        case "str_cmp":
            return on(Prod(STR, STR), draw(st.sampled_from(_STR_CMP)))
        case "list_contains":
            list_t = _list_type(draw, dom)
            return on(Prod(list_t, list_t.elem), Op.LIST_CONTAINS)
        case "map_contains":
            m = _map_type(draw, dom)
            return on(Prod(m, m.key), Op.MAP_CONTAINS)
        case "not":
            return on(BOOL, Op.NOT)
        case "logic":
            return on(Prod(BOOL, BOOL), draw(st.sampled_from([Op.AND, Op.OR])))
        case "str_concat":
            return on(Prod(STR, STR), Op.STR_CONCAT)
        case "str_join":
            return on(Prod(STR, ListT(STR)), Op.STR_JOIN)
        case "str_find":
            return on(Prod(STR, STR), Op.STR_FIND)
        case "str_split":
            return on(Prod(STR, STR), Op.STR_SPLIT)
        case "str_slice":
            return on(Prod(STR, Prod(INT, INT)), Op.STR_SLICE)
        case "str_index":
            return on(Prod(STR, INT), Op.STR_INDEX)
        case "int_to_str":
            return on(INT, Op.INT_TO_STR)
        case "append":
            assert isinstance(cod, ListT)
            return on(Prod(cod, cod.elem), Op.LIST_APPEND)
        case "concat":
            return on(Prod(cod, cod), Op.LIST_CONCAT)
        case "slice":
            return on(Prod(cod, Prod(INT, INT)), Op.LIST_SLICE)
        case "list_set":
            assert isinstance(cod, ListT)
            if draw(st.booleans()):  # xs.append(y)[i] = x, with i mostly in range
                xs = _data_term(draw, dom, cod, depth - 1)
                appended = compose(
                    Fanout(xs, _data_term(draw, dom, cod.elem, -1)), Prim(Op.LIST_APPEND)
                )
                at = Lit(draw(st.sampled_from([0, -1, 1])))
                x = _data_term(draw, dom, cod.elem, depth - 1)
                return compose(Fanout(appended, Fanout(at, x)), Prim(Op.LIST_SET))
            return on(Prod(cod, Prod(INT, cod.elem)), Op.LIST_SET)
        case "sort":
            return on(cod, Op.LIST_SORT)
        case "range":
            return on(Prod(INT, INT), Op.RANGE)
        case "keys":
            assert isinstance(cod, ListT)
            return on(MapT(cod.elem, draw(_small_types)), Op.MAP_KEYS)
        case "values":
            assert isinstance(cod, ListT)
            return on(MapT(_key_type(draw, dom), cod.elem), Op.MAP_VALUES)
        case "items":
            assert isinstance(cod, ListT) and isinstance(cod.elem, Prod)
            return on(MapT(cod.elem.left, cod.elem.right), Op.MAP_ITEMS)
        case "insert":
            assert isinstance(cod, MapT)
            return on(Prod(cod, Prod(cod.key, cod.value)), Op.MAP_INSERT)
        case "delete":
            assert isinstance(cod, MapT)
            return on(Prod(cod, cod.key), Op.MAP_DELETE)
        case "merge":
            return on(Prod(cod, cod), Op.MAP_MERGE)
        case "map_get":
            assert isinstance(cod, Sum)
            m = _map_type(draw, dom, cod.right)
            return on(Prod(m, m.key), Op.MAP_GET)
    raise AssertionError(kind)


def _fail(draw: st.DrawFn, dom: Type, cod: Type, depth: int) -> Term:
    """``<"Name", message> ; fail[cod]``."""
    message = _data_term(draw, dom, STR, depth - 1)
    return Compose(Fanout(StrLit(draw(st.sampled_from(_ERRORS))), message), Fail(cod))


def _match(draw: st.DrawFn, dom: Type, cod: Type, depth: int) -> Term:
    """``<id, s> ; distl ; [f | g]``, ``s`` a Bool or another sum (a ``map_get`` result...)."""
    scrutinee_type = _aux(draw, dom, lambda t: isinstance(t, Sum), BOOL)
    if draw(st.booleans()):
        scrutinee_type = BOOL
    assert isinstance(scrutinee_type, Sum)
    scrutinee = _data_term(draw, dom, scrutinee_type, depth - 1)
    left = _data_term(draw, Prod(dom, scrutinee_type.left), cod, depth - 1)
    right = _data_term(draw, Prod(dom, scrutinee_type.right), cod, depth - 1)
    return Compose(Fanout(ID, scrutinee), Compose(DISTL, Case(left, right)))


def _fold(draw: st.DrawFn, dom: Type, cod: Type, depth: int) -> Term:
    """``<id, <xs, s0>> ; fold(body) ; [on_done | on_stop]``: the body sees ``dom x (A x S)``
    and gives ``S + R``, stopping early when it chooses ``inr``."""
    xs = _list_type(draw, dom)
    acc = cod if draw(st.booleans()) else _any_type(draw, dom)
    stop = cod if draw(st.booleans()) else _any_type(draw, dom)
    items = _data_term(draw, dom, xs, depth - 1)
    start = _data_term(draw, dom, acc, depth - 1)
    body_dom = Prod(dom, Prod(xs.elem, acc))
    body = _data_term(draw, body_dom, Sum(acc, stop), depth - 1)
    done = ID if acc is cod else _data_term(draw, acc, cod, depth - 1)
    stopped = ID if stop is cod else _data_term(draw, stop, cod, depth - 1)
    return compose(Fanout(ID, Fanout(items, start)), Fold(body), Case(done, stopped))


def _data_term(draw: st.DrawFn, dom: Type, cod: Type, depth: int) -> Term:
    paths = _paths_to(dom, cod)
    kinds = ["constant"] + ["path"] * (3 if paths else 0)
    special = cod in (INT, BOOL, STR) or isinstance(cod, ListT | MapT)
    if depth == 0:  # a last primitive, on constants and projections
        kinds += ["prim"] * (2 if special else 0) + ["fanout"] * isinstance(cod, Prod)
    if depth > 0:
        kinds += ["prim"] * (6 if special else 1) + ["match"] * 2 + ["compose", "fold", "fold"]
        if not draw(st.integers(0, 3)):  # rarely: each fail traps whenever it is reached
            kinds.append("fail")
        if isinstance(dom, Sum):
            kinds += ["case", "case"]
        if isinstance(cod, Prod):
            kinds += ["fanout"] * 6
        if isinstance(cod, Sum):
            kinds += ["inject"] * 4
    kind = draw(st.sampled_from(kinds))
    sub = depth - 1
    term: Term
    match kind:
        case "constant":
            term = constant(draw(data_values(cod, 2)), cod)
        case "path":
            term = draw(st.sampled_from(paths))
        case "prim":
            term = _prim(draw, dom, cod, depth)
        case "match":
            term = _match(draw, dom, cod, depth)
        case "compose":
            middle = _any_type(draw, dom)
            term = Compose(_data_term(draw, dom, middle, sub), _data_term(draw, middle, cod, sub))
        case "fold":
            term = _fold(draw, dom, cod, depth)
        case "fail":
            term = _fail(draw, dom, cod, depth)
        case "case":
            assert isinstance(dom, Sum)
            term = Case(_data_term(draw, dom.left, cod, sub), _data_term(draw, dom.right, cod, sub))
        case "fanout":
            assert isinstance(cod, Prod)
            left = _data_term(draw, dom, cod.left, sub)
            term = Fanout(left, _data_term(draw, dom, cod.right, sub))
        case "inject":
            assert isinstance(cod, Sum)
            if draw(st.booleans()):
                term = Compose(_data_term(draw, dom, cod.left, sub), Inl(cod.right))
            else:
                term = Compose(_data_term(draw, dom, cod.right, sub), Inr(cod.left))
        case _:
            raise AssertionError(kind)
    return term


@st.composite
def data_terms(draw: st.DrawFn, dom: Type, cod: Type, depth: int = 3) -> Term:
    """A term ``dom -> cod`` over the types and primitives of format 2."""
    term = _data_term(draw, dom, cod, depth)
    assert infer(term, dom) is cod, (term, dom, cod)
    return term


@st.composite
def typed_data_terms(draw: st.DrawFn, depth: int = 3) -> tuple[Term, Type, Type, Value]:
    """``(term, dom, cod, value)`` with ``term : dom -> cod`` and ``value : dom``, over the
    types and primitives of format 2."""
    dom = draw(data_types(4))
    cod = draw(st.one_of(data_types(3), st.sampled_from(components(dom))))
    term = draw(data_terms(dom, cod, depth))
    return term, dom, cod, draw(data_values(dom))


def exact(v: Value) -> object:
    """``v`` as plain tuples, maps with their order: two values are the same value, order of
    their maps included, exactly when their ``exact`` forms are equal (``==`` on maps ignores
    order, as ``dict``'s does)."""
    if isinstance(v, OMap):
        return ("map", tuple((exact(k), exact(x)) for k, x in v.items()))
    if isinstance(v, PVector):
        return ("list", tuple(exact(x) for x in v))
    if isinstance(v, tuple):
        return tuple(exact(x) for x in v)
    return v


# --- mutated sources ------------------------------------------------------------------------


def source_tokens(text: str, kinds: tuple[int, ...]) -> list[str]:
    """The tokens of ``text`` of the given ``tokenize`` kinds, as strings."""
    return [
        t.string for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type in kinds
    ]


@st.composite
def mutated_sources(
    draw: st.DrawFn, sources: dict[str, str], kinds: tuple[int, ...], replace_weight: int = 1
) -> str:
    """One of ``sources`` with one to three small edits: a line dropped or duplicated, or one
    word, operator or literal (a token of ``kinds``) replaced by another from the same source;
    ``replace_weight`` makes replacements that many times as likely as each other edit."""
    text = sources[draw(st.sampled_from(sorted(sources)))]
    words = sorted(set(source_tokens(text, kinds)))
    edits = ["drop", "duplicate", *["replace"] * replace_weight]
    for _ in range(draw(st.integers(1, 3))):
        lines = text.splitlines(keepends=True)
        kind = draw(st.sampled_from(edits))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "drop":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        else:
            found = list(re.finditer(r"\w+|[^\w\s]+", lines[i]))
            if found:
                m = draw(st.sampled_from(found))
                word = draw(st.sampled_from(words))
                lines[i] = lines[i][: m.start()] + word + lines[i][m.end() :]
        text = "".join(lines)
    return text
