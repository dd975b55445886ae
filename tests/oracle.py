"""The oracle helper: run a term through every path and demand one answer."""

from __future__ import annotations

from hotswap.cam.build import build_function
from hotswap.cam.codegen import compile_code, generate_source
from hotswap.cam.disasm import disassemble_code
from hotswap.cam.vm import VM
from hotswap.errors import Trap
from hotswap.lang.evaluate import Value, evaluate
from hotswap.lang.optimise import optimise
from hotswap.lang.terms import Term
from hotswap.lang.types import Type

Outcome = tuple[str, object]


def outcome(run: object, value: Value) -> Outcome:
    """``("ok", result)`` or ``("trap", trap)``: traps are results too."""
    assert callable(run)
    try:
        return ("ok", run(value))
    except Trap as t:
        return ("trap", t)


def all_paths_agree(term: Term, dom: Type, cod: Type, value: Value) -> Outcome:
    """Reference evaluator, optimised term, VM and fast path give the same outcome."""
    expected = outcome(lambda v: evaluate(term, v), value)
    optimised = outcome(lambda v: evaluate(optimise(term), v), value)
    function = build_function(term, dom, cod)
    vm = outcome(VM(function.code).run, value)
    fast = outcome(compile_code(function.code), value)
    listing = disassemble_code(function.code)
    source = generate_source(function.code)
    assert optimised == expected, f"optimiser changed {term}"
    assert vm == expected, f"VM disagrees on {term}\n{listing}"
    assert fast == expected, f"fast path disagrees on {term}\n{listing}\n{source}"
    return expected
