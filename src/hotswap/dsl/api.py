"""The decorators: ``@machine`` and ``@migration`` turn typed Python functions into modules.

A decorated function stays callable as plain Python (it is the test oracle). Compilation is
lazy, on first use of anything compiled (``.module``, ``.run``, the types), so a machine may call
helpers defined further down its file; :func:`compile_source` and :meth:`Machine.compile` force
it. Values cross between Python and the core language through the machine's schemas:
``to_core_input(Incr())``, ``from_core_output((1, 5))`` and so on.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import sys
import types
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, ParamSpec, TypeVar, cast

from hotswap.cam.build import machine_module, migration_module
from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.module import Module, encode_module, module_identity
from hotswap.dsl.compiler import CompiledMachine, CompiledMigration, compile_machine
from hotswap.dsl.compiler import compile_migration as _compile_migration
from hotswap.dsl.source import function_source, register_source
from hotswap.errors import HotswapError, LimitError, SourceError
from hotswap.lang.evaluate import Value, evaluate
from hotswap.lang.types import Type
from hotswap.names.convert import UNSET, machine_runner, migration_runner
from hotswap.names.schema import Schema, core_type, from_core, to_core
from hotswap.names.section import module_schemas

P = ParamSpec("P")
R = TypeVar("R")

_modules = itertools.count(1)


def _plain_function(fn: object, what: str) -> types.FunctionType:
    if not isinstance(fn, types.FunctionType):
        raise SourceError(f"@{what} applies to a plain function, not {fn!r}")
    return fn


class _Compiled(ABC, Generic[P, R]):
    """What machines and migrations share: the plain function, the module and its loading."""

    #: Calls of a machine or migration from another DSL function are inlined.
    dsl_inlinable = True
    __name__: str

    def __init__(self, fn: Callable[P, R], what: str, enclosing: dict[str, object]) -> None:
        self.__wrapped__ = _plain_function(fn, what)
        functools.update_wrapper(self, fn)
        self.name = fn.__name__
        self._signature = inspect.signature(fn)
        self._enclosing = enclosing

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the plain Python function."""
        return cast(R, self.__wrapped__(*args, **kwargs))

    @cached_property
    def _positional(self) -> int:
        """How many arguments taken by position bind as they come (-1: always bind)."""
        params = list(self._signature.parameters.values())
        plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if all(p.kind in plain and p.default is inspect.Parameter.empty for p in params):
            return len(params)
        return -1

    def _arguments(self, args: tuple[object, ...], kwargs: dict[str, object]) -> list[object]:
        try:
            return list(self._signature.bind(*args, **kwargs).arguments.values())
        except TypeError as e:
            raise HotswapError(f"{self.name}: {e}") from None

    @abstractmethod
    def _build(self) -> Module:
        """Build the module from the compiled terms."""

    @cached_property
    def cam_module(self) -> Module:
        """The module (type-checked, optimised, compiled to CAM code)."""
        try:
            return self._build()
        except LimitError as e:  # over a static limit of the bytecode: the source's to fix
            source = function_source(self.__wrapped__)
            msg = f"{self.name} is too big for the bytecode: {e}"
            raise source.file.error(source.node, msg) from e

    @cached_property
    def module(self) -> bytes:
        """The canonical module bytes; custom sections (names) are not part of the identity."""
        return encode_module(self.cam_module)

    @cached_property
    def loaded(self) -> LoadedModule:
        """The module decoded, verified and compiled to the fast path, as a node would."""
        return load_module(self.module)

    @property
    def identity(self) -> str:
        """Hex SHA-256 of the module's semantic sections."""
        return module_identity(self.module)


