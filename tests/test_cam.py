"""The CAM: compiler, verifier, reference VM and fast path, checked against the evaluator."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.cam.codegen import _out_of_range, compile_code, compile_metered, generate_source
from hotswap.cam.compiler import compile_term
from hotswap.cam.instructions import Instr, Opcode
from hotswap.cam.limits import MAX_NESTING
from hotswap.cam.verify import verify_code
from hotswap.cam.vm import VM
from hotswap.errors import Trap, VerifyError
from hotswap.examples import handbuilt
from hotswap.lang.ints import INT_MAX, INT_MIN, SMALL_INT
from hotswap.lang.terms import (
    DISTL,
    FST,
    ID,
    SND,
    Case,
    Fanout,
    Lit,
    Op,
    Prim,
    Term,
    compose,
    match_on,
)
from hotswap.lang.types import BOOL, INT, UNIT, Prod
from hotswap.names.convert import _INT_CHECK
from oracle import all_paths_agree
from strategies import typed_terms


@settings(max_examples=250, deadline=None)
@given(typed_terms())
def test_every_executor_agrees_on_generated_terms(case: tuple) -> None:  # type: ignore[type-arg]
    """Evaluator, optimised term, VM and fast path give the same result or the same trap."""
    term, dom, cod, value = case
    all_paths_agree(term, dom, cod, value)


def test_compiler_fuses_match_into_branch() -> None:
    """<id, e> ; distl ; [f | g] compiles to PUSH [e] BRANCH, not PUSH .. CONS DISTL CASE."""
    term = compose(Fanout(ID, SND), DISTL, Case(FST, FST))
    ops = [i.op for i in compile_term(term)]
    assert ops == [Opcode.PUSH, Opcode.SND, Opcode.BRANCH, Opcode.FST, Opcode.JMP, Opcode.FST]


COUNTER_CASES = [((0, ()), 0, (1, (0, ()))), ((1, ()), 7, (7, (1, 7))), ((0, ()), -1, (0, (0, ())))]


@pytest.mark.parametrize(("inp", "state", "expected"), COUNTER_CASES)
def test_handbuilt_counter_on_every_path(inp: object, state: int, expected: object) -> None:
    """The seed's counter gives the same answers on the evaluator, VM and fast path."""
    dom = Prod(handbuilt.COUNTER_INPUT, INT)
    cod = Prod(INT, handbuilt.COUNTER_OUTPUT)
    assert all_paths_agree(handbuilt.COUNTER_STEP, dom, cod, (inp, state)) == ("ok", expected)
    assert handbuilt.counter_py((inp, state)) == expected


@settings(max_examples=300)
@given(
    st.one_of(
        st.tuples(st.just(0), st.integers(-(2**63), INT_MAX)),
        st.tuples(st.just(1), st.tuples(st.just(0), st.integers(-(2**63), INT_MAX))),
        st.just((1, (1, ()))),
    ),
    st.integers(-(2**63), INT_MAX),
)
def test_handbuilt_bank_on_every_path(inp: object, balance: int) -> None:
    """The bank account agrees with its hand-written Python function, traps included."""
    dom = Prod(handbuilt.BANK_INPUT, INT)
    cod = Prod(INT, handbuilt.BANK_OUTPUT)
    result = all_paths_agree(handbuilt.BANK_STEP, dom, cod, (inp, balance))
    try:
        expected = ("ok", handbuilt.bank_py((inp, balance)))
    except OverflowError:
        assert result[0] == "trap"
    else:
        assert result == expected


def test_vm_statistics_report_steps_and_stack() -> None:
    """statistics() is a snapshot of the last run, within the verifier's bounds."""
    code = compile_term(handbuilt.COUNTER_STEP)
    info = verify_code(code, Prod(BOOL, INT), Prod(INT, handbuilt.COUNTER_OUTPUT))
    vm = VM(code)
    vm.run(((0, ()), 1))
    stats = vm.statistics()
    assert 0 < stats.steps <= info.max_steps <= len(code)
    assert 0 < stats.max_stack <= info.max_stack
    vm.run(((1, ()), 1))
    assert vm.statistics().steps < stats.steps  # the count arm is shorter


def _i(op: Opcode, arg: object = None) -> Instr:
    return Instr(op, arg)  # type: ignore[arg-type]


