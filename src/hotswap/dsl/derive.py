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
    list[A] -> list[B]                item by item, in order (a fold), when A -> B derives
    dict[K, V] -> dict[K', V']        entry by entry, in insertion order, when K -> K' and
                                      V -> V' derive (derived terms are injective: no two
                                      keys meet)
    str -> str                        as it is

Defaults: a record field whose dataclass declares a default (``limit: int = 100``) gets it,
a ``default_factory`` is called once, when the migration is derived; the value must convert to
the field's type (:func:`hotswap.names.schema.to_core`), or the derivation is refused with
:class:`MigrationError` naming the class and field. Everything else, and every record known
only by its names (no class), gets ``0``, ``False``, ``None``, and for records, tuples and
unions the defaults of their parts (a union's first alternative); a ``str`` gets ``""``, a
``list`` ``[]`` and a ``dict`` ``{}``. The migration embeds each
default as a constant, and :attr:`DerivedMigration.notes` says which new field or item got which
value. Anything else, a removed record field included (a derived migration never loses data),
is refused with :class:`MigrationError` naming the place: write that migration by hand with
``@migration``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, assert_never, cast

from hotswap.cam.build import migration_module
from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.module import Module, encode_module
from hotswap.dsl.combinators import inject
from hotswap.dsl.env import build_product, component_path, seq
from hotswap.errors import HotswapError, ValueTypeError
from hotswap.lang.evaluate import Value
from hotswap.lang.persistent import EMPTY_LIST, EMPTY_MAP
from hotswap.lang.terms import (
    FST,
    ID,
    SND,
    TERMINAL,
    Case,
    Empty,
    Fanout,
    Fold,
    Inl,
    Op,
    Prim,
    Term,
)
from hotswap.lang.types import Type
from hotswap.lang.values import constant
from hotswap.names.schema import (
    BoolSchema,
    DictSchema,
    Field,
    IntSchema,
    ListSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    StrSchema,
    TupleSchema,
    UnionSchema,
    components,
    core_type,
    describe,
    from_core,
    inject_value,
    kind_of,
    nest_values,
    to_core,
)
from hotswap.names.section import encode_names


class MigrationError(HotswapError):
    """No migration can be derived between two state types; the message says where."""


class DefaultError(MigrationError):
    """A dataclass default that a derived migration cannot use (not a value of its type, or a
    ``default_factory`` that fails)."""


HINT = "; write this migration with @migration (or pass --migration)"

_MISSING: Any = dataclasses.MISSING


class _Defaults:
    """The default values of one derivation: declared defaults read (and factories called) once."""

    def __init__(self) -> None:
        self._declared: dict[tuple[type, str], tuple[object, str]] = {}

    def value(self, s: Schema) -> Value:
        """The core value a new field or component of schema ``s`` starts with."""
        match s:
            case IntSchema():
                return 0
            case BoolSchema():
                return (0, ())
            case NoneSchema():
                return ()
            case StrSchema():
                return ""
            case ListSchema():
                return EMPTY_LIST
            case DictSchema():
                return EMPTY_MAP
            case TupleSchema(items):
                return nest_values([self.value(i) for i in items])
            case RecordSchema(fields=fields):
                return nest_values([self.field(s, f)[0] for f in fields])
            case UnionSchema(alternatives):
                return inject_value(0, len(alternatives), self.value(alternatives[0]))
            case _:
                assert_never(s)

    def field(self, record: RecordSchema, f: Field) -> tuple[Value, str]:
        """Field ``f``'s default as a core value, and a note on where it came from: the
        dataclass's declared default, else :meth:`value` of its schema."""
        declared = self.declared(record, f)
        if declared is None:
            value = self.value(f.schema)
            return value, f"new field without a default, set to {_show(f.schema, value)}"
        python, origin = declared
        where = f"{record.name}.{f.name}"
        try:
            value = to_core(f.schema, python, where)
        except ValueTypeError as e:
            raise DefaultError(
                f"cannot derive a migration: the {origin} of {where}, {python!r}, cannot be "
                f"expressed as {describe(f.schema)} ({e}){HINT}"
            ) from None
        return value, f"new field, set to {python!r} (its {origin})"

    def declared(self, record: RecordSchema, f: Field) -> tuple[object, str] | None:
        """The Python default the record's class declares for ``f`` and ``"default"`` or
        ``"default_factory"``; None without a class or a default."""
        cls = record.cls
        if cls is None or not dataclasses.is_dataclass(cls):
            return None
        key = (cls, f.name)
        if key not in self._declared:
            found = next((d for d in dataclasses.fields(cls) if d.name == f.name), None)
            if found is None:
                return None
            if found.default is not _MISSING:
                self._declared[key] = (found.default, "default")
            elif found.default_factory is not _MISSING:
                factory = cast("Callable[[], object]", found.default_factory)
                self._declared[key] = (_call_factory(record, f, factory), "default_factory")
            else:
                return None
        return self._declared[key]


def _call_factory(record: RecordSchema, f: Field, factory: Callable[[], object]) -> object:
    try:
        return factory()
    except Exception as e:  # noqa: BLE001 - the user's factory failed: refuse, saying so
        raise DefaultError(
            f"cannot derive a migration: the default_factory of {record.name}.{f.name} raised "
            f"{type(e).__name__}: {e}{HINT}"
        ) from None


def _show(s: Schema, value: Value) -> str:
    return repr(from_core(s, value))


def default_value(s: Schema) -> Value:
    """The core value a new field or component of schema ``s`` starts with (records' declared
    defaults included); :class:`DefaultError` if a declared default cannot be used."""
    return _Defaults().value(s)


class _Derivation:
    """One derivation: its defaults and the notes on what they set."""

    def __init__(self) -> None:
        self.defaults = _Defaults()
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def default(self, s: Schema, where: str) -> Term:
        value = self.defaults.value(s)
        self.note(f"{where}: new item, set to {_show(s, value)}")
        return constant(value, core_type(s))

    def default_field(self, record: RecordSchema, f: Field) -> Term:
        value, note = self.defaults.field(record, f)
        self.note(f"{record.name}.{f.name}: {note}")
        return constant(value, core_type(f.schema))

    def term(self, old: Schema, new: Schema, where: str) -> Term:
        """A term from ``core_type(old)`` to ``core_type(new)`` by the rules of the module doc."""
        if old == new:
            return ID
        match old, new:
            case RecordSchema(), RecordSchema():
                return self.fields(old, new, where)
            case TupleSchema(a), TupleSchema(b) if len(a) == len(b):
                items = [
                    seq(*component_path(i, len(a)), self.term(x, y, f"{where}[{i}]"))
                    for i, (x, y) in enumerate(zip(a, b, strict=True))
                ]
                return build_product(items)
            case UnionSchema(), UnionSchema():
                return self.alternatives(old, new, where)
            case ListSchema(a), ListSchema(b):
                return map_list(self.term(a, b, f"{where}[i]"), core_type(new))
            case DictSchema(k1, v1), DictSchema(k2, v2):
                keys = self.term(k1, k2, f"{where}.keys()")
                entries = self.term(v1, v2, f"{where}[k]")
                return map_dict(keys, entries, core_type(new))
            case _, UnionSchema(alternatives):
                for index, alt in enumerate(alternatives):
                    if kind_of(alt) == kind_of(old):
                        return seq(self.term(old, alt, where), inject(new, index))
            case _, TupleSchema() | RecordSchema() if components(new):
                head = self.widened(old, components(new)[0], f"{where}[0]")
                if head is not None:
                    if isinstance(new, RecordSchema):
                        rest = [self.default_field(new, f) for f in new.fields[1:]]
                    else:
                        rest = [
                            self.default(s, f"{where}[{i}]") for i, s in enumerate(new.items[1:], 1)
                        ]
                    return build_product([head, *rest])
        why = ""
        if isinstance(old, TupleSchema) and isinstance(new, TupleSchema):
            n, m = len(old.items), len(new.items)
            change = "a new item has no value to take" if m > n else "an old item would be lost"
            why = (
                f" (a tuple's items are matched by position, so a tuple of {n} items does not "
                f"derive to one of {m}: {change})"
            )
        raise MigrationError(
            f"cannot derive a migration for {where}: {describe(old)} -> {describe(new)}{why}{HINT}"
        )

    def widened(self, old: Schema, first: Schema, where: str) -> Term | None:
        """``old`` as the first component of a wider tuple or record, if it derives at all."""
        kept = len(self.notes)
        try:
            return self.term(old, first, where)
        except DefaultError:
            raise
        except MigrationError:
            del self.notes[kept:]
            return None

    def fields(self, old: RecordSchema, new: RecordSchema, where: str) -> Term:
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
                parts.append(seq(*path, self.term(schema, f.schema, f"{where}.{f.name}")))
            else:
                parts.append(self.default_field(new, f))
        return build_product(parts)

    def alternatives(self, old: UnionSchema, new: UnionSchema, where: str) -> Term:
        targets = {kind_of(alt): (i, alt) for i, alt in enumerate(new.alternatives)}
        arms = []
        for alt in old.alternatives:
            found = targets.get(kind_of(alt))
            if found is None:
                msg = f"cannot derive a migration for {where}: {describe(alt)} has no counterpart"
                raise MigrationError(f"{msg} in {describe(new)}{HINT}")
            index, target = found
            arm = self.term(alt, target, f"{where}:{describe(alt)}")
            arms.append(seq(arm, inject(new, index)))
        chain = arms[-1]
        for arm in reversed(arms[:-1]):
            chain = Case(arm, chain)
        return chain


def map_list(f: Term, new: Type) -> Term:
    """``List A -> List B`` applying ``f : A -> B`` to each item, in order (a fold)."""
    body = seq(SND, Fanout(SND, seq(FST, f)), Prim(Op.LIST_APPEND), Inl(new))
    return seq(Fanout(TERMINAL, Fanout(ID, Empty(new))), Fold(body), Case(ID, ID))


def map_dict(keys: Term, values: Term, new: Type) -> Term:
    """``Map K V -> Map K' V'`` applying ``keys`` and ``values`` to each entry, in insertion
    order (a fold over the items; ``keys`` is injective, as every derived term is)."""
    entry = Fanout(seq(FST, FST, keys), seq(FST, SND, values))
    body = seq(SND, Fanout(SND, entry), Prim(Op.MAP_INSERT), Inl(new))
    items = Fanout(TERMINAL, Fanout(Prim(Op.MAP_ITEMS), Empty(new)))
    return seq(items, Fold(body), Case(ID, ID))


@dataclass(frozen=True)
class DerivedMigration:
    """A migration module built from two state schemas, usable wherever ``@migration`` is.

    ``notes`` says, one line each, which new field or item got which value: ``"Quota.limit:
    new field, set to 100 (its default)"``, ``"Quota.warned: new field without a default, set
    to False"``, ``"state[1]: new item, set to 0"``."""

    old: Schema
    new: Schema
    term: Term
    notes: tuple[str, ...] = ()

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
    derivation = _Derivation()
    term = derivation.term(old, new, "state")
    return DerivedMigration(old, new, term, tuple(derivation.notes))
