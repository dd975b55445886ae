"""hotswap: hot code upgrades of running state machines, from Python.

Machines ``step : (input, state) -> (state, output)`` are written as typed Python, compiled to a
small total language, then to verified, content-addressed CAM bytecode that a node runs and
upgrades live.

Layers import only downward::

    lang  (types, terms, checker, optimiser, reference evaluator)
      -> cam  (compiler, verifier, VM, fast path, module format)
        -> dsl (typed Python -> terms, names)      protocol  (sans-IO wire protocol)
          -> node  (registry, store, server)
            -> client -> fleet -> cli

``lang`` and ``cam`` never do I/O.
"""

from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.dsl import compile_source, machine, migration
from hotswap.errors import (
    BytecodeError,
    DecodeError,
    HotswapError,
    InternalError,
    NodeError,
    ProtocolError,
    SourceError,
    TermTypeError,
    Trap,
    UpgradeRejected,
    ValueTypeError,
    VerifyError,
)

__all__ = [
    "BytecodeError",
    "DecodeError",
    "HotswapError",
    "InternalError",
    "LoadedModule",
    "NodeError",
    "ProtocolError",
    "SourceError",
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
