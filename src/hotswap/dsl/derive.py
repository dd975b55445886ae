"""Automatic state migrations, derived from the names of the old and new state types.

In the spirit of essence-of-live-coding's automatic migration: a value of the old state is
rebuilt as a value of the new one by matching names, and whatever is new gets a default.

    same schema                       identity
    record -> record                  fields matched by name; new fields get their default;
                                      a removed field is refused
    tuple -> tuple (same length)      item by item
    union -> union                    each old alternative to the new one of the same name
                                      (records) or kind (int, bool, None, tuple); an old
                                      alternative with no counterpart cannot be migrated
    X -> union containing X           injected into that alternative
    X -> tuple/record                 X becomes the first item/field, the rest get defaults:
                                      the seed's ``n -> (n, 0)``

Defaults: ``0``, ``False``, ``None``, and for records, tuples and unions the defaults of their
parts (a union's first alternative). Anything else, a removed record field included (a
derived migration never loses data), is refused with :class:`MigrationError` naming the place:
write that migration by hand with ``@migration``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import assert_never

from hotswap.cam.build import migration_module
from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.module import Module, encode_module
from hotswap.dsl.combinators import inject
from hotswap.dsl.env import build_product, component_path, seq
from hotswap.errors import HotswapError
from hotswap.lang.evaluate import Value
from hotswap.lang.terms import ID, Case, Term
from hotswap.lang.values import constant
from hotswap.names.schema import (
    BoolSchema,
    IntSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    TupleSchema,
    UnionSchema,
    components,
    core_type,
    describe,
    inject_value,
    kind_of,
    nest_values,
)
from hotswap.names.section import encode_names


class MigrationError(HotswapError):
    """No migration can be derived between two state types; the message says where."""


HINT = "; write this migration with @migration (or pass --migration)"


def default_value(s: Schema) -> Value:
    """The core value a new field or component of schema ``s`` starts with."""
    match s:
        case IntSchema():
            return 0
        case BoolSchema():
            return (0, ())
        case NoneSchema():
            return ()
        case TupleSchema() | RecordSchema():
            return nest_values([default_value(c) for c in components(s)])
        case UnionSchema(alternatives):
            return inject_value(0, len(alternatives), default_value(alternatives[0]))
        case _:
            assert_never(s)


def _default(s: Schema) -> Term:
    return constant(default_value(s), core_type(s))


def derive_term(old: Schema, new: Schema, where: str = "state") -> Term:
    """A term from ``core_type(old)`` to ``core_type(new)`` by the rules of the module doc."""
    if old == new:
        return ID
    match old, new:
        case RecordSchema(), RecordSchema():
            return _fields(old, new, where)
        case TupleSchema(a), TupleSchema(b) if len(a) == len(b):
            items = [
                seq(*component_path(i, len(a)), derive_term(x, y, f"{where}[{i}]"))
                for i, (x, y) in enumerate(zip(a, b, strict=True))
            ]
            return build_product(items)
        case UnionSchema(), UnionSchema():
            return _alternatives(old, new, where)
        case _, UnionSchema(alternatives):
            for index, alt in enumerate(alternatives):
                if kind_of(alt) == kind_of(old):
                    return seq(derive_term(old, alt, where), inject(new, index))
        case _, TupleSchema() | RecordSchema() if components(new):
            first, *rest = components(new)
            head = _widened(old, first, f"{where}[0]")
            if head is not None:
                return build_product([head, *(_default(r) for r in rest)])
    raise MigrationError(
        f"cannot derive a migration for {where}: {describe(old)} -> {describe(new)}{HINT}"
    )


def _widened(old: Schema, first: Schema, where: str) -> Term | None:
    """``old`` as the first component of a wider tuple or record, if it derives at all."""
    try:
        return derive_term(old, first, where)
    except MigrationError:
        return None


def _fields(old: RecordSchema, new: RecordSchema, where: str) -> Term:
    by_name = {f.name: (i, f.schema) for i, f in enumerate(old.fields)}
    dropped = sorted(set(by_name) - {f.name for f in new.fields})
    if dropped:  # a derived migration never loses data
        fields = ", ".join(f"{where}.{name}" for name in dropped)
        raise MigrationError(f"cannot derive a migration: {fields} would be dropped{HINT}")
    parts = []
    for f in new.fields:
        if f.name in by_name:
            i, schema = by_name[f.name]
            path = component_path(i, len(old.fields))
            parts.append(seq(*path, derive_term(schema, f.schema, f"{where}.{f.name}")))
        else:
            parts.append(_default(f.schema))
    return build_product(parts)


def _alternatives(old: UnionSchema, new: UnionSchema, where: str) -> Term:
    targets = {kind_of(alt): (i, alt) for i, alt in enumerate(new.alternatives)}
    arms = []
    for alt in old.alternatives:
        found = targets.get(kind_of(alt))
        if found is None:
            msg = f"cannot derive a migration for {where}: {describe(alt)} has no counterpart"
            raise MigrationError(f"{msg} in {describe(new)}{HINT}")
        index, target = found
        arms.append(seq(derive_term(alt, target, f"{where}:{describe(alt)}"), inject(new, index)))
    chain = arms[-1]
    for arm in reversed(arms[:-1]):
        chain = Case(arm, chain)
    return chain


@dataclass(frozen=True)
class DerivedMigration:
    """A migration module built from two state schemas, usable wherever ``@migration`` is."""

    old: Schema
    new: Schema
    term: Term

    @cached_property
    def cam_module(self) -> Module:
        names = encode_names({"old": self.old, "new": self.new})
        return migration_module(
            core_type(self.old), core_type(self.new), self.term, custom={"names": names}
        )

    @cached_property
    def module(self) -> bytes:
        return encode_module(self.cam_module)

    @cached_property
    def loaded(self) -> LoadedModule:
        return load_module(self.module)


def derive_migration(old: Schema, new: Schema) -> DerivedMigration:
    """The migration from state schema ``old`` to ``new``; :class:`MigrationError` if none."""
    return DerivedMigration(old, new, derive_term(old, new))