class Machine(_Compiled[P, R]):
    """A state machine ``step(input, state) -> (state, output)`` with an initial state."""

    def __init__(
        self, fn: Callable[P, R], init: object, enclosing: dict[str, object] | None = None
    ) -> None:
        super().__init__(fn, "machine", enclosing or {})
        self.init = init

    def __repr__(self) -> str:
        return f"<machine {self.name}>"

    @cached_property
    def compiled(self) -> CompiledMachine:
        """The terms and schemas (compiled on first use; a :class:`SourceError` if invalid)."""
        return compile_machine(self.__wrapped__, self.init, self._enclosing)

    def compile(self) -> Machine[P, R]:
        """Compile now, module included (errors surface here rather than on first use)."""
        _ = self.cam_module
        return self

    def _build(self) -> Module:
        c = self.compiled
        types_ = (core_type(c.input), core_type(c.state), core_type(c.output))
        return machine_module(*types_, c.init, c.step, custom={"names": c.names})

    @property
    def schemas(self) -> dict[str, Schema]:
        """The named types by role, as in the names section: input, state and output."""
        c = self.compiled
        return {"input": c.input, "state": c.state, "output": c.output}

    @property
    def input_schema(self) -> Schema:
        return self.compiled.input

    @property
    def state_schema(self) -> Schema:
        return self.compiled.state

    @property
    def output_schema(self) -> Schema:
        return self.compiled.output

    @property
    def input_type(self) -> Type:
        return core_type(self.compiled.input)

    @property
    def state_type(self) -> Type:
        return core_type(self.compiled.state)

    @property
    def output_type(self) -> Type:
        return core_type(self.compiled.output)

    def to_core_input(self, v: object) -> Value:
        return to_core(self.compiled.input, v, "input")

    def to_core_state(self, v: object) -> Value:
        return to_core(self.compiled.state, v, "state")

    def to_core_output(self, v: object) -> Value:
        return to_core(self.compiled.output, v, "output")

    def from_core_input(self, v: Value) -> Any:
        return from_core(self.compiled.input, v)

    def from_core_state(self, v: Value) -> Any:
        return from_core(self.compiled.state, v)

    def from_core_output(self, v: Value) -> Any:
        return from_core(self.compiled.output, v)

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """One step through the compiled module on the fast path; traps raise :class:`Trap`.

        Once compiled, a machine of two plain parameters answers ``.run`` with the compiled
        runner itself (:meth:`_runner`), which takes the same arguments."""
        if kwargs or len(args) != self._positional:
            args = tuple(self._arguments(args, kwargs))  # type: ignore[assignment]
        result: R = self._runner(*args)
        return result

    @cached_property
    def _runner(self) -> Callable[..., Any]:
        """The step in Python values: the conversions compiled around the fast path. With two
        plain parameters it becomes this machine's ``run`` too (in the instance's ``__dict__``,
        where it hides the method): ``run(input, state)`` calls it with nothing in between, and
        any other call goes through :meth:`_rebind`, which binds as the method does."""
        c, loaded = self.compiled, self.loaded
        assert loaded.machine is not None
        step, fuel = loaded.parts(loaded.machine.step)
        if self._positional != 2:
            return machine_runner(c.input, c.state, c.output, step, fuel=fuel)
        runner = machine_runner(c.input, c.state, c.output, step, self._rebind, fuel)
        runner.__doc__ = Machine.run.__doc__
        vars(self)["run"] = runner
        return runner

    def _rebind(
        self, inp: object, state: object, rest: tuple[object, ...], kwargs: dict[str, object]
    ) -> Any:
        """``run`` called otherwise than ``run(input, state)``: bound like the plain function."""
        given = tuple(a for a in (inp, state) if a is not UNSET) + rest
        return self._runner(*self._arguments(given, kwargs))

    def evaluate(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """One step through the reference evaluator on the step term (no CAM involved)."""
        inp, state = self._arguments(args, kwargs)
        core = (self.to_core_input(inp), self.to_core_state(state))
        new_state, output = evaluate(self.compiled.step, core)
        return cast(R, (self.from_core_state(new_state), self.from_core_output(output)))


@dataclass(frozen=True)
class _StateOf:
    """What a migration needs of a machine: its name and its state's schema."""

    name: str
    state: Schema


class CodeMachine:
    """A machine known only by its code (module bytes or a loaded module, such as the running
    code fetched from a node with ``Client.code``): enough to write a migration from it, its
    state by the names its module carries."""

    def __init__(self, code: LoadedModule, name: str | None = None) -> None:
        schemas = module_schemas(code)
        if schemas is None:
            msg = f"module {code.identity[:12]} carries no names: a migration cannot name its state"
            raise SourceError(msg)
        self.loaded = code
        self.identity = code.identity
        self.name = name or f"code {code.identity[:12]}"
        self.schemas = schemas
        self.compiled = _StateOf(self.name, schemas["state"])

    @property
    def state_schema(self) -> Schema:
        return self.schemas["state"]

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _machine_side(m: object) -> Machine[..., Any] | CodeMachine:
    if isinstance(m, Machine | CodeMachine):
        return m
    if isinstance(m, LoadedModule) and m.machine is not None:
        return CodeMachine(m)
    if isinstance(m, bytes):
        try:
            loaded = load_module(m)
        except HotswapError as e:
            raise SourceError(
                f"@migration(old, new): the module given does not load: {e}"
            ) from None
        if loaded.machine is not None:
            return CodeMachine(loaded)
    msg = f"@migration(old, new) takes two machines (old may be a machine's code), not {m!r}"
    raise SourceError(msg)


class Migration(_Compiled[P, R]):
    """A state migration from ``old``'s state to ``new``'s. ``old`` may be a machine's code
    instead (the running code fetched from a node): :class:`CodeMachine`."""

    def __init__(
        self,
        fn: Callable[P, R],
        old: Machine[..., Any] | CodeMachine | LoadedModule | bytes,
        new: Machine[..., Any],
        enclosing: dict[str, object] | None = None,
    ) -> None:
        super().__init__(fn, "migration", enclosing or {})
        self.old = _machine_side(old)
        if not isinstance(new, Machine):
            raise SourceError(f"@migration(old, new) takes two machines, not {new!r} as new")
        self.new = new

    def __repr__(self) -> str:
        return f"<migration {self.name}: {self.old.name} -> {self.new.name}>"

    @cached_property
    def compiled(self) -> CompiledMigration:
        old, new = self.old.compiled, self.new.compiled
        fn, names = self.__wrapped__, (old.name, new.name)
        return _compile_migration(fn, old.state, new.state, *names, self._enclosing)

    def compile(self) -> Migration[P, R]:
        """Compile now, module included (errors surface here rather than on first use)."""
        _ = self.cam_module
        return self

    def _build(self) -> Module:
        c = self.compiled
        old, new = core_type(c.old), core_type(c.new)
        return migration_module(old, new, c.migrate, custom={"names": c.names})

    @property
    def schemas(self) -> dict[str, Schema]:
        """The named types by role, as in the names section: old and new."""
        return {"old": self.compiled.old, "new": self.compiled.new}

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Migrate a state through the compiled module on the fast path."""
        if kwargs or len(args) != self._positional:
            args = tuple(self._arguments(args, kwargs))  # type: ignore[assignment]
        result: R = self._runner(*args)
        return result

    @cached_property
    def _runner(self) -> Callable[..., Any]:
        """The migration in Python values: the conversions compiled around the fast path."""
        c, loaded = self.compiled, self.loaded
        assert loaded.module.migration is not None
        return migration_runner(c.old, c.new, loaded.function(loaded.module.migration))

    def evaluate(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Migrate through the reference evaluator."""
        (old,) = self._arguments(args, kwargs)
        new = evaluate(self.compiled.migrate, to_core(self.compiled.old, old, "state"))
        return cast(R, from_core(self.compiled.new, new))


def _enclosing_locals() -> dict[str, object]:
    """The locals of the function applying the decorator (empty at module level): classes a
    machine names only in string annotations (``from __future__ import annotations``) live
    there and nowhere else."""
    frame = sys._getframe(2)
    if frame.f_locals is frame.f_globals:
        return {}
    return dict(frame.f_locals)


def machine(*, init: object) -> Callable[[Callable[P, R]], Machine[P, R]]:
    """Declare a machine: ``step(input, state) -> tuple[state, output]`` starting in ``init``."""

    def decorate(fn: Callable[P, R]) -> Machine[P, R]:
        return Machine(fn, init, _enclosing_locals())

    return decorate


def migration(
    old: Machine[..., Any] | CodeMachine | LoadedModule | bytes, new: Machine[..., Any]
) -> Callable[[Callable[P, R]], Migration[P, R]]:
    """Declare the state migration of an upgrade from ``old`` to ``new``; ``old`` may be the
    code running on a node (``client.code(identity)``), when no Python source of it is at
    hand: write the migration against the classes ``hotswap types`` generated from it."""

    def decorate(fn: Callable[P, R]) -> Migration[P, R]:
        return Migration(fn, old, new, _enclosing_locals())

    return decorate


Compiled = Machine[..., Any] | Migration[..., Any]


def compile_source(text: str, filename: str | None = None) -> dict[str, Compiled]:
    """Run Python source text defining machines and migrations and compile every one of them.

    The text is executed as a fresh module (``machine``, ``migration`` and ``dataclass`` are
    predefined for brevity); the result maps each top-level name bound to a machine or migration
    to it, in definition order. Any problem, including a syntax error or an exception while
    running the text, is a :class:`SourceError` with its position.
    """
    file = register_source(text, filename)
    try:  # compile() finds more than ast.parse ("wildcard makes remaining patterns unreachable")
        with warnings.catch_warnings():  # "perhaps you missed a comma?" is a mistake, not noise
            warnings.simplefilter("error", SyntaxWarning)
            code = compile(ast.parse(text, filename=file.filename), file.filename, "exec")
    except SyntaxError as e:
        line = e.lineno or 0
        column = max((e.offset or 1) - 1, 0)
        raise SourceError(
            f"invalid syntax: {e.msg}",
            filename=file.filename,
            line=line,
            column=column,
            source_line=file.line(line),
        ) from None
    except (RecursionError, MemoryError):
        msg = "the source is nested too deeply for Python to parse"
        raise SourceError(msg, filename=file.filename) from None
    name = f"hotswap_source_{next(_modules)}"
    module = types.ModuleType(name)
    namespace = vars(module)
    namespace.update(machine=machine, migration=migration, dataclass=dataclasses.dataclass)
    sys.modules[name] = module
    try:
        try:
            exec(code, namespace)
        except SourceError as e:
            if e.line:
                raise
            line = _failing_line(e, file.filename)  # a decorator misused: say where
            raise SourceError(
                e.message, filename=file.filename, line=line, source_line=file.line(line)
            ) from None
        except HotswapError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's module failed to run: report where
            line = _failing_line(e, file.filename)
            raise SourceError(
                f"running the source failed: {type(e).__name__}: {e}",
                filename=file.filename,
                line=line,
                source_line=file.line(line),
            ) from None
        found = {k: v for k, v in namespace.items() if isinstance(v, Machine | Migration)}
        for value in found.values():
            value.compile()
        return found
    finally:
        sys.modules.pop(name, None)


def _failing_line(e: BaseException, filename: str) -> int:
    line = 0
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
