"""The migration of an upgrade that gives none: derived from the state types' names.

Identity for an unchanged state, fields and variants matched by name, defaults for what is new
(:mod:`hotswap.dsl.derive`); :class:`hotswap.dsl.derive.MigrationError` when not possible.
"""

from __future__ import annotations

from hotswap.cam.build import migration_module
from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.module import encode_module
from hotswap.client.convert import schemas_of
from hotswap.code import module_bytes
from hotswap.dsl.derive import MigrationError, derive_migration
from hotswap.lang.terms import ID


def local_code(obj: object) -> LoadedModule | None:
    """The code of a machine given locally (a DSL machine or module bytes), if it is; None for
    an identity (only the node has that code)."""
    loaded = getattr(obj, "loaded", None)
    if isinstance(loaded, LoadedModule):
        return loaded
    if isinstance(obj, str):
        return None
    return load_module(module_bytes(obj, "the old machine"))


def derived_migration(
    old: LoadedModule, new: LoadedModule, old_local: object = None, new_local: object = None
) -> bytes:
    """A migration module from ``old``'s state to ``new``'s: derived by names when both carry
    them, the identity when the state types are equal, else :class:`MigrationError`."""
    return derive_with_notes(old, new, old_local, new_local)[0]


def derive_with_notes(
    old: LoadedModule, new: LoadedModule, old_local: object = None, new_local: object = None
) -> tuple[bytes, tuple[str, ...]]:
    """:func:`derived_migration`, and which value each new field got (its default, or the
    rule's ``0``, ``False``, ``None``), to show with the upgrade."""
    old_sig, new_sig = old.machine, new.machine
    if old_sig is None or new_sig is None:
        raise MigrationError("both modules must be machines to derive a migration")
    old_schemas, new_schemas = schemas_of(old, old_local), schemas_of(new, new_local)
    if old_schemas is not None and new_schemas is not None:
        derived = derive_migration(old_schemas["state"], new_schemas["state"])
        return derived.module, tuple(derived.notes)
    if old_sig.state is new_sig.state:
        return encode_module(migration_module(old_sig.state, new_sig.state, ID)), ()
    msg = f"no migration given, and none derives from {old_sig.state} to {new_sig.state}"
    raise MigrationError(f"{msg} without names: give one")
