"""Format 2's core, proved by generated terms: Str, List, Map, folds, fail and fuel.

For every generated well-typed term over the new types and every input value, the reference
evaluator, the optimised term, the VM and the fast path give one outcome (a result, maps in
the same order, or the same trap), and the VM and the fast path agree exactly on the fuel each
run uses and on the budget below which it runs out.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from hotswap.cam.build import build_function
from hotswap.cam.codegen import Metered, OutOfFuel, compile_metered, generate_source, out_of_fuel
from hotswap.cam.disasm import disassemble_code
from hotswap.cam.instructions import Code, Instr, Opcode
from hotswap.cam.limits import MAX_FOLD_NESTING
from hotswap.cam.values import decode_value, encode_value, value_encoder
from hotswap.cam.verify import verify_code
from hotswap.cam.vm import VM
from hotswap.errors import Trap, VerifyError
from hotswap.lang.check import infer
from hotswap.lang.evaluate import Value, evaluate
from hotswap.lang.optimise import optimise
from hotswap.lang.persistent import EMPTY_LIST, make_list
from hotswap.lang.terms import (
    DISTL,
    FST,
    ID,
    TERMINAL,
    Case,
    Fail,
    Fanout,
    Inl,
    Lit,
    Op,
    Prim,
    StrLit,
    Term,
    compose,
)
from hotswap.lang.types import BOOL, INT, STR, UNIT, ListT, MapT, Prod, Sum, Type
from hotswap.lang.values import check_value
from strategies import exact, texts, typed_data_terms

#: A budget far above what generated terms use (their lists are short); a run that still runs
#: out of it is a huge range or a deep nest of folds, and is only compared between executors.
AMPLE = 200_000

Run = tuple[str, object, int]


def _trap(t: Trap) -> Run:
    return ("trap", (t.kind, str(t)), 0)


def run_vm(vm: VM, value: Value, fuel: int) -> Run:
    """``("ok", exact result, fuel used)`` or ``("trap", (kind, message), 0)``."""
    try:
        result = vm.run(value, fuel)
    except Trap as t:
        return _trap(t)
    return ("ok", exact(result), vm.statistics().fuel)


def run_fast(fn: Metered, value: Value, fuel: int) -> Run:
    try:
        result, left = fn(value, fuel)
    except OutOfFuel:
        return _trap(out_of_fuel(fuel))
    except Trap as t:
        return _trap(t)
    return ("ok", exact(result), fuel - left)


def run_reference(term: Term, value: Value) -> Run:
    try:
        return ("ok", exact(evaluate(term, value)), 0)
    except Trap as t:
        return _trap(t)


def _starved(run: Run) -> bool:
    return run[0] == "trap" and run[1][0] == "out_of_fuel"  # type: ignore[index]


def threshold(vm: VM, value: Value, ample: Run) -> int:
    """The least budget under which the VM does not run out of fuel (``ample`` is its outcome
    under :data:`AMPLE`): the fuel used, or for a trap the fuel used up to and with the
    trapping instruction (found by search: a run that has B units does exactly what a run with
    more does, as long as it does not run out)."""
    if ample[0] == "ok":
        return ample[2]
    high = 1
    while _starved(run_vm(vm, value, high)):
        high *= 2
    low = high // 2  # starved at low (or low is 0), not at high
    while high - low > 1:
        mid = (low + high) // 2
        if _starved(run_vm(vm, value, mid)):
            low = mid
        else:
            high = mid
    return high


def _explain(term: Term, code: Code) -> str:
    return f"term {term}\n{disassemble_code(code)}\n{generate_source(code)}"


def check_budgets(
    term: Term, code: Code, value: Value, ample: Run, rng: st.DataObject
) -> tuple[int, list[int]]:
    """Below the threshold both executors run out of fuel, at and above it both do exactly what
    they do under ample fuel; the fast path's fuel left matches the VM's fuel used."""
    vm, fast = VM(code), compile_metered(code)
    need = threshold(vm, value, ample)
    budgets = {0, need, need + 1, max(0, need - 1), AMPLE}
    budgets.add(rng.draw(st.integers(0, max(0, need - 1)), label="below"))
    budgets.add(rng.draw(st.integers(need, AMPLE), label="above"))
    for budget in sorted(budgets):
        on_vm = run_vm(vm, value, budget)
        on_fast = run_fast(fast, value, budget)
        assert on_fast == on_vm, f"budget {budget}: {on_fast} vs {on_vm}\n{_explain(term, code)}"
        if budget < need:
            assert on_vm == _trap(out_of_fuel(budget)), f"budget {budget} < {need}: {on_vm}"
        else:
            assert on_vm == ample, f"budget {budget} >= {need}: {on_vm}, not {ample}"
    return need, sorted(budgets)


def all_agree(term: Term, dom: Type, cod: Type, value: Value, rng: st.DataObject) -> Run:
    """Reference, optimised term, VM and fast path agree; fuel agrees at every budget."""
    code = build_function(term, dom, cod).code
    vm, fast = VM(code), compile_metered(code)
    ample = run_vm(vm, value, AMPLE)
    assert run_fast(fast, value, AMPLE) == ample, _explain(term, code)
    if _starved(ample):  # the reference has no fuel: only the executors can be compared
        event("out of fuel under ample fuel")
        assert run_fast(fast, value, AMPLE // 7) == run_vm(vm, value, AMPLE // 7)
        return ample
    expected = run_reference(term, value)
    event(f"outcome: {expected[1][0] if expected[0] == 'trap' else 'ok'}")  # type: ignore[index]
    assert run_reference(optimise(term), value) == expected, f"optimiser changed {term}"
    assert ample[:2] == expected[:2], f"VM {ample} vs reference {expected}\n{_explain(term, code)}"
    if expected[0] == "ok":  # a result is a value of the codomain, which the codec stores
        result = evaluate(term, value)
        check_value(result, cod, "result")
        raw = value_encoder(cod)(result)
        assert raw == encode_value(result, cod)
        assert exact(decode_value(raw, cod)) == expected[1]
    check_budgets(term, code, value, ample, rng)
    return ample


@settings(max_examples=120, deadline=None)
@given(typed_data_terms(), st.data())
def test_every_executor_agrees_on_generated_collection_terms(
    case: tuple[Term, Type, Type, Value], rng: st.DataObject
) -> None:
    """Evaluator, optimised term, VM and fast path: one result (maps in one order) or one trap;
    VM and fast path use the same fuel and run out of it below the same budget."""
    term, dom, cod, value = case
    assert infer(term, dom) is cod
    all_agree(term, dom, cod, value, rng)


@settings(max_examples=30, deadline=None)
@given(typed_data_terms(depth=4))
def test_generated_code_verifies_with_folds_unbounded(case: tuple[Term, Type, Type, Value]) -> None:
    """The compiled code of every generated term verifies; it is bounded exactly when it holds
    no fold, and a bounded run never takes more steps than the verifier's bound."""
    term, dom, cod, value = case
    code = build_function(term, dom, cod).code
    info = verify_code(code, dom, cod)
    has_fold = any(i.op.name == "FOLD" for i in code)
    assert info.bounded is not has_fold
    vm = VM(code)
    try:
        vm.run(value, AMPLE)
    except Trap:
        return
    if info.bounded:
        assert vm.statistics().steps <= info.max_steps


