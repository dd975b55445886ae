"""The cart, leaderboard and session store examples: each version agrees with its plain Python
function on random sessions of inputs from the initial state and on random states, traps
included, and each upgrade agrees with its Python function on the states version 1 reaches."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_oracle import agrees, values
from hotswap.cam.module import format_version
from hotswap.dsl import Machine, Migration, compile_source
from hotswap.errors import Trap
from hotswap.examples import cart, leaderboard, sessions

skus = st.sampled_from(["book-1", "book-2", "pen", "mug"])
small = st.integers(-2, 30)

CART = st.one_of(
    st.builds(cart.AddItem, skus, st.sampled_from(["A", "B"]), st.integers(-1, 2000), small),
    st.builds(cart.RemoveItem, skus),
    st.builds(cart.SetQty, skus, small),
    st.just(cart.Checkout()),
)
CART2 = st.one_of(CART, st.builds(cart.ApplyCoupon, st.sampled_from(["SAVE10", "BOOKS25", "X"])))

players = st.sampled_from(["ann", "bob", "cid", "dee", ""])
BOARD = st.one_of(
    st.builds(leaderboard.Submit, players, st.integers(-1, 12)),
    st.builds(leaderboard.Top, st.integers(-1, 12)),
    st.builds(leaderboard.Rank, players),
)

tokens = st.sampled_from(["t1", "t2", "t3", "t4", ""])
times = st.integers(0, 4000)
SESSIONS = st.one_of(
    st.builds(sessions.Login, tokens, st.sampled_from(["ann", "bob", ""]), times),
    st.builds(sessions.Who, tokens, times),
    st.builds(sessions.Logout, tokens),
    st.builds(sessions.Sweep, times),
)
SESSIONS2 = st.one_of(SESSIONS, st.builds(sessions.Stats, times))

CASES: list[tuple[Machine[..., Any], st.SearchStrategy[Any]]] = [
    (cart.cart_sm, CART),
    (cart.cart_sm2, CART2),
    (leaderboard.board_sm, BOARD),
    (leaderboard.board_sm2, BOARD),
    (sessions.sessions_sm, SESSIONS),
    (sessions.sessions_sm2, SESSIONS2),
]
UPGRADES: list[tuple[Migration[..., Any], st.SearchStrategy[Any]]] = [
    (cart.upgrade_cart, CART),
    (leaderboard.upgrade_board, BOARD),
    (sessions.upgrade_sessions, SESSIONS),
]


def _name(case: tuple[Any, Any]) -> str:
    return str(case[0].name)


@pytest.mark.parametrize("case", CASES, ids=_name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_session_of_inputs_agrees_with_python(
    case: tuple[Machine[..., Any], st.SearchStrategy[Any]], data: st.DataObject
) -> None:
    """From the initial state, a run of inputs: the same outputs, states and traps; a trap
    leaves the state as it was."""
    m, inputs = case
    state = m.init
    for inp in data.draw(st.lists(inputs, min_size=1, max_size=12)):
        result = agrees(m, inp, state)
        if result[0] == "ok":
            state = result[1][0]


@pytest.mark.parametrize("case", CASES, ids=_name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_state_agrees_with_python(
    case: tuple[Machine[..., Any], st.SearchStrategy[Any]], data: st.DataObject
) -> None:
    """From arbitrary states too (which the machine itself might never reach)."""
    m, inputs = case
    agrees(m, data.draw(inputs), data.draw(values(m.state_schema, size=3)))


@pytest.mark.parametrize("case", UPGRADES, ids=_name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_an_upgrade_agrees_with_python(
    case: tuple[Migration[..., Any], st.SearchStrategy[Any]], data: st.DataObject
) -> None:
    """The migration of a state version 1 reached, and the new version going on from it."""
    mig, inputs = case
    old = mig.old
    assert isinstance(old, Machine)
    state = old.init
    for inp in data.draw(st.lists(inputs, max_size=8)):
        result = agrees(old, inp, state)
        if result[0] == "ok":
            state = result[1][0]
    result = agrees(mig, state)
    assert result[0] == "ok"


def test_the_cart_refuses_and_traps_as_documented() -> None:
    m = cart.cart_sm
    empty = cart.Cart({})
    full, out = m.run(cart.AddItem("pen", "Pen", 120, 3), empty)
    assert out == cart.Total(360, 3, "3xpen")
    assert m.run(cart.RemoveItem("mug"), full)[1] == cart.Refused("no mug in the cart")
    with pytest.raises(Trap, match="EmptyCart: nothing to check out") as trap:
        m.run(cart.Checkout(), empty)
    assert trap.value.kind == "raised"


def test_the_leaderboard_keeps_the_top_sorted() -> None:
    m = leaderboard.board_sm
    board = leaderboard.Board([])
    for i in range(15):
        board, _ = m.run(leaderboard.Submit(f"p{i:02}", i), board)
    assert len(board.entries) == leaderboard.TOP_N
    assert [e.score for e in board.entries] == list(range(14, 4, -1))
    assert m.run(leaderboard.Rank("p14"), board)[1] == 1
    assert m.run(leaderboard.Top(2), board)[1] == "1. p14 14\n2. p13 13"


@pytest.mark.parametrize("module", [cart, leaderboard, sessions], ids=lambda m: m.__name__)
def test_example_sources_compile_from_text_to_format_2(module: Any) -> None:
    """Each example compiles from its source text alone, to the same modules, of format 2."""
    found = compile_source(inspect.getsource(module))
    assert found
    for key, value in found.items():
        assert value.identity == getattr(module, key).identity
        assert format_version(value.cam_module) == 2
