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

from hotswap.cam.codegen import (
    Metered,
    OutOfFuel,
    compile_metered,
    compile_unmetered,
    has_static_cost,
    out_of_fuel,
)
from hotswap.cam.limits import DEFAULT_FUEL
from hotswap.cam.module import Module, decode_module, encode_module, module_identity
from hotswap.cam.verify_module import ModuleInfo, verify_module
from hotswap.cam.vm import VM
from hotswap.errors import HotswapError, Trap
from hotswap.lang.check import MAX_STATE_BYTES
from hotswap.lang.evaluate import Value
from hotswap.lang.persistent import state_size
from hotswap.lang.types import Type

Executor = Literal["fast", "vm"]


@dataclass(frozen=True, slots=True)
class MigrationSig:
    old: Type
    new: Type


class LoadedModule:
    """A verified module ready to run. ``step``/``init``/``migrate`` use the fast path;
    ``run_function(i, v, "vm")`` runs any function on the reference VM. Every run has a fuel
    budget (``fuel``, by default :data:`hotswap.cam.limits.DEFAULT_FUEL`); running out is the
    trap ``out_of_fuel``."""

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
        # Code whose every instruction costs 1 cannot cost more than its step bound: with at
        # least that much fuel it runs unmetered (as fast as before fuel existed); the metered
        # form is compiled when first needed (a smaller budget, or fuel used is asked for).
        self._plain: list[Callable[[Value], Value] | None] = []
        self._bound: list[int] = []
        self._metered: list[Metered | None] = []
        for f, fi in zip(module.functions, info.functions, strict=True):
            static = fi.bounded and has_static_cost(f.code)
            self._plain.append(compile_unmetered(f.code) if static else None)
            self._bound.append(fi.max_steps if static else -1)
            self._metered.append(None if static else compile_metered(f.code))
        self._vms = [VM(f.code) for f in module.functions]

    def _fast(self, index: int) -> Metered:
        fn = self._metered[index]
        if fn is None:
            fn = self._metered[index] = compile_metered(self.module.functions[index].code)
        return fn

    def __repr__(self) -> str:
        return f"<LoadedModule {self.identity[:12]}>"

    def run_metered(
        self, index: int, value: Value, executor: Executor = "fast", fuel: int = DEFAULT_FUEL
    ) -> tuple[Value, int]:
        """Run function ``index`` on a value of its domain (unchecked: callers check values);
        ``(result, fuel used)``. Both executors use exactly the same fuel."""
        if executor == "vm":
            vm = self._vms[index]
            result = vm.run(value, fuel)
            return result, vm.statistics().fuel
        try:
            result, left = self._fast(index)(value, fuel)
        except OutOfFuel:
            raise out_of_fuel(fuel) from None
        return result, fuel - left

    def run_function(
        self, index: int, value: Value, executor: Executor = "fast", fuel: int = DEFAULT_FUEL
    ) -> Value:
        """Run function ``index`` on a value of its domain (unchecked: callers check values)."""
        if executor == "vm":
            return self._vms[index].run(value, fuel)
        plain = self._plain[index]
        if plain is not None and fuel >= self._bound[index]:
            return plain(value)
        try:
            return self._fast(index)(value, fuel)[0]
        except OutOfFuel:
            raise out_of_fuel(fuel) from None

    def function(self, index: int, fuel: int = DEFAULT_FUEL) -> Callable[[Value], Value]:
        """The fast-path callable of function ``index``, run with ``fuel``."""
        plain = self._plain[index]
        if plain is not None and fuel >= self._bound[index]:
            return plain
        fast = self._fast(index)

        def run(value: Value) -> Value:
            try:
                return fast(value, fuel)[0]
            except OutOfFuel:
                raise out_of_fuel(fuel) from None

        return run

    def init(
        self,
        executor: Executor = "fast",
        fuel: int = DEFAULT_FUEL,
        state_limit: int | None = MAX_STATE_BYTES,
    ) -> Value:
        if self.machine is None:
            raise HotswapError(f"module {self.identity[:12]} is not a machine")
        return _limited(self.run_function(self.machine.init, (), executor, fuel), state_limit)

    def step(
        self,
        input: Value,
        state: Value,
        executor: Executor = "fast",
        fuel: int = DEFAULT_FUEL,
        state_limit: int | None = MAX_STATE_BYTES,
    ) -> tuple[Value, Value]:
        """One step: ``(new_state, output)``; a trap raises :class:`hotswap.errors.Trap`. A new
        state whose size is above ``state_limit`` bytes traps ``too_large`` (None:
        no limit, for replaying what was accepted before)."""
        if self.machine is None:
            raise HotswapError(f"module {self.identity[:12]} is not a machine")
        result: tuple[Value, Value] = self.run_function(
            self.machine.step, (input, state), executor, fuel
        )
        _limited(result[0], state_limit)
        return result

    def migrate(
        self,
        state: Value,
        executor: Executor = "fast",
        fuel: int = DEFAULT_FUEL,
        state_limit: int | None = MAX_STATE_BYTES,
    ) -> Value:
        if self.module.migration is None:
            raise HotswapError(f"module {self.identity[:12]} is not a migration")
        return _limited(
            self.run_function(self.module.migration, state, executor, fuel), state_limit
        )


def _limited(state: Value, limit: int | None) -> Value:
    """``state``, unless its size (:func:`~hotswap.lang.persistent.state_size`, its encoded
    size with non-ASCII text at four bytes per code point) is above ``limit``: then the trap
    ``too_large``. Measuring costs what the run changed (collections keep their size)."""
    if limit is not None:
        size = state_size(state, limit)
        if size > limit:
            msg = f"the new state would take more than {limit} bytes (the state limit)"
            raise Trap("too_large", msg)
    return state


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
