"""The nominal upgrade lint: where two modules' types are equal in structure but not in names.

An upgrade from ``Incr | Count`` to ``Count | Incr`` is well typed (the layouts are equal) but
swaps what each name means: the same input bytes would now be the other command. The node adds
these findings to its trace and the CLI prints them; they never refuse an upgrade by themselves.

Lists and dicts are compared structurally, item type with item type: a place inside them is
written ``state.cart[k]`` (a dict's values), ``state.cart.key`` (its keys) and ``state.log[i]``
(a list's items).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hotswap.cam.loaded import LoadedModule
from hotswap.errors import HotswapError
from hotswap.names.schema import (
    DictSchema,
    ListSchema,
    RecordSchema,
    Schema,
    TupleSchema,
    UnionSchema,
    core_type,
    describe,
)
from hotswap.names.section import SECTION, decode_names, module_schemas, section_roles


def nominal_differences(
    old: Mapping[str, Schema] | bytes, new: Mapping[str, Schema] | bytes
) -> list[str]:
    """Where two modules' types are structurally equal but named differently.

    Takes decoded roles or names-section bytes. Roles whose core types differ are a structural
    change, not a nominal one, and are skipped; so are roles only one side has.
    """
    old_roles = decode_names(old) if isinstance(old, bytes) else old
    new_roles = decode_names(new) if isinstance(new, bytes) else new
    out: list[str] = []
    for role, a in old_roles.items():
        b = new_roles.get(role)
        if b is not None and core_type(a) == core_type(b):
            _compare(a, b, role, out)
    return out


def _compare(a: Schema, b: Schema, path: str, out: list[str]) -> None:
    match a, b:
        case RecordSchema(), RecordSchema() if len(a.fields) == len(b.fields):
            _compare_records(a, b, path, out)
        case UnionSchema(alts_a), UnionSchema(alts_b) if len(alts_a) == len(alts_b):
            names_a = [describe(x) for x in alts_a]
            names_b = [describe(x) for x in alts_b]
            if names_a != names_b and sorted(names_a) == sorted(names_b):
                moved = next(x for x, y in zip(names_a, names_b, strict=True) if x != y)
                now = names_b[names_a.index(moved)]
                out.append(
                    f"{path}: the cases {describe(a)} were reordered to {describe(b)}: "
                    f"a value sent as {moved} would now mean {now}"
                )
                return
            for i, (old, new) in enumerate(zip(alts_a, alts_b, strict=True)):
                _compare(old, new, f"{path}|{i}", out)
        case TupleSchema(items_a), TupleSchema(items_b) if len(items_a) == len(items_b):
            for i, (old, new) in enumerate(zip(items_a, items_b, strict=True)):
                _compare(old, new, f"{path}[{i}]", out)
        case ListSchema(item_a), ListSchema(item_b):
            _compare(item_a, item_b, f"{path}[i]", out)
        case DictSchema(key_a, value_a), DictSchema(key_b, value_b):
            _compare(key_a, key_b, f"{path}.key", out)
            _compare(value_a, value_b, f"{path}[k]", out)
        case _:
            if describe(a) != describe(b):
                out.append(f"{path}: {describe(a)} is now {describe(b)} (same layout, other names)")


def _compare_records(a: RecordSchema, b: RecordSchema, path: str, out: list[str]) -> None:
    if a.name != b.name:
        out.append(f"{path}: record {a.name} is now named {b.name}")
    old_names, new_names = a.field_names(), b.field_names()
    if old_names != new_names and sorted(old_names) == sorted(new_names):
        out.append(
            f"{path}: the fields of {b.name} were reordered from ({', '.join(old_names)}) to "
            f"({', '.join(new_names)}): old values would land in other fields"
        )
    elif old_names != new_names:
        for old, new in zip(old_names, new_names, strict=True):
            if old != new:
                out.append(f"{path}: field {a.name}.{old} is now named {new}")
    for fa, fb in zip(a.fields, b.fields, strict=True):
        _compare(fa.schema, fb.schema, f"{path}.{fb.name}", out)


def nominal_notes(old: LoadedModule, new: LoadedModule) -> tuple[str, ...]:
    """The lint for two machine modules, as notes; empty when either carries no names.
    Unreadable names are reported as a note: names are advisory and never block an upgrade.
    Worked out once for two modules (kept with ``new``): a node works it out on the worker
    thread that loads an upgrade's modules, and finds it done when it applies the upgrade."""
    return _remembered(new, "nominal notes", (old,), lambda: _nominal_notes(old, new))


def _nominal_notes(old: LoadedModule, new: LoadedModule) -> tuple[str, ...]:
    if old.custom.get(SECTION) is None or new.custom.get(SECTION) is None:
        return ()
    try:
        old_roles, new_roles = section_roles(old), section_roles(new)
        assert old_roles is not None and new_roles is not None
        return tuple(nominal_differences(old_roles, new_roles))
    except HotswapError as e:
        return (f"names not compared: {e}",)


def migration_name_differences(
    old: LoadedModule, new: LoadedModule, migration: LoadedModule
) -> list[str]:
    """Where a migration's names disagree with the states it is applied between: its domain
    against the running machine's state, its codomain against the new machine's. A migration
    declared for other machines has the right layout but other names (``Quota`` where the
    running state is a ``Temp``). Empty when any of the three modules carries no names. Worked
    out once for three modules (kept with ``migration``), as :func:`nominal_notes` is."""
    work = lambda: _migration_names(old, new, migration)  # noqa: E731
    return list(_remembered(migration, "migration names", (old, new), work))


def _migration_names(
    old: LoadedModule, new: LoadedModule, migration: LoadedModule
) -> tuple[str, ...]:
    try:
        old_roles, new_roles = module_schemas(old), module_schemas(new)
        roles = section_roles(migration)
        if old_roles is None or new_roles is None or roles is None:
            return ()
    except HotswapError:  # unreadable names cannot be compared; the trace notes them
        return ()
    out: list[str] = []
    if "old" in roles:
        out += nominal_differences({"old state": old_roles["state"]}, {"old state": roles["old"]})
    if "new" in roles:
        out += nominal_differences({"new state": new_roles["state"]}, {"new state": roles["new"]})
    return tuple(out)


def _remembered(
    code: LoadedModule,
    name: str,
    others: tuple[LoadedModule, ...],
    work: Callable[[], tuple[str, ...]],
) -> tuple[str, ...]:
    """``work()``, kept in ``code``'s memo under ``name`` for the ``others``. They are held
    weakly: what a module remembers of others never keeps them alive (a running module
    remembering the one it replaced, which remembered the one before, and so on)."""
    memo_key = f"{name}: {' '.join(str(id(m)) for m in others)}"
    kept = code.memo.get(memo_key)
    if isinstance(kept, _Kept) and all(
        ref() is m for ref, m in zip(kept.others, others, strict=True)
    ):
        return kept.result
    result = work()
    code.memo[memo_key] = _Kept(tuple(weakref.ref(m) for m in others), result)
    return result


@dataclass(frozen=True, slots=True)
class _Kept:
    others: tuple[weakref.ref[LoadedModule], ...]
    result: tuple[str, ...]