# --- the verifier on format 2 code ----------------------------------------------------------


def _i(op: Opcode, arg: object = None) -> Instr:
    return Instr(op, arg)  # type: ignore[arg-type]


_FOLDABLE = Prod(UNIT, Prod(ListT(INT), INT))  # E x (List A x S) with A = S = Int
_BODY_OK = [_i(Opcode.SND), _i(Opcode.SND), _i(Opcode.INL, UNIT)]  # (e, (x, s)) -> inl s

REJECTED = [
    ([_i(Opcode.FOLD, 1), _i(Opcode.INL, UNIT), _i(Opcode.NEXT)], INT, INT, "FOLD expects"),
    ([_i(Opcode.NEXT)], BOOL, BOOL, "NEXT is only allowed at the end of a fold's body"),
    (
        [_i(Opcode.FOLD, 2), _i(Opcode.SND), _i(Opcode.SND), _i(Opcode.NEXT)],
        _FOLDABLE,
        Sum(INT, UNIT),
        "gives Int, not Int + R",
    ),
    (
        [_i(Opcode.FOLD, 3), _i(Opcode.SND), _i(Opcode.SND), _i(Opcode.INL, UNIT)],
        _FOLDABLE,
        Sum(INT, UNIT),
        "lies outside its enclosing region",
    ),
    (
        [_i(Opcode.FOLD, 2), *_BODY_OK, _i(Opcode.NEXT)],
        _FOLDABLE,
        Sum(INT, UNIT),
        "must end with NEXT here",
    ),
    (
        [_i(Opcode.FOLD, 4), _i(Opcode.PUSH), *_BODY_OK, _i(Opcode.NEXT)],
        _FOLDABLE,
        Sum(INT, UNIT),
        "does not restore the stack",
    ),
    (
        [_i(Opcode.PUSH), _i(Opcode.FOLD, 4), _i(Opcode.SWAP), *_BODY_OK, _i(Opcode.NEXT)],
        _FOLDABLE,
        Sum(INT, UNIT),
        "stack underflow",
    ),
    (
        [_i(Opcode.FOLD, 2), _i(Opcode.JMP, 0), *_BODY_OK, _i(Opcode.NEXT)],
        _FOLDABLE,
        Sum(INT, UNIT),
        "JMP is only allowed",
    ),
    (  # a branch inside the body whose join lies past the body's NEXT
        [
            _i(Opcode.FOLD, 6),
            _i(Opcode.SND),
            _i(Opcode.SND),
            _i(Opcode.INL, UNIT),
            _i(Opcode.CASE, 2),
            _i(Opcode.INL, UNIT),
            _i(Opcode.JMP, 2),
            _i(Opcode.NEXT),
        ],
        _FOLDABLE,
        Sum(INT, UNIT),
        "leaves the enclosing region",
    ),
    ([_i(Opcode.EMPTY, INT)], UNIT, INT, "EMPTY needs a List or Map type"),
    ([_i(Opcode.FAIL, INT)], Prod(STR, INT), INT, "FAIL expects Str x Str"),
    ([_i(Opcode.FAIL, "Int")], Prod(STR, STR), INT, "is not a type"),
    ([_i(Opcode.STR, 5)], UNIT, STR, "STR needs text"),
    # a lone surrogate passed, and its Str could then not be encoded (UnicodeEncodeError)
    ([_i(Opcode.STR, "\ud800")], UNIT, STR, "with a UTF-8 encoding"),
    ([_i(Opcode.PRIM, Op.EQUAL)], Prod(INT, STR), BOOL, "equal expects A x A"),
    ([_i(Opcode.PRIM, Op.MAP_INSERT)], Prod(MapT(STR, INT), Prod(INT, INT)), INT, "map_insert"),
    ([_i(Opcode.PRIM, Op.LIST_SORT)], ListT(BOOL), ListT(BOOL), "List Int or List Str"),
    ([_i(Opcode.PRIM, Op.LIST_SET)], Prod(ListT(INT), Prod(INT, STR)), ListT(INT), "list_set"),
    ([_i(Opcode.PRIM, Op.STR_SLICE)], Prod(STR, INT), STR, "Str x (Int x Int)"),
]


