"""Build modules from terms: type-check, optimise, compile, verify."""

from __future__ import annotations

from collections.abc import Mapping

from hotswap.cam.compiler import compile_term
from hotswap.cam.module import Function, MachineSig, Module
from hotswap.cam.verify import verify_code
from hotswap.errors import InternalError, LimitError, VerifyError
from hotswap.lang.check import check
from hotswap.lang.optimise import optimise
from hotswap.lang.terms import Term
from hotswap.lang.types import UNIT, Prod, Type


def build_function(term: Term, dom: Type, cod: Type) -> Function:
    """Check ``term : dom -> cod`` (:class:`TermTypeError` if not), optimise and compile it."""
    check(term, dom, cod)
    code = compile_term(optimise(term))
    try:
        verify_code(code, dom, cod)
    except LimitError:  # a well-typed term too big for the bytecode: the author's to shrink
        raise
    except VerifyError as e:  # otherwise the compiler's output for a well-typed term verifies
        raise InternalError(f"compiled code fails verification: {e}") from e
    return Function(dom, cod, code)


def _custom(custom: Mapping[str, bytes]) -> tuple[tuple[str, bytes], ...]:
    return tuple(sorted((name, bytes(data)) for name, data in custom.items()))


def machine_module(
    input: Type,
    state: Type,
    output: Type,
    init: Term,
    step: Term,
    *,
    custom: Mapping[str, bytes] | None = None,
) -> Module:
    """A machine module: ``init : Unit -> state``, ``step : input x state -> state x output``."""
    functions = (
        build_function(init, UNIT, state),
        build_function(step, Prod(input, state), Prod(state, output)),
    )
    return Module(functions, MachineSig(input, state, output, 0, 1), None, _custom(custom or {}))


def migration_module(
    old_state: Type, new_state: Type, migrate: Term, *, custom: Mapping[str, bytes] | None = None
) -> Module:
    """A migration module: ``migrate : old_state -> new_state``."""
    function = build_function(migrate, old_state, new_state)
    return Module((function,), None, 0, _custom(custom or {}))
