"""Loaded modules: decoded, verified and compiled once, cached by identity.

``load_module(data)`` is the one door through which bytes from elsewhere become runnable code.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from hotswap.cam.codegen import compile_code
from hotswap.cam.module import Module, decode_module, encode_module, module_identity
from hotswap.cam.verify_module import ModuleInfo, verify_module
from hotswap.cam.vm import VM
from hotswap.errors import HotswapError
from hotswap.lang.evaluate import Value
from hotswap.lang.types import Type

Executor = Literal["fast", "vm"]


@dataclass(frozen=True, slots=True)
class MigrationSig:
    old: Type
    new: Type


class LoadedModule:
    """A verified module ready to run. ``step``/``init``/``migrate`` use the fast path;
    ``run_function(i, v, "vm")`` runs any function on the reference VM."""

    def __init__(self, data: bytes, module: Module, info: ModuleInfo) -> None:
        self.data = data
        self.module = module
        self.info = info
        self.identity = module_identity(data)
        self.machine = module.machine
        self.custom: Mapping[str, bytes] = MappingProxyType(dict(module.custom))
        self.migration: MigrationSig | None = None
        if module.migration is not None:
            f = module.functions[module.migration]
            self.migration = MigrationSig(f.dom, f.cod)
        self._fast = [compile_code(f.code) for f in module.functions]
        self._vms = [VM(f.code) for f in module.functions]

    def __repr__(self) -> str:
        return f"<LoadedModule {self.identity[:12]}>"

    def run_function(self, index: int, value: Value, executor: Executor = "fast") -> Value:
        """Run function ``index`` on a value of its domain (unchecked: callers check values)."""
        if executor == "vm":
            return self._vms[index].run(value)
        return self._fast[index](value)

    def function(self, index: int) -> Callable[[Value], Value]:
        """The fast-path callable of function ``index``."""
        return self._fast[index]

    def init(self, executor: Executor = "fast") -> Value:
        if self.machine is None:
            raise HotswapError(f"module {self.identity[:12]} is not a machine")
        return self.run_function(self.machine.init, (), executor)

    def step(self, input: Value, state: Value, executor: Executor = "fast") -> tuple[Value, Value]:
        """One step: ``(new_state, output)``; a trap raises :class:`hotswap.errors.Trap`."""
        if self.machine is None:
            raise HotswapError(f"module {self.identity[:12]} is not a machine")
        result: tuple[Value, Value] = self.run_function(self.machine.step, (input, state), executor)
        return result

    def migrate(self, state: Value, executor: Executor = "fast") -> Value:
        if self.module.migration is None:
            raise HotswapError(f"module {self.identity[:12]} is not a migration")
        return self.run_function(self.module.migration, state, executor)


_CACHE_SIZE = 256
_cache: OrderedDict[bytes, LoadedModule] = OrderedDict()
_cache_lock = threading.Lock()


def load_module(data: bytes) -> LoadedModule:
    """Decode, verify and compile module bytes; raises a :class:`HotswapError` subclass
    (:class:`DecodeError`, :class:`VerifyError`) naming what is wrong. Cached by content."""
    key = bytes(data) if isinstance(data, bytes | bytearray | memoryview) else b""
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    module = decode_module(data)
    loaded = LoadedModule(key, module, verify_module(module))
    with _cache_lock:
        _cache[key] = loaded
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def is_loaded(data: bytes) -> bool:
    """Whether ``load_module(data)`` would return at once, from the cache."""
    with _cache_lock:
        return bytes(data) in _cache


def load(module: Module) -> LoadedModule:
    """Load an in-memory module (encodes it first, so it goes through the same checks)."""
    return load_module(encode_module(module))