@pytest.mark.parametrize(("code", "dom", "cod", "message"), REJECTED)
def test_verifier_rejects_bad_format_2_code_with_a_reason(
    code: list[Instr], dom: Type, cod: Type, message: str
) -> None:
    with pytest.raises(VerifyError, match=re.escape(message)):
        verify_code(tuple(code), dom, cod)


def test_a_well_formed_fold_verifies_unbounded_and_runs_alike() -> None:
    code = (_i(Opcode.FOLD, 3), *_BODY_OK, _i(Opcode.NEXT))
    info = verify_code(code, _FOLDABLE, Sum(INT, UNIT))
    assert not info.bounded
    value = ((), (make_list([5, 6, 7]), 1))
    vm, fast = VM(code), compile_metered(code)
    assert vm.run(value, 100) == fast(value, 100)[0] == (0, 1)
    assert vm.statistics().fuel == 100 - fast(value, 100)[1] == 1 + 3 * 4  # FOLD, 3 x (3 + NEXT)
    assert vm.run(((), (EMPTY_LIST, 9)), 1) == (0, 9)  # an empty list: the FOLD alone


def test_folds_nest_at_most_max_fold_nesting_deep() -> None:
    # (e, (x, s)) -> (e, (e, s)): the next fold walks the environment's list again
    push, fst, swap, snd, cons = Opcode.PUSH, Opcode.FST, Opcode.SWAP, Opcode.SND, Opcode.CONS
    again = tuple(_i(op) for op in (push, fst, swap, push, fst, swap, snd, snd, cons, cons))

    def nested(depth: int) -> tuple[Instr, ...]:
        """``depth`` folds over the environment's list, each inside the body of the last."""
        body: tuple[Instr, ...] = tuple(_BODY_OK)
        for _ in range(depth - 1):
            body = (*again, _i(Opcode.FOLD, len(body)), *body, _i(Opcode.NEXT))
        return (_i(Opcode.FOLD, len(body)), *body, _i(Opcode.NEXT))

    dom = Prod(ListT(INT), Prod(ListT(INT), INT))
    code = nested(MAX_FOLD_NESTING)
    assert not verify_code(code, dom, Sum(INT, UNIT)).bounded
    value = (make_list([1, 2, 3]), (make_list([1, 2]), 0))
    vm, fast = VM(code), compile_metered(code)
    assert vm.run(value, AMPLE) == fast(value, AMPLE)[0] == (0, 0)
    assert vm.statistics().fuel == AMPLE - fast(value, AMPLE)[1] > 3**7
    with pytest.raises(VerifyError, match="folds nested deeper"):
        verify_code(nested(MAX_FOLD_NESTING + 1), dom, Sum(INT, UNIT))


