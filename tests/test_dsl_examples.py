"""The example machines: the compiled modules agree with the plain Python functions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.dsl import Machine, Migration
from hotswap.errors import Trap
from hotswap.examples import bank, breaker, counter, handbuilt
from hotswap.lang.ints import INT_MAX, INT_MIN
from hotswap.lang.types import INT, Prod
from hotswap.lang.values import render
from oracle import all_paths_agree
from strategies import outcome, python_outcome, python_values

MACHINES: list[Machine[..., Any]] = [
    counter.counter_sm,
    counter.counter_sm2,
    bank.bank_sm,
    breaker.breaker_sm,
    breaker.breaker_sm2,
]
MIGRATIONS: list[Migration[..., Any]] = [counter.upgrade_state, breaker.upgrade_breaker]


def _name(obj: object) -> str:
    return str(getattr(obj, "name", obj))


@pytest.mark.parametrize("m", MACHINES, ids=_name)
@settings(max_examples=150)
@given(data=st.data())
def test_compiled_step_agrees_with_python(m: Machine[..., Any], data: st.DataObject) -> None:
    """``.run`` (module bytes, verified, fast path) gives what the Python function gives, traps
    included; the reference evaluator agrees too."""
    small = data.draw(st.booleans())
    inp = data.draw(python_values(m.input_schema, small))
    state = data.draw(python_values(m.state_schema, small))
    expected = python_outcome(m.__wrapped__, inp, state)
    assert outcome(m.run, inp, state) == expected
    assert outcome(m.evaluate, inp, state) == expected


@pytest.mark.parametrize("m", MACHINES, ids=_name)
@settings(max_examples=50)
@given(data=st.data())
def test_step_term_agrees_on_every_executor(m: Machine[..., Any], data: st.DataObject) -> None:
    """Evaluator, optimiser, VM and fast path agree on the compiled step term."""
    inp = data.draw(python_values(m.input_schema))
    state = data.draw(python_values(m.state_schema))
    core = (m.to_core_input(inp), m.to_core_state(state))
    dom, cod = Prod(m.input_type, m.state_type), Prod(m.state_type, m.output_type)
    all_paths_agree(m.compiled.step, dom, cod, core)


@pytest.mark.parametrize("mig", MIGRATIONS, ids=_name)
@given(data=st.data())
def test_compiled_migration_agrees_with_python(
    mig: Migration[..., Any], data: st.DataObject
) -> None:
    """Migrations are compiled like machines and agree with their Python function."""
    old = data.draw(python_values(mig.old.state_schema))
    expected = python_outcome(mig.__wrapped__, old)
    assert outcome(mig.run, old) == expected
    assert outcome(mig.evaluate, old) == expected


@pytest.mark.parametrize("m", MACHINES, ids=_name)
def test_initial_state_is_the_declared_one(m: Machine[..., Any]) -> None:
    """``init`` of the module is the decorator's ``init``."""
    assert m.from_core_state(m.loaded.init()) == m.init


def test_counter_reproduces_the_seed_transcript() -> None:
    """The seed's session: incr, count, upgrade, incr, incr, count, in the seed's syntax."""
    v1, v2, upgrade = counter.counter_sm, counter.counter_sm2, counter.upgrade_state
    incr, count = v1.to_core_input(counter.Incr()), v1.to_core_input(counter.Count())
    lines = []
    state = v1.loaded.init()
    for inp in (incr, count):
        state, out = v1.loaded.step(inp, state)
        lines.append((render(out, v1.output_type), render(state, v1.state_type)))
    state = upgrade.loaded.migrate(state)
    for inp in (incr, incr, count):
        state, out = v2.loaded.step(inp, state)
        lines.append((render(out, v2.output_type), render(state, v2.state_type)))
    assert lines == [
        ("L Unit", "Int 1"),
        ("R (Int 1)", "Int 1"),
        ("L Unit", "Pair (Int 1) (Int 1)"),
        ("L Unit", "Pair (Int 1) (Int 2)"),
        ("R (Int 2)", "Pair (Int 1) (Int 2)"),
    ]


