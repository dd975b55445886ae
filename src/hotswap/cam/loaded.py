"""Loaded modules: decoded, verified and compiled once, cached by identity within a budget of
bytes.

``load_module(data)`` is the one door through which bytes from elsewhere become runnable code.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

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
from hotswap.cam.values import value_decoder, value_encoder
from hotswap.cam.verify_module import ModuleInfo, verify_module
from hotswap.cam.vm import VM
from hotswap.errors import HotswapError, Trap
from hotswap.lang.check import MAX_STATE_BYTES
from hotswap.lang.evaluate import Value
from hotswap.lang.persistent import bulk, state_size
from hotswap.lang.types import INT, UNIT, Prod, Sum, Type

Executor = Literal["fast", "vm"]
#: How many (fuel, state limit) pairs a module keeps a step for (a node uses two or three).
_STEPPERS_KEPT = 16
#: A machine's step as :meth:`LoadedModule.stepper` makes it: ``(input, state) -> (state, output)``.
Step = Callable[[Value, Value], tuple[Value, Value]]


class Codecs(NamedTuple):
    """A machine's value codecs (:mod:`hotswap.cam.values`), found once for its module."""

    #: Its input type's, bounded (inputs come from peers: ``value_decoder(..., bounded=True)``).
    input: Callable[[bytes], Value]
    state: Callable[[Value], bytes]
    output: Callable[[Value], bytes]


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
        #: What other layers derive from the module once and keep with it (the schemas of its
        #: names section): it lives as long as the module does.
        self.memo: dict[str, object] = {}
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
        #: :meth:`stepper`'s steps, by (fuel, state limit).
        self._steppers: dict[tuple[int, int | None], Step] = {}

    @cached_property
    def codecs(self) -> Codecs:
        """The codecs of this machine's input, state and output (a node's every input uses
        them: found once here rather than looked up by type each time)."""
        if self.machine is None:
            raise HotswapError(f"module {self.identity[:12]} is not a machine")
        sig = self.machine
        input = value_decoder(sig.input, bounded=True)
        return Codecs(input, value_encoder(sig.state), value_encoder(sig.output))

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

    def parts(self, index: int, fuel: int = DEFAULT_FUEL) -> tuple[Callable[..., Any], int | None]:
        """What :meth:`function` calls, for a caller that inlines the call: ``(f, None)``,
        when ``f(value)`` is the result (code of static cost within ``fuel``), else ``(f,
        fuel)``, when ``f(value, fuel)[0]`` is, :class:`OutOfFuel` standing for
        ``out_of_fuel(fuel)``."""
        plain = self._plain[index]
        if plain is not None and fuel >= self._bound[index]:
            return plain, None
        return self._fast(index), fuel

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
        if executor == "fast":
            return self.stepper(fuel, state_limit)(input, state)
        if self.machine is None:
            raise HotswapError(f"module {self.identity[:12]} is not a machine")
        result: tuple[Value, Value] = self.run_function(
            self.machine.step, (input, state), executor, fuel
        )
        _limited(result[0], state_limit)
        return result

    def stepper(self, fuel: int = DEFAULT_FUEL, state_limit: int | None = MAX_STATE_BYTES) -> Step:
        """:meth:`step` on the fast path with this ``fuel`` and ``state_limit``, made once and
        kept: ``stepper(f, l)(i, s)`` is ``step(i, s, fuel=f, state_limit=l)``, the call that
        a node makes for every input, with nothing between it and the compiled code. The state
        limit is not measured when no state of the type can reach it (no text or collection
        in it: :func:`max_size`)."""
        made = self._steppers.get((fuel, state_limit))
        if made is None:
            if len(self._steppers) >= _STEPPERS_KEPT:  # a caller of many budgets: start over
                self._steppers.clear()
            made = self._steppers[(fuel, state_limit)] = self._make_stepper(fuel, state_limit)
        return made

    def _make_stepper(self, fuel: int, limit: int | None) -> Step:
        if self.machine is None:
            raise HotswapError(f"module {self.identity[:12]} is not a machine")
        index = self.machine.step
        if limit is not None and max_size(self.machine.state) <= limit:
            limit = None  # no state of the type can pass it
        plain = self._plain[index]
        if plain is not None and fuel >= self._bound[index]:
            if limit is None:

                def step(input: Value, state: Value) -> tuple[Value, Value]:
                    result: tuple[Value, Value] = plain((input, state))
                    return result

                return step

            def measured(input: Value, state: Value) -> tuple[Value, Value]:
                result: tuple[Value, Value] = plain((input, state))
                _limited(result[0], limit)
                return result

            return measured
        fast = self._fast(index)

        def metered(input: Value, state: Value) -> tuple[Value, Value]:
            try:
                result: tuple[Value, Value] = fast((input, state), fuel)[0]
            except OutOfFuel:
                raise out_of_fuel(fuel) from None
            if limit is not None:
                _limited(result[0], limit)
            return result

        return metered

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


