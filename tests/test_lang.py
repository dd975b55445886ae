"""Types, the type checker, integer semantics, the reference evaluator and the optimiser."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.errors import TermTypeError, Trap
from hotswap.lang import ints as int_ops
from hotswap.lang.check import check, infer
from hotswap.lang.evaluate import evaluate
from hotswap.lang.optimise import may_trap, optimise
from hotswap.lang.terms import (
    DISTL,
    FST,
    ID,
    SND,
    TERMINAL,
    Case,
    Fanout,
    Inl,
    Inr,
    Lit,
    Op,
    Prim,
    compose,
    term_size,
)
from hotswap.lang.types import BOOL, INT, SIZE_CAP, UNIT, Prod, Sum, type_identity
from oracle import outcome
from strategies import ints, terms, typed_terms, types, values


def test_types_are_interned_and_compare_structurally() -> None:
    """Equal types are the same object; distinct types differ."""
    assert Prod(INT, Sum(UNIT, INT)) is Prod(INT, Sum(UNIT, INT))
    assert Prod(INT, UNIT).identity != Sum(INT, UNIT).identity
    assert Sum(UNIT, UNIT) == BOOL
    assert type_identity(Prod(INT, UNIT)) == Prod(INT, UNIT).identity
    assert type_identity(Prod(INT, UNIT)) != type_identity(Prod(UNIT, INT))


def test_type_identity_is_stable() -> None:
    """The Merkle identity is fixed by the spec: a change here breaks every stored module."""
    assert type_identity(UNIT) == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert type_identity(INT) == "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"


def test_exponential_types_stay_cheap() -> None:
    """A DAG type of tree size 2^60 compares, hashes and prints instantly."""
    t = Prod(UNIT, UNIT)
    for _ in range(59):
        t = Prod(t, t)
    assert t.depth == 60
    assert t.size == SIZE_CAP  # saturated, far above every limit
    assert len(str(t)) < 200
    assert hash(t) == hash(Prod(t.left, t.right))


def test_seed_swap_with_combinators() -> None:
    """The seed's ``swap = copy >>> snd *** fst`` reads directly."""
    copy = ID & ID
    swap = copy >> (SND * FST)
    assert infer(swap, Prod(INT, UNIT)) == Prod(UNIT, INT)
    assert evaluate(swap, (3, ())) == ((), 3)
    assert evaluate(swap, (3, 4)) == (4, 3)


@pytest.mark.parametrize(
    ("term", "dom", "message"),
    [
        (FST, INT, "expected a product, got Int"),
        (Prim(Op.ADD), Prod(INT, UNIT), "expected (Int x Int), got (Int x Unit)"),
        (Case(ID, Lit(1)), Sum(UNIT, INT), "arms of a case disagree"),
        (DISTL, Prod(INT, INT), "expected E x (A + B), got (Int x Int)"),
        (Lit(2**63), UNIT, "signed 64-bit literal"),
        (compose(FST, Prim(Op.NOT)), Prod(INT, INT), "in not: expected Bool, got Int"),
    ],
)
def test_type_errors_name_the_subterm_and_types(term: object, dom: object, message: str) -> None:
    """Ill-typed terms raise TermTypeError naming the subterm, expected and actual types."""
    with pytest.raises(TermTypeError, match=re.escape(message)):
        infer(term, dom)  # type: ignore[arg-type]


def test_check_reports_wrong_codomain() -> None:
    """check() compares the computed codomain with the declared one."""
    with pytest.raises(TermTypeError) as info:
        check(Lit(1), UNIT, BOOL)
    assert info.value.expected == BOOL and info.value.actual == INT