def test_dsl_counter_has_the_handbuilt_counters_types_and_behaviour() -> None:
    """The DSL counter is the seed's counter: same types, same outputs as the hand-built one."""
    m = counter.counter_sm
    assert (m.input_type, m.state_type, m.output_type) == (
        handbuilt.COUNTER_INPUT,
        INT,
        handbuilt.COUNTER_OUTPUT,
    )
    for inp in (counter.Incr(), counter.Count()):
        for state in (0, 7, INT_MAX - 1):
            core = (m.to_core_input(inp), state)
            assert m.loaded.step(*core) == handbuilt.counter_py(core)


def test_migration_checks_the_machines_it_connects() -> None:
    """The migration's module maps the old state type to the new one."""
    loaded = counter.upgrade_state.loaded
    assert loaded.migration is not None
    assert (loaded.migration.old, loaded.migration.new) == (
        counter.counter_sm.state_type,
        counter.counter_sm2.state_type,
    )
    assert counter.upgrade_state.run(5) == (5, 0)


@pytest.mark.parametrize(
    ("m", "inp", "state", "kind"),
    [
        (counter.counter_sm, counter.Incr(), INT_MAX, "overflow"),
        (counter.counter_sm2, counter.Incr(), (0, INT_MAX), "overflow"),
        (bank.bank_sm, bank.Deposit(1), bank.Account(0, INT_MAX), "overflow"),
        (bank.bank_sm, bank.Deposit(1), bank.Account(INT_MIN, 0), "overflow"),
        (breaker.breaker_sm, breaker.Call(INT_MIN), breaker.Open(since=1), "overflow"),
        (breaker.breaker_sm2, breaker.Failure(0), breaker.Probing(0, INT_MAX), "overflow"),
    ],
    ids=lambda x: _name(x) if isinstance(x, Machine) else repr(x),
)
def test_overflow_traps_like_the_checked_python(
    m: Machine[..., Any], inp: object, state: object, kind: str
) -> None:
    """A step whose Python run leaves the 64-bit range traps, and the state is not changed."""
    with pytest.raises(Trap) as trap:
        m.run(inp, state)
    assert trap.value.kind == kind
    assert python_outcome(m.__wrapped__, inp, state) == ("trap", trap.value)


def test_bank_refuses_what_it_should() -> None:
    """The bank's documented behaviour, case by case."""
    account = bank.Account(balance=10, operations=0)
    m = bank.bank_sm
    assert m.run(bank.Deposit(5), account) == (bank.Account(15, 1), bank.Accepted(15))
    assert m.run(bank.Withdraw(11), account) == (
        account,
        bank.Refused(bank.InsufficientFunds(balance=10, requested=11)),
    )
    assert m.run(bank.Withdraw(0), account) == (account, bank.Refused(bank.InvalidAmount(0)))
    assert m.run(bank.Deposit(bank.MAX_BALANCE), account) == (
        account,
        bank.Refused(bank.LimitExceeded(bank.MAX_BALANCE)),
    )
    assert m.run(bank.Balance(), account) == (account, bank.Accepted(10))


def test_breaker_trips_cools_down_and_recovers() -> None:
    """Five failures open the breaker; after the cool-down one probe decides."""
    m = breaker.breaker_sm
    state: Any = m.init
    for t in range(breaker.FAILURE_THRESHOLD):
        state, out = m.run(breaker.Failure(now=t), state)
        assert out is None
    assert state == breaker.Open(since=breaker.FAILURE_THRESHOLD - 1)
    state, out = m.run(breaker.Call(now=10), state)
    assert out == breaker.Reject(retry_after=breaker.COOL_DOWN + breaker.FAILURE_THRESHOLD - 11)
    state, out = m.run(breaker.Call(now=breaker.COOL_DOWN + 10), state)
    assert (state, out) == (breaker.HalfOpen(), breaker.Allow())
    state, out = m.run(breaker.Success(now=breaker.COOL_DOWN + 11), state)
    assert state == breaker.Closed(failures=0)


def test_breaker_upgrade_keeps_an_open_breaker_open() -> None:
    """After the migration an open breaker is tripped once, and v2 keeps rejecting."""
    tripped = breaker.upgrade_breaker.run(breaker.Open(since=100))
    assert tripped == breaker.Tripped(since=100, trips=1)
    state, out = breaker.breaker_sm2.run(breaker.Call(now=101), tripped)
    assert isinstance(out, breaker.Reject)
    assert state == tripped