def max_size(t: Type) -> float:
    """The most bytes :func:`~hotswap.lang.persistent.state_size` can count for a value of
    ``t``: an Int takes at most 10 (a 64-bit sLEB128), an injection its tag's byte and the
    larger of its two sides; a type with text, a list or a map in it has no such bound (inf)."""
    if t is INT:
        return 10
    if t is UNIT:
        return 0
    if isinstance(t, Prod):
        return max_size(t.left) + max_size(t.right)
    if isinstance(t, Sum):
        return 1 + max(max_size(t.left), max_size(t.right))
    return math.inf


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


#: What the cache may hold, in bytes (:func:`cost`): 64 MiB, two modules at the size limit with
#: their copies, or thousands of ordinary ones. ``set_cache_bytes`` changes it.
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
#: Loaded modules by identity, least recently used first, with their cost.
_cache: OrderedDict[str, tuple[LoadedModule, int]] = OrderedDict()
#: The same entries by the ``id`` of their bytes: a lookup with the very bytes object that was
#: loaded (an upgrade's modules, loaded on a worker thread, then used on the event loop) costs
#: no hashing of up to 16 MiB.
_by_object: dict[int, LoadedModule] = {}
#: The same entries by their bytes, for modules of at most :data:`_SMALL` bytes: the same
#: module received again (an upgrade's modules arrive as new bytes objects with each request)
#: is found by one hash of its bytes, not by its identity (a walk over its sections and a
#: SHA-256 of them, which an upgrade worked out four times).
_by_content: dict[bytes, LoadedModule] = {}
_cache_bytes = 0
_cache_limit = DEFAULT_CACHE_BYTES
#: Results held for a request in flight (:func:`preload`), by the ``id`` of their bytes:
#: (bytes, module or the error loading raised, holders).
_held: dict[int, tuple[bytes, LoadedModule | HotswapError, int]] = {}
_cache_lock = threading.Lock()
#: Below this many bytes, finding a module's identity to look it up costs next to nothing.
_SMALL = 1 << 20
#: Bytes counted for each instruction: its decoded form, and the Python compiled from it.
_INSTRUCTION_COST = 256


def cost(loaded: LoadedModule) -> int:
    """What ``loaded`` holds, in bytes, roughly: its bytes, the copies of its custom sections,
    and about :data:`_INSTRUCTION_COST` bytes an instruction (measured: 160 to 200)."""
    instructions = sum(len(f.code) for f in loaded.module.functions)
    custom = sum(len(v) for v in loaded.custom.values())
    return len(loaded.data) + custom + _INSTRUCTION_COST * instructions


def set_cache_bytes(limit: int) -> None:
    """Let the cache hold ``limit`` bytes of modules (0: cache nothing)."""
    global _cache_limit  # noqa: PLW0603 - one cache per process
    with _cache_lock:
        _cache_limit = max(0, limit)
        _evict()


def cache_usage() -> tuple[int, int]:
    """(modules, bytes) the cache holds."""
    with _cache_lock:
        return len(_cache), _cache_bytes


def _identity(data: bytes) -> str | None:
    """The identity the cache files ``data`` under; None for bytes that are not a module."""
    if not isinstance(data, bytes):
        return None
    try:
        return module_identity(data)
    except HotswapError:
        return None


def _small(data: object) -> bool:
    """Whether ``data`` is looked up by its bytes (:data:`_by_content`)."""
    return type(data) is bytes and len(data) <= _SMALL


def _large_identity(data: bytes) -> str | None:
    """The identity :func:`_lookup` needs for ``data``: None for bytes it finds by their
    content (exactly ``bytes``, at most :data:`_SMALL` of them), and for what is not a
    module."""
    return None if _small(data) else _identity(data)


def _lookup(data: bytes, identity: str | None) -> LoadedModule | HotswapError | None:
    """A held result or a cached module for exactly these bytes (lock held): by the bytes
    object, by the bytes themselves when there are few of them, else by ``identity``."""
    held = _held.get(id(data))
    if held is not None and held[0] is data:
        return held[1]
    hit = _by_object.get(id(data))
    if hit is None or hit.data is not data:
        if _small(data):
            hit = _by_content.get(data)
        else:
            entry = None if identity is None else _cache.get(identity)
            hit = None if entry is None or entry[0].data != data else entry[0]
    if hit is not None:
        _cache.move_to_end(hit.identity)
    return hit


