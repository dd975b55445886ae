"""Entry points of the DSL compiler: a function, a machine or a migration to checked terms.

Every term the compiler returns is type-checked against the signature it was compiled for; a
failure there is a bug in the compiler (:class:`InternalError`), never the user's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import FunctionType

from hotswap.cam.limits import MAX_FOLD_NESTING, MAX_NESTING
from hotswap.dsl.combinators import case_nesting, fold_nesting
from hotswap.dsl.dispatch import FunctionCompiler
from hotswap.dsl.functions import DslFunction, Session, Signature
from hotswap.errors import InternalError, TermTypeError, ValueTypeError
from hotswap.lang.check import check
from hotswap.lang.evaluate import Value
from hotswap.lang.optimise import optimise
from hotswap.lang.terms import Term
from hotswap.lang.types import Type
from hotswap.lang.values import constant
from hotswap.names.schema import Schema, TupleSchema, core_type, describe, product_type, to_core
from hotswap.names.section import encode_names


@dataclass(frozen=True, slots=True)
class CompiledFunction:
    """``term : domain -> codomain``; the domain is the parameters' right-nested tuple."""

    function: DslFunction
    signature: Signature
    term: Term
    domain: Type
    codomain: Type


@dataclass(frozen=True, slots=True)
class CompiledMachine:
    """``init : Unit -> state`` and ``step : input x state -> state x output``."""

    name: str
    input: Schema
    state: Schema
    output: Schema
    init_value: Value
    init: Term
    step: Term
    names: bytes


@dataclass(frozen=True, slots=True)
class CompiledMigration:
    """``migrate : old -> new``."""

    name: str
    old: Schema
    new: Schema
    migrate: Term
    names: bytes


def compile_function(fn: FunctionType, session: Session | None = None) -> CompiledFunction:
    """Compile one DSL function (helpers it calls are inlined)."""
    session = session if session is not None else Session()
    function = session.function(fn)
    signature = function.signature
    domain = product_type([core_type(s) for _, s in signature.params])
    codomain = core_type(signature.returns)
    try:
        term = FunctionCompiler(session, function).compile()
        session.check_reachable()
        check(term, domain, codomain)
    except RecursionError:
        msg = f"{function.name} is nested too deeply to compile: split it into helpers"
        raise function.error(function.node, msg) from None
    except TermTypeError as e:
        raise InternalError(f"the DSL compiled {function.name} to an ill-typed term: {e}") from e
    optimised = optimise(term)
    loops = fold_nesting(optimised)
    if loops > MAX_FOLD_NESTING:
        msg = (
            f"{function.name} nests its loops {loops} deep, more than the {MAX_FOLD_NESTING} "
            "the bytecode allows (each for, comprehension, sum, min, max, any, all, join and "
            "sorted(..., reverse=True) inside another counts, also in the helpers it calls): "
            "compute an inner loop's result in a loop of its own first"
        )
        raise function.error(function.node, msg)
    nesting = case_nesting(optimised)
    if nesting > MAX_NESTING:
        msg = (
            f"{function.name} nests its branches {nesting} deep, more than the {MAX_NESTING} "
            "the bytecode allows (each if, elif, case and guard inside another counts): "
            "flatten it, e.g. split a long elif chain in two with an if in the middle"
        )
        raise function.error(function.node, msg)
    return CompiledFunction(function, signature, term, domain, codomain)


def compile_machine(
    fn: FunctionType, init: object, enclosing: Mapping[str, object] | None = None
) -> CompiledMachine:
    """Compile a machine's step ``(input, state) -> tuple[state, output]`` and its initial state.

    ``enclosing`` holds the locals of the function that defined ``fn``, if any.
    """
    session = Session({fn: enclosing or {}})
    function = session.function(fn)
    node = function.node
    params = function.signature.params
    if len(params) != 2:
        msg = f"a machine's step takes (input, state), but {function.name} takes {len(params)}"
        raise function.error(node, msg)
    (_, input_schema), (_, state) = params
    returns = function.signature.returns
    if not (isinstance(returns, TupleSchema) and len(returns.items) == 2):
        msg = f"a machine's step returns tuple[state, output], not {describe(returns)}"
        raise function.error(node.returns, msg)
    if returns.items[0] != state:
        msg = (
            f"the step returns the state as {describe(returns.items[0])}, "
            f"but its state parameter is {describe(state)}"
        )
        raise function.error(node.returns, msg)
    output = returns.items[1]
    try:
        init_value = to_core(state, init, "init")
    except ValueTypeError as e:
        where = node.decorator_list[0] if node.decorator_list else node
        msg = f"init does not fit the state type {describe(state)}: {e}"
        raise function.error(where, msg) from None
    step = compile_function(fn, session).term
    names = encode_names({"input": input_schema, "state": state, "output": output})
    init_term = constant(init_value, core_type(state))
    return CompiledMachine(
        function.name, input_schema, state, output, init_value, init_term, step, names
    )


def compile_migration(
    fn: FunctionType,
    old: Schema,
    new: Schema,
    old_name: str = "the old machine",
    new_name: str = "the new machine",
    enclosing: Mapping[str, object] | None = None,
) -> CompiledMigration:
    """Compile a migration ``(old_state) -> new_state`` between the machines named."""
    session = Session({fn: enclosing or {}})
    function = session.function(fn)
    node = function.node
    params = function.signature.params
    if len(params) != 1:
        msg = f"a migration takes the old state only, but {function.name} takes {len(params)}"
        raise function.error(node, msg)
    if params[0][1] != old:
        taken = describe(params[0][1])
        msg = f"the migration takes {taken}, but {old_name} has state {describe(old)}"
        raise function.error(node.args.args[0], msg)
    if function.signature.returns != new:
        returns = describe(function.signature.returns)
        msg = f"the migration returns {returns}, but {new_name} has state {describe(new)}"
        raise function.error(node.returns, msg)
    term = compile_function(fn, session).term
    names = encode_names({"old": old, "new": new})
    return CompiledMigration(function.name, old, new, term, names)