REJECTED = [
    ([_i(Opcode.FST)], INT, INT, "expected a product"),
    ([_i(Opcode.SWAP)], INT, INT, "stack underflow"),
    ([_i(Opcode.PUSH)], INT, INT, "1 values left on the stack"),
    ([_i(Opcode.LIT, 2**63)], UNIT, INT, "not a signed 64-bit integer"),
    ([_i(Opcode.PRIM, Op.ADD)], Prod(INT, UNIT), INT, "add expects"),
    ([_i(Opcode.CASE, 1), _i(Opcode.JMP, 0)], BOOL, INT, "ends with a Unit, expected Int"),
    ([_i(Opcode.CASE, 5), _i(Opcode.JMP, 0)], BOOL, UNIT, "leaves its enclosing region"),
    ([_i(Opcode.CASE, 0)], BOOL, UNIT, "leaves its enclosing region"),
    ([_i(Opcode.CASE, 2), _i(Opcode.UNIT), _i(Opcode.LIT, 1)], BOOL, UNIT, "does not end with JMP"),
    ([_i(Opcode.JMP, 0)], INT, INT, "only allowed as the last instruction"),
    (
        [_i(Opcode.CASE, 2), _i(Opcode.LIT, 1), _i(Opcode.JMP, 0)],
        BOOL,
        INT,
        "disagree",
    ),
    (
        [_i(Opcode.PUSH), _i(Opcode.CASE, 2), _i(Opcode.SWAP), _i(Opcode.JMP, 0), _i(Opcode.CONS)],
        BOOL,
        Prod(BOOL, UNIT),
        "stack underflow",
    ),
    (
        [_i(Opcode.CASE, 2), _i(Opcode.PUSH), _i(Opcode.JMP, 1), _i(Opcode.PUSH)],
        BOOL,
        UNIT,
        "does not restore the stack",
    ),
    ([_i(Opcode.CASE, 2), _i(Opcode.UNIT), _i(Opcode.JMP, 3)], BOOL, UNIT, "leaves the enclosing"),
    ([_i(Opcode.DISTL)], Prod(INT, INT), INT, "expected E x (A + B)"),
]


@pytest.mark.parametrize(("code", "dom", "cod", "message"), REJECTED)
def test_verifier_rejects_with_a_reason(
    code: list[Instr], dom: object, cod: object, message: str
) -> None:
    """Each ill-formed program is rejected with a message naming the problem."""
    with pytest.raises(VerifyError, match=re.escape(message)):
        verify_code(tuple(code), dom, cod)  # type: ignore[arg-type]


def test_verifier_caps_branch_nesting() -> None:
    """Nesting deeper than MAX_NESTING is rejected before code generation sees it."""

    def nested(depth: int) -> Term:
        term = ID
        negative = compose(Fanout(ID, Lit(0)), Prim(Op.LT))
        for _ in range(depth):
            term = match_on(negative, compose(FST, term), FST)
        return term

    verify_code(compile_term(nested(MAX_NESTING)), INT, INT)
    with pytest.raises(VerifyError, match="nested deeper"):
        verify_code(compile_term(nested(MAX_NESTING + 1)), INT, INT)
    fn = compile_code(compile_term(nested(MAX_NESTING)))
    assert fn(5) == 5


def test_sharing_does_not_blow_up_generated_source() -> None:
    """60 rounds of PUSH CONS build a value of 2^60 leaves; the source stays linear."""
    code = tuple([_i(Opcode.PUSH), _i(Opcode.CONS)] * 40)
    cod = INT
    for _ in range(40):
        cod = Prod(cod, cod)
    with pytest.raises(VerifyError, match="nodes"):
        verify_code(code, INT, cod)  # the type itself exceeds the size cap
    small = tuple([_i(Opcode.PUSH), _i(Opcode.CONS)] * 12)
    source = generate_source(small)
    assert len(source) < 4000
    cod = INT
    for _ in range(12):
        cod = Prod(cod, cod)
    verify_code(small, INT, cod)
    result = compile_code(small)(5)
    assert VM(small).run(5) == result


def test_generated_code_has_no_builtins() -> None:
    """The fast path runs with empty builtins: only our trap helper is reachable."""
    code = compile_term(compose(Fanout(ID, Lit(0)), Prim(Op.FLOORDIV)))
    source = generate_source(code)
    assert "import" not in source and "__" not in source
    fn = compile_metered(code)
    assert fn.__globals__["__builtins__"] == {}
    with pytest.raises(Trap, match="division by zero in floordiv"):
        fn(1, 100)


def test_long_chains_of_not_stay_within_pythons_parser_limits() -> None:
    """300 NOTs verify, so they must compile: long conditions are bound to variables."""
    code = tuple([_i(Opcode.PRIM, Op.NOT)] * 301)
    verify_code(code, BOOL, BOOL)
    assert compile_code(code)((0, ())) == VM(code).run((0, ())) == (1, ())


_EDGES = [
    0,
    1,
    -1,
    SMALL_INT,
    SMALL_INT + 1,
    -SMALL_INT,
    -SMALL_INT - 1,
    2**31,
    -(2**31),
    INT_MAX,
    INT_MAX + 1,
    INT_MIN,
    INT_MIN - 1,
    2**64,
    -(2**64),
    10**30,
    -(10**30),
]


@pytest.mark.parametrize("x", _EDGES)
def test_the_generated_range_checks_are_the_core_range(x: int) -> None:
    """The fast path's and the compiled conversions' range checks, which ask ``SMALL_INT``
    first, say out of range exactly where ``INT_MIN <= x <= INT_MAX`` does not hold."""
    outside = not INT_MIN <= x <= INT_MAX
    assert eval(_out_of_range("x"), {"x": x}) is outside
    assert eval(_INT_CHECK.format(x="x"), {"x": x}) is outside
    assert eval(_INT_CHECK.format(x="x"), {"x": float(x)}) is True