def _remember(loaded: LoadedModule) -> None:
    """Cache ``loaded`` (lock held), in place of another module of its identity."""
    global _cache_bytes  # noqa: PLW0603
    old = _cache.pop(loaded.identity, None)
    if old is not None:
        _by_object.pop(id(old[0].data), None)
        _by_content.pop(old[0].data, None)
        _cache_bytes -= old[1]
    size = cost(loaded)
    _cache[loaded.identity] = (loaded, size)
    _by_object[id(loaded.data)] = loaded
    if _small(loaded.data):
        _by_content[loaded.data] = loaded
    _cache_bytes += size
    _evict()


def _evict() -> None:
    global _cache_bytes  # noqa: PLW0603
    while _cache and _cache_bytes > _cache_limit:
        _, (gone, size) = _cache.popitem(last=False)
        _by_object.pop(id(gone.data), None)
        _by_content.pop(gone.data, None)
        _cache_bytes -= size


def _load(data: bytes) -> LoadedModule:
    key = bytes(data) if isinstance(data, bytes | bytearray | memoryview) else b""
    module = decode_module(data)
    return LoadedModule(key, module, verify_module(module))


def load_module(data: bytes) -> LoadedModule:
    """Decode, verify and compile module bytes; raises a :class:`HotswapError` subclass
    (:class:`DecodeError`, :class:`VerifyError`) naming what is wrong. Cached by identity
    (and bytes: another module's names are another module), within a budget of bytes
    (:func:`set_cache_bytes`); a module that fails to load is not cached."""
    known = id(data) in _held or id(data) in _by_object
    identity = None if known else _large_identity(data)
    with _cache_lock:
        hit = _lookup(data, identity)
    if isinstance(hit, HotswapError):
        raise hit
    if hit is not None:
        return hit
    loaded = _load(data)
    with _cache_lock:
        _remember(loaded)
    return loaded


def preload(data: bytes, fuel: int = DEFAULT_FUEL) -> None:
    """Load ``data`` for a request in flight, without caching it: until :func:`release`,
    ``load_module`` of these very bytes returns the module, or raises the error loading it
    raised, at once (so that a request whose modules were loaded away from the event loop never
    loads them again there, not even to fail again). Every function is compiled in the form
    runs with ``fuel`` take, and the cyclic garbage collector waits meanwhile: its passes over
    the objects loading makes would hold the GIL, and another thread's event loop, for tens of
    milliseconds at a time (loading makes no cycles)."""
    identity = _large_identity(data)
    with _cache_lock:
        held = _held.get(id(data))
        if held is not None and held[0] is data:
            _held[id(data)] = (data, held[1], held[2] + 1)
            return
        hit = _lookup(data, identity)
    result: LoadedModule | HotswapError
    if isinstance(hit, LoadedModule):
        result = hit
    else:
        try:
            with bulk():
                result = _load(data)
                for index in range(len(result.module.functions)):
                    result.function(index, fuel)
        except HotswapError as e:
            result = e
    with _cache_lock:
        held = _held.get(id(data))
        count = held[2] if held is not None and held[0] is data else 0
        _held[id(data)] = (data, result, count + 1)


def release(data: bytes, keep: bool = False) -> None:
    """The request ``preload`` held ``data`` for is answered: forget what was loaded, unless
    ``keep`` (the module is now in use: it is cached)."""
    with _cache_lock:
        held = _held.get(id(data))
        if held is None or held[0] is not data:
            return
        if held[2] > 1:
            _held[id(data)] = (data, held[1], held[2] - 1)
            return
        del _held[id(data)]
        if keep and isinstance(held[1], LoadedModule) and _lookup(data, None) is None:
            _remember(held[1])


def is_loaded(data: bytes) -> bool:
    """Whether ``load_module(data)`` would return at once: from the cache, or held for a
    request (a module of more than a megabyte counts only as the very bytes loaded; a small
    one of a ``bytes`` subclass is looked up by its identity, exact ``bytes`` by content)."""
    small = isinstance(data, bytes) and len(data) <= _SMALL
    identity = _large_identity(data) if small else None  # a large one: the very bytes only
    with _cache_lock:
        return _lookup(data, identity) is not None


def load(module: Module) -> LoadedModule:
    """Load an in-memory module (encodes it first, so it goes through the same checks)."""
    return load_module(encode_module(module))
