"""DSL functions: a Python function's definition, scope and signature, read for compilation.

A *DSL function* is any plain, fully annotated Python function whose source is available: a
machine's step, a migration, or a helper they call (helpers are inlined at each call). Names in
its body resolve as in Python: locals, then the closure, the module's globals and the builtins;
classes named only in annotations (say, dataclasses local to a test function) are found through
the function's evaluated annotations.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import FunctionType
from typing import TYPE_CHECKING, Any

from hotswap.cam.limits import MAX_TYPE_DEPTH
from hotswap.dsl.annotations import MISSING, schema_of_annotation
from hotswap.dsl.source import FunctionSource, SourceFile, function_source
from hotswap.errors import SourceError
from hotswap.lang.terms import Term
from hotswap.lang.types import type_depth
from hotswap.names.schema import Schema, SchemaProblem, core_type, describe

if TYPE_CHECKING:
    from hotswap.dsl.mutation import Aliasing

#: Types in a machine's annotations may nest this deep: the bytecode allows MAX_TYPE_DEPTH and
#: the compiler needs a few levels for the context around them.
MAX_SCHEMA_DEPTH = MAX_TYPE_DEPTH - 8


@dataclass(frozen=True, slots=True)
class Signature:
    params: tuple[tuple[str, Schema], ...]
    returns: Schema


@dataclass(eq=False)
class DslFunction:
    """One function's definition, scope and signature."""

    fn: FunctionType
    source: FunctionSource
    #: Locals of the scope the function was defined in, when that was a function (names used
    #: only in string annotations are not captured by the closure).
    enclosing: Mapping[str, object] = field(default_factory=dict)
    _extras: dict[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def node(self) -> ast.FunctionDef:
        return self.source.node

    @property
    def file(self) -> SourceFile:
        return self.source.file

    def error(self, node: ast.AST | None, message: str) -> SourceError:
        return self.file.error(node, message)

    def lookup(self, name: str) -> object:
        """A non-local name's value, or ``MISSING``."""
        code = self.fn.__code__
        if name in code.co_freevars and self.fn.__closure__ is not None:
            cell = self.fn.__closure__[code.co_freevars.index(name)]
            try:
                return cell.cell_contents
            except ValueError:  # an empty cell: the enclosing variable is not assigned yet
                return MISSING
        if name in self.enclosing:
            return self.enclosing[name]
        if name in self.fn.__globals__:
            return self.fn.__globals__[name]
        if not self._extras:
            self._extras.update(_annotation_classes(self.fn))
        if name in self._extras:
            return self._extras[name]
        return getattr(builtins, name, MISSING)

    def schema(self, annotation: ast.expr) -> Schema:
        """The schema an annotation in this function denotes, or a :class:`SourceError` there."""
        try:
            schema = schema_of_annotation(annotation, self.lookup)
        except SchemaProblem as e:
            where = e.node if isinstance(e.node, ast.AST) else annotation
            raise self.error(where, str(e)) from None
        height = type_depth(core_type(schema))
        if height > MAX_SCHEMA_DEPTH:
            msg = (
                f"{describe(schema)} nests {height} deep as a core type; machines allow "
                f"{MAX_SCHEMA_DEPTH} (group the cases of long unions into nested unions)"
            )
            raise self.error(annotation, msg)
        return schema

    @cached_property
    def signature(self) -> Signature:
        args = self.node.args
        extra = args.posonlyargs or args.vararg or args.kwonlyargs or args.kwarg or args.defaults
        if extra:
            msg = f"{self.name} may only have plain positional parameters, without defaults"
            raise self.error(self.node, msg)
        params = []
        for arg in args.args:
            if arg.annotation is None:
                raise self.error(arg, f"parameter {arg.arg} needs a type annotation")
            params.append((arg.arg, self.schema(arg.annotation)))
        if self.node.returns is None:
            raise self.error(self.node, f"{self.name} needs a return type annotation")
        return Signature(tuple(params), self.schema(self.node.returns))

    @cached_property
    def declarations(self) -> dict[str, Schema]:
        """Declared types of locals, function-wide as in Python's typing: the parameters and
        every ``x: T`` in the body. Assignments to a declared name are checked against it."""
        declared = dict(self.signature.params)
        for node in ast.walk(self.node):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                name, schema = node.target.id, self.schema(node.annotation)
                if declared.setdefault(name, schema) != schema:
                    msg = f"{name} is declared twice, with different types"
                    raise self.error(node, msg)
        return declared

    @cached_property
    def local_names(self) -> frozenset[str]:
        """Every name the function binds: parameters, assignment targets and pattern captures."""
        names = {a.arg for a in self.node.args.args}
        for node in ast.walk(self.node):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name is not None:
                names.add(node.name)
        return frozenset(names)

    @cached_property
    def aliasing(self) -> Aliasing:
        """Where a list or dict of this function may be changed in place
        (:mod:`hotswap.dsl.mutation`)."""
        from hotswap.dsl.mutation import Aliasing  # noqa: PLC0415 - mutation builds on us

        return Aliasing(self.node, self)

    def body(self) -> list[ast.stmt]:
        """The body without its docstring."""
        match self.node.body:
            case [ast.Expr(value=ast.Constant(value=str())), *rest] if rest:
                return rest
            case body:
                return body


def _annotation_classes(fn: FunctionType) -> dict[str, object]:
    """Classes reachable from ``fn``'s evaluated annotations (and their dataclass fields)."""
    found: dict[str, object] = {"<scanned>": True}
    stack: list[Any] = list(getattr(fn, "__annotations__", {}).values())
    seen: set[int] = set()
    while stack and len(seen) < 1000:
        tp = stack.pop()
        if id(tp) in seen or isinstance(tp, str):
            continue
        seen.add(id(tp))
        if isinstance(tp, type):
            found.setdefault(tp.__name__, tp)
            if dataclasses.is_dataclass(tp):
                stack.extend(f.type for f in dataclasses.fields(tp))
        stack.extend(typing.get_args(tp))
    return found


def dsl_function(obj: object) -> FunctionType | None:
    """The plain function behind ``obj`` (a function, or a machine or migration wrapping one)."""
    if isinstance(obj, FunctionType):
        return obj
    if not getattr(type(obj), "dsl_inlinable", False):
        return None
    wrapped = getattr(obj, "__wrapped__", None)
    return wrapped if isinstance(wrapped, FunctionType) else None


#: Branches copy the code after them (early returns) and decision trees copy case bodies; a
#: compilation that makes more copies than this is rejected rather than left to blow up.
MAX_COPIES = 10_000


@dataclass(eq=False)
class Session:
    """One compilation: function definitions and compiled helpers are read once, the stack of
    functions being compiled detects recursion, and ``copies`` bounds code duplication."""

    enclosing: dict[FunctionType, Mapping[str, object]] = field(default_factory=dict)
    functions: dict[FunctionType, DslFunction] = field(default_factory=dict)
    compiled: dict[FunctionType, Term] = field(default_factory=dict)
    stack: list[FunctionType] = field(default_factory=list)
    copies: int = 0
    #: Each match compiled (once per copy), with its function and the cases some copy reaches.
    reached: dict[ast.Match, tuple[DslFunction, set[int]]] = field(default_factory=dict)

    def copy(self, function: DslFunction, node: ast.AST) -> None:
        """Count one copy of a block of code; :class:`SourceError` past :data:`MAX_COPIES`."""
        self.copies += 1
        if self.copies > MAX_COPIES:
            msg = "this code is copied into too many branches to compile: split it into helpers"
            raise function.error(node, msg)

    def reach(self, function: DslFunction, node: ast.Match, cases: set[int]) -> None:
        """Record the cases of ``node`` one copy of it reaches."""
        self.reached.setdefault(node, (function, set()))[1].update(cases)

    def check_reachable(self) -> None:
        """A :class:`SourceError` at the first case that no copy of its match reaches."""
        for node, (function, used) in self.reached.items():
            for index, case in enumerate(node.cases):
                if index not in used:
                    msg = (
                        "this case is unreachable: the cases above it (or an enclosing match) "
                        "leave nothing for it to match"
                    )
                    raise function.error(case.pattern, msg)

    def function(self, fn: FunctionType) -> DslFunction:
        if fn not in self.functions:
            enclosing = self.enclosing.get(fn, {})
            self.functions[fn] = DslFunction(fn, function_source(fn), enclosing)
        return self.functions[fn]
