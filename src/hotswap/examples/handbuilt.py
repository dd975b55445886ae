"""Machines written directly as terms, in the seed's point-free style.

These are the reference machines of the core tests and benchmarks: a counter and a bank account,
each with the hand-written Python function on the same tuple encoding that the fast path is
measured against.
"""

from __future__ import annotations

from hotswap.cam.build import machine_module, migration_module
from hotswap.cam.module import Module
from hotswap.lang.evaluate import Value
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
    Term,
    compose,
    match_on,
)
from hotswap.lang.types import BOOL, INT, UNIT, Prod, Sum, Type

# --- the seed's counter: Incr | Count, state Int, output Unit + Int ---------------------------

COUNTER_INPUT: Type = BOOL  # L Unit = Incr, R Unit = Count
COUNTER_OUTPUT: Type = Sum(UNIT, INT)

_incr = Fanout(compose(FST, Fanout(ID, Lit(1)), Prim(Op.ADD)), compose(TERMINAL, Inl(INT)))
_count = Fanout(FST, compose(FST, Inr(UNIT)))
#: ``<snd, fst> ; distl ; [incr | count]``: the environment is the state.
COUNTER_STEP: Term = compose(Fanout(SND, FST), DISTL, Case(_incr, _count))


def counter_module(start: int = 0) -> Module:
    """The counter, counting from ``start`` (each start is a module of its own identity)."""
    return machine_module(COUNTER_INPUT, INT, COUNTER_OUTPUT, Lit(start), COUNTER_STEP)


def counter_commuted_module() -> Module:
    """The counter with ``1 + n`` for ``n + 1``: the same types, another identity."""
    incr = Fanout(compose(FST, Fanout(Lit(1), ID), Prim(Op.ADD)), compose(TERMINAL, Inl(INT)))
    step = compose(Fanout(SND, FST), DISTL, Case(incr, _count))
    return machine_module(COUNTER_INPUT, INT, COUNTER_OUTPUT, Lit(0), step)


# --- the seed's counter, version 2: state (old, n); Incr and Count act on n --------------------

_incr2 = Fanout(
    compose(FST, Fanout(FST, compose(SND, Fanout(ID, Lit(1)), Prim(Op.ADD)))),
    compose(TERMINAL, Inl(INT)),
)
_count2 = Fanout(FST, compose(FST, SND, Inr(UNIT)))
COUNTER2_STEP: Term = compose(Fanout(SND, FST), DISTL, Case(_incr2, _count2))
#: ``n -> (n, 0)``: the seed's upgradeState.
UPGRADE_STATE: Term = Fanout(ID, Lit(0))


def counter2_module() -> Module:
    return machine_module(
        COUNTER_INPUT, Prod(INT, INT), COUNTER_OUTPUT, Fanout(Lit(0), Lit(0)), COUNTER2_STEP
    )


def upgrade_state_module() -> Module:
    return migration_module(INT, Prod(INT, INT), UPGRADE_STATE)


def counter_py(x: Value) -> Value:
    """The counter by hand, on the same encoding (with the same overflow check)."""
    (tag, _), n = x
    if tag:
        return (n, (1, n))
    n += 1
    if n > 9223372036854775807:
        raise OverflowError
    return (n, (0, ()))


# --- a bank account ---------------------------------------------------------------------------
# input  Deposit Int | Withdraw Int | Balance      = Int + (Int + Unit)
# output Ok | Refused | Balance Int                = Unit + (Unit + Int)
# state  the balance, Int

BANK_INPUT: Type = Sum(INT, Sum(INT, UNIT))
BANK_OUTPUT: Type = Sum(UNIT, Sum(UNIT, INT))

_ok = compose(TERMINAL, Inl(Sum(UNIT, INT)))
_refused = compose(TERMINAL, Inl(INT), Inr(UNIT))
# (balance, n) -> (balance + n, Ok)
_deposit = Fanout(Prim(Op.ADD), _ok)
# ((balance, n), b) with b = (n <= balance and n > 0): keep and refuse, or subtract and accept
_withdraw = match_on(
    compose(
        Fanout(compose(Fanout(SND, FST), Prim(Op.LE)), compose(Fanout(SND, Lit(0)), Prim(Op.GT))),
        Prim(Op.AND),
    ),
    Fanout(compose(FST, FST), _refused),
    Fanout(compose(FST, Prim(Op.SUB)), _ok),
)
_balance = Fanout(FST, compose(FST, Inr(UNIT), Inr(UNIT)))
BANK_STEP: Term = compose(
    Fanout(SND, FST), DISTL, Case(_deposit, compose(DISTL, Case(_withdraw, _balance)))
)


def bank_module() -> Module:
    return machine_module(BANK_INPUT, INT, BANK_OUTPUT, Lit(0), BANK_STEP)


def bank_py(x: Value) -> Value:
    """The bank account by hand, on the same encoding (with the same overflow checks)."""
    (tag, payload), balance = x
    if tag == 0:
        balance += payload
        if balance > 9223372036854775807 or balance < -9223372036854775808:
            raise OverflowError
        return (balance, (0, ()))
    tag, amount = payload
    if tag:
        return (balance, (1, (1, balance)))
    if amount <= balance and amount > 0:
        return (balance - amount, (0, ()))
    return (balance, (1, (0, ())))
