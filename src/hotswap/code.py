"""Code as a user hands it over: machines, modules, bytes, ``module:attribute`` references.

The node (``--machine``), the client (an :class:`Upgrade`'s parts) and the CLI (``--to``,
``--migration``) all accept code in the same forms, and turn it into canonical module bytes
here. "Upgrade" in this module is the seed's ``Upgrade old new migration``: a description of an
upgrade that a client sends; the wire message is ``protocol.events.UpgradeRequest``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

from hotswap.cam.loaded import LoadedModule
from hotswap.cam.module import Module, encode_module, module_identity
from hotswap.errors import HotswapError, UpgradeRejected


def module_bytes(obj: object, where: str) -> bytes:
    """Module bytes from a DSL machine (``.module``), a :class:`Module`, a loaded module, bytes,
    or a function of no arguments returning one of these; ``where`` names ``obj`` in errors."""
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, Module):
        return encode_module(obj)
    if isinstance(obj, LoadedModule):
        return obj.data
    data = getattr(obj, "module", None)
    if isinstance(data, bytes):
        return data
    if isinstance(data, Module):
        return encode_module(data)
    if inspect.isfunction(obj):
        try:
            inspect.signature(obj).bind()
        except TypeError:
            raise HotswapError(
                f"{where} is a function that takes arguments, not a machine"
            ) from None
        return module_bytes(obj(), where)
    raise HotswapError(f"{where} is not a machine (no module bytes): {obj!r}")


def import_object(spec: str) -> object:
    """The object named by ``package.module:attribute``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise HotswapError(f"bad reference {spec!r}: expected module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        hint = ""
        top = module_name.partition(".")[0]
        searched = {str(Path(p or ".").resolve()) for p in sys.path}
        if (
            isinstance(e, ModuleNotFoundError)
            and e.name == top
            and (Path(top + ".py").is_file() or Path(top).is_dir())
            and str(Path.cwd()) not in searched
        ):
            # the ``hotswap`` command, unlike ``python -m``, does not search the directory
            # it runs in: say so rather than import from it unasked
            hint = (
                f" ({top!r} is in the current directory, which the hotswap command does not "
                "search: run it with PYTHONPATH=. or install your package)"
            )
        raise HotswapError(f"cannot import {module_name!r}: {e}{hint}") from None
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise HotswapError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return obj


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The seed's ``Upgrade old new migration``: the code expected to run (a machine, module
    bytes or a hex identity), the new machine, and the migration from old state to new.

    Without a migration, the client derives one from the state types' names
    (``hotswap.dsl.derive``): identity for an unchanged state, fields and variants matched by
    name, defaults for what is new; :class:`hotswap.dsl.derive.MigrationError` says when that
    is not possible.

    ``generation``: the machine's generation this upgrade is for (``status(...).generation``);
    the node refuses it at any other, so it cannot be replayed once the code has changed.
    ``rename``: the migration's names may differ from the states' (a deliberate rename);
    without it the node refuses such a migration as one declared for other machines."""

    old: object
    new: object
    migration: object | None = None
    generation: int | None = None
    rename: bool = False

    def expected_identity(self) -> str:
        if isinstance(self.old, str):
            return self.old
        return module_identity(module_bytes(self.old, "the old machine"))

    def check_declared(self, expected: str, new: str) -> None:
        """Refuse a DSL migration declared for other machines (``@migration(a, b)`` used to
        upgrade c to d): its layout may fit, but it was written for other states."""
        old_machine = getattr(self.migration, "old", None)
        new_machine = getattr(self.migration, "new", None)
        declared_old = getattr(old_machine, "identity", None)
        declared_new = getattr(new_machine, "identity", None)
        if not isinstance(declared_old, str) or not isinstance(declared_new, str):
            return
        name = getattr(self.migration, "name", "the migration")
        if (declared_old, declared_new) != (expected, new):
            old_name = getattr(old_machine, "name", declared_old[:12])
            new_name = getattr(new_machine, "name", declared_new[:12])
            raise UpgradeRejected(
                "ill_typed_upgrade",
                f"{name} is declared @migration({old_name}, {new_name}), but this upgrade goes "
                f"from {expected[:12]} to {new[:12]}: give the migration written for these "
                "machines, or leave it out to derive one",
            )
