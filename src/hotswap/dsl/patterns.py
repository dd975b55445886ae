"""Patterns of ``match`` statements, read against the subject's schema.

Each ``case`` pattern becomes one or more (``|`` expands) rows of a small pattern language, which
:mod:`hotswap.dsl.matching` compiles to a decision tree::

    Wild            _ or a capture: matches anything
    Con(i, p)       alternative i of a union (or False=0 / True=1 of a bool), payload matching p
    Prod(p, q, ...) every field of a record or item of a tuple (cannot fail by itself)
    IntLit(n)       an int equal to n (or a str equal to the text n: ``case "start":``)

Every node may carry capture names, bound to the value the node matches. ``case Deposit() as d``
on a union binds ``d`` to the Deposit payload, not the union: the capture is narrowed.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

from hotswap.dsl.annotations import MISSING
from hotswap.dsl.env import Narrowed, Ref, SlotRef, TupleRef, UnitRef
from hotswap.dsl.functions import DslFunction
from hotswap.lang.ints import in_range
from hotswap.names.display import int_literal
from hotswap.names.schema import (
    NONE_SCHEMA,
    BoolSchema,
    DictSchema,
    IntSchema,
    ListSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    StrSchema,
    TupleSchema,
    UnionSchema,
    describe,
)


@dataclass(frozen=True, slots=True)
class Wild:
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Con:
    index: int
    payload: Pat
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Prod:
    items: tuple[Pat, ...]
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IntLit:
    value: int | str
    names: tuple[str, ...] = ()


Pat = Wild | Con | Prod | IntLit
Fits = Callable[[Schema], bool]


def alternatives(schema: Schema) -> list[Schema] | None:
    """The payload schemas of a sum-like schema (a union, or bool: False, True), else None."""
    if isinstance(schema, UnionSchema):
        return list(schema.alternatives)
    if isinstance(schema, BoolSchema):
        return [NONE_SCHEMA, NONE_SCHEMA]
    return None


class PatternReader:
    """Reads the AST patterns of one function."""

    def __init__(self, function: DslFunction) -> None:
        self.function = function

    def read(self, node: ast.pattern, schema: Schema) -> list[Pat]:
        """The rows ``node`` stands for against ``schema`` (several when it contains ``|``)."""
        match node:
            case ast.MatchAs(pattern=None, name=name):
                return [Wild(_names(name))]
            case ast.MatchAs(pattern=inner, name=name) if inner is not None:
                narrow = isinstance(schema, UnionSchema)
                return [_capture(p, _names(name), narrow) for p in self.read(inner, schema)]
            case ast.MatchOr(patterns):
                return [row for p in patterns for row in self.read(p, schema)]
            case ast.MatchClass():
                return self._class(node, schema)
            case ast.MatchValue(value):
                return [self._value(value, schema, node)]
            case ast.MatchSingleton(value):
                return [self._singleton(value, schema, node)]
            case ast.MatchSequence(patterns):
                return self._sequence(patterns, schema, node)
            case ast.MatchMapping():
                raise self._error(node, "mapping patterns are not supported")
            case _:
                raise self._error(node, f"{type(node).__name__} patterns are not supported")

    def _error(self, node: ast.AST, message: str) -> Exception:
        return self.function.error(node, message)

    def _in(self, schema: Schema, fits: Fits, node: ast.pattern, what: str) -> int | None:
        """Where the pattern's target sits: None if ``schema`` is it, else its union index."""
        if fits(schema):
            return None
        if isinstance(schema, UnionSchema):
            for index, alt in enumerate(schema.alternatives):
                if fits(alt):
                    return index
            msg = f"{what} cannot match {describe(schema)}: it is not one of its cases"
            raise self._error(node, msg)
        raise self._error(node, f"{what} cannot match a value of type {describe(schema)}")

    def _class(self, node: ast.MatchClass, schema: Schema) -> list[Pat]:
        cls = _static(self.function, node.cls)
        kinds: dict[object, type] = {
            int: IntSchema,
            bool: BoolSchema,
            str: StrSchema,
            list: ListSchema,
            dict: DictSchema,
        }
        if cls in kinds:
            kind = kinds[cls]
            assert isinstance(cls, type)
            index = self._in(schema, lambda s: isinstance(s, kind), node, f"{cls.__name__}()")
            if node.kwd_patterns or len(node.patterns) > 1:
                raise self._error(node, f"{cls.__name__}() takes at most one sub-pattern")
            target = schema if index is None else _alt(schema, index)
            inner = self.read(node.patterns[0], target) if node.patterns else [Wild()]
            return [_wrap(index, p) for p in inner]
        if not (isinstance(cls, type) and _is_dataclass(cls)):
            shown = ast.unparse(node.cls)
            msg = f"{shown} in a class pattern must be a record, int, bool, str, list or dict"
            raise self._error(node.cls, msg)
        index = self._in(schema, _record_of(cls), node, f"{cls.__name__}()")
        record = schema if index is None else _alt(schema, index)
        assert isinstance(record, RecordSchema)
        names = list(record.field_names())
        match_args = list(getattr(cls, "__match_args__", ()))
        if not set(match_args) <= set(names):
            msg = f"{record.name}.__match_args__ names something that is not a field"
            raise self._error(node, msg)
        if len(node.patterns) > len(match_args):
            msg = f"{record.name}() accepts {len(match_args)} positional sub-patterns"
            raise self._error(node, msg)
        subs: dict[str, ast.pattern] = dict(zip(match_args, node.patterns, strict=False))
        for attr, sub in zip(node.kwd_attrs, node.kwd_patterns, strict=True):
            if attr not in names:
                raise self._error(sub, f"{record.name} has no field {attr}")
            if attr in subs:
                raise self._error(sub, f"field {attr} is matched twice")
            subs[attr] = sub
        columns = [
            self.read(subs[f.name], f.schema) if f.name in subs else [Wild()] for f in record.fields
        ]
        rows = [Prod(tuple(items)) for items in itertools.product(*columns)]
        return [_wrap(index, p) for p in rows]

    def _value(self, value: ast.expr, schema: Schema, node: ast.pattern) -> Pat:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            text = value.value
            index = self._in(schema, _kind(StrSchema), node, f"the literal {text!r}")
            return _wrap(index, IntLit(text))
        literal = int_literal(value)
        if literal is None:
            raise self._error(node, "only int and str literals can be value patterns")
        if not in_range(literal):
            raise self._error(node, f"integer {literal} is outside the signed 64-bit range")
        index = self._in(schema, _kind(IntSchema), node, f"the literal {literal}")
        return _wrap(index, IntLit(literal))

    def _singleton(self, value: object, schema: Schema, node: ast.pattern) -> Pat:
        if value is None:
            return _wrap(self._in(schema, _kind(NoneSchema), node, "None"), Wild())
        index = self._in(schema, _kind(BoolSchema), node, repr(value))
        return _wrap(index, Con(1 if value else 0, Wild()))

    def _sequence(
        self, patterns: list[ast.pattern], schema: Schema, node: ast.pattern
    ) -> list[Pat]:
        if any(isinstance(p, ast.MatchStar) for p in patterns):
            raise self._error(node, "*patterns are not supported")
        what = f"a sequence pattern of {len(patterns)} items"
        index = self._in(schema, _kind(TupleSchema), node, what)
        target = schema if index is None else _alt(schema, index)
        assert isinstance(target, TupleSchema)
        if len(target.items) != len(patterns):
            n = len(target.items)
            msg = f"this pattern has {len(patterns)} items but {describe(target)} has {n}"
            raise self._error(node, msg)
        columns = [self.read(p, s) for p, s in zip(patterns, target.items, strict=True)]
        return [_wrap(index, Prod(tuple(items))) for items in itertools.product(*columns)]