@given(ints, ints)
def test_integer_semantics_match_python_within_range(a: int, b: int) -> None:
    """Results agree with Python's arithmetic when in range, and trap otherwise."""
    for op, py in [
        (int_ops.add, a + b),
        (int_ops.sub, a - b),
        (int_ops.mul, a * b),
    ]:
        if int_ops.in_range(py):
            assert op(a, b) == py
        else:
            with pytest.raises(Trap, match="overflow"):
                op(a, b)
    if b == 0:
        with pytest.raises(Trap, match="division by zero"):
            int_ops.floordiv(a, b)
        with pytest.raises(Trap, match="division by zero"):
            int_ops.mod(a, b)
    else:
        assert int_ops.mod(a, b) == a % b
        if int_ops.in_range(a // b):
            assert int_ops.floordiv(a, b) == a // b


def test_floor_division_edge_cases() -> None:
    """Floors like Python; the one overflowing division traps."""
    assert int_ops.floordiv(-7, 2) == -4
    assert int_ops.mod(-7, 2) == 1
    with pytest.raises(Trap):
        int_ops.floordiv(int_ops.INT_MIN, -1)
    with pytest.raises(Trap):
        int_ops.neg(int_ops.INT_MIN)


@settings(max_examples=200)
@given(typed_terms())
def test_optimiser_preserves_meaning_and_traps(case: tuple) -> None:  # type: ignore[type-arg]
    """optimise(t) gives the same result or the same trap as t, and is never larger."""
    term, dom, cod, value = case
    optimised = optimise(term)
    assert infer(optimised, dom) == cod
    assert outcome(lambda v: evaluate(optimised, v), value) == outcome(
        lambda v: evaluate(term, v), value
    )
    assert term_size(optimised) <= term_size(term)


def test_optimiser_keeps_a_trapping_subterm() -> None:
    """<f, g> ; fst is not rewritten to f when g may trap."""
    trapping = compose(Fanout(Lit(1), Lit(0)), Prim(Op.FLOORDIV))
    term = compose(Fanout(Lit(5), trapping), FST)
    assert may_trap(trapping)
    assert optimise(term) == term
    assert optimise(compose(Fanout(Lit(5), Lit(6)), FST)) == Lit(5)


def test_optimiser_rules() -> None:
    """Each rewrite listed in docs/design.md ("The core language") fires."""
    assert optimise(compose(ID, FST, ID)) == FST
    assert optimise(Fanout(FST, SND)) == ID
    assert optimise(compose(Fanout(FST, SND), SND)) == SND
    assert optimise(compose(FST, TERMINAL)) == TERMINAL
    assert optimise(compose(Inl(INT), Case(Lit(1), Lit(2)))) == Lit(1)
    assert optimise(compose(Inr(INT), Case(Lit(1), Lit(2)))) == Lit(2)
    assert optimise(Case(Inl(INT), Inr(UNIT))) == ID


@settings(max_examples=100)
@given(st.data())
def test_categorical_laws_hold_extensionally(data: st.DataObject) -> None:
    """Identity, associativity, projections of a fanout and case of an injection."""
    dom = data.draw(types())
    v = data.draw(values(dom))
    f = data.draw(terms(dom, 2))
    b = infer(f, dom)
    g = data.draw(terms(b, 2))
    h = data.draw(terms(infer(g, b), 2))

    def run(t: object) -> tuple[str, object]:
        return outcome(lambda x: evaluate(t, x), v)  # type: ignore[arg-type]

    assert run(compose(ID, f)) == run(f) == run(compose(f, ID))
    assert run(compose(compose(f, g), h)) == run(compose(f, compose(g, h)))
    k = data.draw(terms(dom, 2))
    pair = run(Fanout(f, k))
    if pair[0] == "ok":
        assert run(compose(Fanout(f, k), FST)) == run(f)
        assert run(compose(Fanout(f, k), SND)) == run(k)
    other = data.draw(types(3))
    left = data.draw(terms(other, 2))
    assert run(compose(f, Inl(other), Case(g, compose(TERMINAL, Inl(UNIT), Case(g, g))))) == run(
        compose(f, g)
    )
    assert infer(left, other) is not None
