"""Python values to and from a machine's core values, by the names its module carries.

By name when the module carries a names section (dataclass instances, ints, bools, None,
tuples), with a local DSL machine's own classes when it has the same code; as core values
(``()``, ints, pairs, ``(0, v)``/``(1, v)``) otherwise, checked when encoded.
"""

from __future__ import annotations

from collections.abc import Callable

from hotswap.cam.loaded import LoadedModule
from hotswap.lang.evaluate import Value
from hotswap.names.schema import Schema, from_core, to_core
from hotswap.names.section import SECTION, module_schemas

#: Converts Python values for one loaded module: (to_core(value, role), from_core(value, role)).
Converter = tuple[Callable[[Value, str], Value], Callable[[Value, str], Value]]


def schemas_of(code: LoadedModule, local: object | None = None) -> dict[str, Schema] | None:
    """The schemas (Python names) of a machine's input, state and output: a local DSL machine's
    own when it has this identity (its classes), else the module's names section, else None."""
    own = getattr(local, "schemas", None)
    if isinstance(own, dict) and getattr(local, "identity", None) == code.identity:
        return own
    return module_schemas(code)


def converter_for(code: LoadedModule, local: object | None = None) -> Converter:
    """By-name conversion when names are known, else core values unchanged (checked when
    encoded)."""
    schemas = schemas_of(code, local)
    if schemas is None:
        return (lambda v, role: v), (lambda v, role: v)
    known = schemas
    return (
        lambda v, role: to_core(known[role], v, role),
        lambda v, role: from_core(known[role], v),
    )


def has_names(code: LoadedModule) -> bool:
    """Whether values of ``code`` can be re-encoded by name."""
    return SECTION in code.custom