def pattern_schema(ref: Ref) -> Schema:
    """The schema the patterns of a ``match`` on ``ref`` are read against: a variable narrowed by
    an enclosing match (or by a case copied into several arms) still has its whole union."""
    match ref:
        case TupleRef(items):
            return TupleSchema(tuple(pattern_schema(item) for item in items))
        case SlotRef(narrowed=Narrowed(union=union)) | UnitRef(narrowed=Narrowed(union=union)):
            return union
        case _:
            return ref.schema


def specialize(pat: Pat, ref: Ref) -> Pat | None:
    """A pattern read against :func:`pattern_schema` as a pattern on ``ref`` itself; None when it
    names another alternative than the one ``ref`` was narrowed to (it can never match here)."""
    match ref:
        case TupleRef(items) if isinstance(pat, Prod):
            parts = [specialize(p, r) for p, r in zip(pat.items, items, strict=True)]
            kept = [p for p in parts if p is not None]
            return replace(pat, items=tuple(kept)) if len(kept) == len(parts) else None
        case SlotRef(narrowed=Narrowed(index=index)) | UnitRef(narrowed=Narrowed(index=index)):
            if not isinstance(pat, Con):
                return pat
            if pat.index != index:
                return None
            return replace(pat.payload, names=pat.payload.names + pat.names)
        case _:
            return pat


def _kind(kind: type) -> Fits:
    return lambda s: isinstance(s, kind)


def _record_of(cls: type) -> Fits:
    def fits(s: Schema) -> bool:
        return isinstance(s, RecordSchema) and s.name == cls.__name__ and s.cls in (None, cls)

    return fits


def _is_dataclass(cls: type) -> bool:
    return hasattr(cls, "__dataclass_fields__")


def _alt(schema: Schema, index: int) -> Schema:
    assert isinstance(schema, UnionSchema)
    return schema.alternatives[index]


def _wrap(index: int | None, pat: Pat) -> Pat:
    return pat if index is None else Con(index, pat)


def _names(name: str | None) -> tuple[str, ...]:
    return (name,) if name is not None else ()


def _capture(pat: Pat, names: tuple[str, ...], narrow: bool) -> Pat:
    """Attach capture names; on a union alternative they go to the (narrower) payload."""
    if narrow and isinstance(pat, Con):
        return replace(pat, payload=_capture(pat.payload, names, narrow=False))
    return replace(pat, names=pat.names + names)


def _static(function: DslFunction, node: ast.expr) -> object:
    match node:
        case ast.Name(id=name) if name not in function.local_names:  # a local is no class here
            return function.lookup(name)
        case ast.Attribute(value=base, attr=attr):
            owner = _static(function, base)
            return getattr(owner, attr, MISSING) if owner is not MISSING else MISSING
        case _:
            return MISSING
