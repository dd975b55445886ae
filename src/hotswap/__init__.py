"""hotswap: hot code upgrades of running state machines, from Python.

Machines ``step : (input, state) -> (state, output)`` are written as typed Python, compiled to a
small total language, then to verified, content-addressed CAM bytecode that a node runs and
upgrades live.

Layers import only downward (docs/design.md, "Layers"; tests/test_layers.py checks it)::

    errors -> lang -> cam -> names, protocol -> address, code, dsl -> node | client
           -> fleet, examples -> cli -> __main__ (the ``hotswap`` program)

Everything up to ``dsl`` does no I/O. The node and the client never import each other, and
the node never imports the DSL; this package loads the DSL names below only when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hotswap.errors import (
    BytecodeError,
    DecodeError,
    HotswapError,
    InternalError,
    NodeError,
    ProtocolError,
    SourceError,
    StepTrapped,
    TermTypeError,
    Trap,
    UpgradeRejected,
    ValueTypeError,
    VerifyError,
)

if TYPE_CHECKING:
    from hotswap.cam.loaded import LoadedModule, load_module
    from hotswap.dsl import compile_source, machine, migration

#: Names loaded on first use, so that importing a part of hotswap (the node, the client) does
#: not import the DSL compiler through this package.
_LAZY = {
    "LoadedModule": "hotswap.cam.loaded",
    "load_module": "hotswap.cam.loaded",
    "compile_source": "hotswap.dsl",
    "machine": "hotswap.dsl",
    "migration": "hotswap.dsl",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hotswap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BytecodeError",
    "DecodeError",
    "HotswapError",
    "InternalError",
    "LoadedModule",
    "NodeError",
    "ProtocolError",
    "SourceError",
    "StepTrapped",
    "TermTypeError",
    "Trap",
    "UpgradeRejected",
    "ValueTypeError",
    "VerifyError",
    "compile_source",
    "load_module",
    "machine",
    "migration",
]
