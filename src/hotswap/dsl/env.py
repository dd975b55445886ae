"""The compile-time environment: where each variable lives in the run-time context value.

The context a term runs in is a left-nested chain of pairs ``((base, s1), s2)``: slot 0 is the
function's arguments (one argument, or a right-nested tuple of them), and every binding pushes a
slot with ``<id, e>``. A variable is a *reference*: a slot and a projection path into it, so
reading it is ``fst^k ; snd ; path``. Values are immutable, so an alias (``y = x``, a field, a
tuple component) is just another reference and pushes nothing.

The chain's type grows one level per push, and the bytecode bounds type height; when it gets
high, :meth:`Env.compact` rebuilds the context as a balanced tuple of the live variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import assert_never

from hotswap.errors import InternalError
from hotswap.lang.terms import FST, ID, SND, TERMINAL, Compose, Fanout, Term
from hotswap.lang.types import Type, type_depth
from hotswap.names.schema import (
    RecordSchema,
    Schema,
    TupleSchema,
    UnionSchema,
    components,
    core_type,
    is_unit,
    product_type,
)


@dataclass(frozen=True, slots=True)
class Narrowed:
    """The place holds the payload of alternative ``index`` of ``union``: a ``match`` chose it.

    Patterns on a narrowed place are still read against the whole union, as Python allows a case
    to name any alternative (those of other alternatives just never match there)."""

    union: UnionSchema
    index: int


@dataclass(frozen=True, slots=True)
class SlotRef:
    """Slot ``slot`` of the context, then the projections ``path``."""

    slot: int
    path: tuple[Term, ...]
    schema: Schema
    narrowed: Narrowed | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class UnitRef:
    """A value whose core type is Unit: read with ``!`` from anywhere."""

    schema: Schema
    narrowed: Narrowed | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TupleRef:
    """A tuple that is never built as a whole until read: ``match a, b:`` over two variables."""

    items: tuple[Ref, ...]
    schema: TupleSchema


Ref = SlotRef | UnitRef | TupleRef


def seq(*terms: Term) -> Term:
    """Left-to-right composition that drops identities."""
    kept = [t for t in terms if t != ID]
    if not kept:
        return ID
    result = kept[-1]
    for t in reversed(kept[:-1]):
        result = Compose(t, result)
    return result


def component_path(index: int, count: int) -> tuple[Term, ...]:
    """Projections to item ``index`` of a right-nested product of ``count`` items."""
    if count == 1:
        return ()
    if index == count - 1:
        return (SND,) * index
    return (*(SND,) * index, FST)


def build_product(terms: list[Term]) -> Term:
    """``!`` for no terms, the term itself for one, right-nested fan-outs for more."""
    if not terms:
        return TERMINAL
    result = terms[-1]
    for t in reversed(terms[:-1]):
        result = Fanout(t, result)
    return result


def component(ref: Ref, index: int) -> Ref:
    """Item ``index`` of a tuple or field ``index`` of a record reference."""
    schema = ref.schema
    assert isinstance(schema, TupleSchema | RecordSchema)
    items = components(schema)
    item = items[index]
    match ref:
        case TupleRef(refs):
            return refs[index]
        case UnitRef():
            return UnitRef(item)
        case SlotRef(slot, path):
            if is_unit(item):
                return UnitRef(item)
            return SlotRef(slot, path + component_path(index, len(items)), item)
        case _:
            assert_never(ref)


def narrowed_to(ref: Ref, union: UnionSchema, index: int) -> Ref:
    """``ref``, known to hold the payload of alternative ``index`` of ``union``."""
    if isinstance(ref, SlotRef | UnitRef):
        return replace(ref, narrowed=Narrowed(union, index))
    return ref


@dataclass(frozen=True, slots=True, eq=False)
class Env:
    """Variables in scope at one point of a function, and the shape of the context.

    ``depth`` is the number of slots pushed on the arguments and ``height`` the height of the
    context's core type, which the bytecode bounds (``MAX_TYPE_DEPTH``): :meth:`compact`
    rebuilds a deep context as a balanced tuple of the values in scope. ``declared`` holds the
    function's declared locals (assignments are checked against them); ``unbound`` says why a
    local name that is not in ``vars`` cannot be used here.
    """

    depth: int = 0
    height: int = 0
    vars: dict[str, Ref] = field(default_factory=dict)
    declared: dict[str, Schema] = field(default_factory=dict)
    unbound: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def for_params(params: list[tuple[str, Schema]], declared: dict[str, Schema]) -> Env:
        """The environment of a function body: slot 0 holds the arguments."""
        refs: dict[str, Ref] = {}
        for i, (name, schema) in enumerate(params):
            path = component_path(i, len(params))
            refs[name] = UnitRef(schema) if is_unit(schema) else SlotRef(0, path, schema)
        height = type_depth(product_type([core_type(s) for _, s in params]))
        return Env(0, height, refs, declared, {})

    def read(self, ref: Ref) -> Term:
        """The term reading ``ref`` from the context."""
        match ref:
            case UnitRef():
                return TERMINAL
            case TupleRef(items):
                return build_product([self.read(i) for i in items])
            case SlotRef(slot, path):
                if slot > self.depth:
                    raise InternalError(f"slot {slot} is not in a context of depth {self.depth}")
                hops = (FST,) * (self.depth - slot)
                return seq(*hops, *((SND,) if slot > 0 else ()), *path)
            case _:
                assert_never(ref)

    def push(self, schema: Schema) -> tuple[Env, Ref]:
        """The environment after ``<id, e>``, and a reference to the new slot."""
        height = 1 + max(self.height, type_depth(core_type(schema)))
        env = replace(self, depth=self.depth + 1, height=height)
        ref: Ref = UnitRef(schema) if is_unit(schema) else SlotRef(self.depth + 1, (), schema)
        return env, ref

    def bind(self, name: str, ref: Ref) -> Env:
        unbound = {k: v for k, v in self.unbound.items() if k != name}
        return replace(self, vars={**self.vars, name: ref}, unbound=unbound)

    def forget(self, names: dict[str, str]) -> Env:
        """Remove ``names`` from scope, recording why each is unavailable."""
        kept = {k: v for k, v in self.vars.items() if k not in names}
        return replace(self, vars=kept, unbound={**self.unbound, **names})

    def rebind_place(self, old: Ref, new: Ref) -> Env:
        """Narrowing: every variable that is exactly ``old`` now reads ``new``."""
        return replace(self, vars={k: (new if v == old else v) for k, v in self.vars.items()})

    def compact(self, live: set[str]) -> tuple[Term, Env] | None:
        """A term rebuilding the context as a balanced tuple of the values of the ``live``
        variables, and the environment over it; None when that would not make the context any
        shallower. Variables not live are dropped."""
        places: dict[tuple[int, tuple[Term, ...]], Schema] = {}
        kept = {name: ref for name, ref in self.vars.items() if name in live}
        for ref in kept.values():
            for slot_ref in _slot_refs(ref):
                places.setdefault((slot_ref.slot, slot_ref.path), slot_ref.schema)
        keys = list(places)
        types = [core_type(places[k]) for k in keys]
        height = _balanced_height(types)
        if height >= self.height:
            return None
        paths = _balanced_paths(len(keys))
        term = _balanced([self.read(SlotRef(k[0], k[1], places[k])) for k in keys])
        moved = {key: paths[i] for i, key in enumerate(keys)}

        def remap(ref: Ref) -> Ref:
            match ref:
                case SlotRef(slot, path):
                    return replace(ref, slot=0, path=moved[(slot, path)])
                case TupleRef(items, schema):
                    return TupleRef(tuple(remap(i) for i in items), schema)
                case UnitRef():
                    return ref
                case _:
                    assert_never(ref)

        vars = {name: remap(ref) for name, ref in kept.items()}
        return term, Env(0, height, vars, self.declared, self.unbound)


def overlaps(a: Ref, b: Ref) -> bool:
    """Whether the places of ``a`` and ``b`` share a value (one path extends the other)."""
    for x in _slot_refs(a):
        for y in _slot_refs(b):
            n = min(len(x.path), len(y.path))
            if x.slot == y.slot and x.path[:n] == y.path[:n]:
                return True
    return False


def _slot_refs(ref: Ref) -> list[SlotRef]:
    match ref:
        case SlotRef():
            return [ref]
        case TupleRef(items):
            return [s for item in items for s in _slot_refs(item)]
        case UnitRef():
            return []
        case _:
            assert_never(ref)


def _balanced(terms: list[Term]) -> Term:
    if not terms:
        return TERMINAL
    if len(terms) == 1:
        return terms[0]
    mid = len(terms) // 2
    return Fanout(_balanced(terms[:mid]), _balanced(terms[mid:]))


def _balanced_paths(n: int) -> list[tuple[Term, ...]]:
    if n <= 1:
        return [()] * n
    mid = n // 2
    left = [(FST, *p) for p in _balanced_paths(mid)]
    return left + [(SND, *p) for p in _balanced_paths(n - mid)]


def _balanced_height(types: list[Type]) -> int:
    if not types:
        return 0
    if len(types) == 1:
        return type_depth(types[0])
    mid = len(types) // 2
    return 1 + max(_balanced_height(types[:mid]), _balanced_height(types[mid:]))