# --- regressions found by the properties above ----------------------------------------------


def test_an_arm_0_that_ends_the_function_pays_for_its_jmp() -> None:
    """Arm 0 of a branch whose join ends the function returned without taking the fuel of its
    JMP: the fast path used one unit less than the VM (found by the executor property)."""
    term = compose(Fanout(ID, compose(TERMINAL, Inl(UNIT))), DISTL, Case(TERMINAL, TERMINAL))
    unknown = compose(Fanout(ID, compose(Fanout(ID, Lit(0)), Prim(Op.LT))), DISTL)
    nested = compose(unknown, Case(compose(FST, unknown, Case(TERMINAL, TERMINAL)), TERMINAL))
    for t in (term, nested, compose(unknown, Case(TERMINAL, TERMINAL))):
        code = build_function(t, INT, UNIT).code
        vm, fast = VM(code), compile_metered(code)
        for x in (-1, 0, 1):
            assert vm.run(x, 100) == fast(x, 100)[0] == ()
            used = vm.statistics().fuel
            assert 100 - fast(x, 100)[1] == used, _explain(t, code)
            with pytest.raises(OutOfFuel):
                fast(x, used - 1)


def test_code_after_fail_compiles_without_warnings() -> None:
    """The register after FAIL was the text ``None``, and ``None[0]`` in the dead code after
    it is a SyntaxWarning (an error under ``-W error``, as the tests run)."""
    raise_ = compose(Fanout(StrLit("ValueError"), StrLit("no")), Fail(BOOL))
    term = compose(raise_, Prim(Op.NOT), Fanout(ID, ID), Prim(Op.EQUAL))
    code = build_function(term, UNIT, BOOL).code
    fast = compile_metered(code)
    with pytest.raises(Trap, match="ValueError: no"):
        fast((), 100)
    with pytest.raises(Trap, match="ValueError: no"):
        VM(code).run((), 100)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([Op.STR_SPLIT, Op.STR_FIND]), texts, texts, st.data())
def test_splitting_and_searching_agree_with_python_and_on_fuel(
    op: Op, s: str, sep: str, rng: st.DataObject
) -> None:
    """``STR_SPLIT`` is ``s.split(sep)`` (``s.split()`` for an empty ``sep``), ``STR_FIND``
    ``s.find(sub)``, on every executor, which use the same fuel and run out below the same
    budget; the fuel is ``n + len(s) // 16`` for ``n`` pieces, ``len(s) // 16`` for a search."""
    term = Prim(op)
    cod = ListT(STR) if op is Op.STR_SPLIT else INT
    run = all_agree(term, Prod(STR, STR), cod, (s, sep), rng)
    if op is Op.STR_SPLIT:
        pieces = s.split(sep) if sep else s.split()
        assert run[:2] == ("ok", exact(make_list(pieces)))
        assert run[2] == 1 + len(pieces) + len(s) // 16
    else:
        assert run[:2] == ("ok", s.find(sep))
        assert run[2] == 1 + len(s) // 16
