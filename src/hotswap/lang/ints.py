"""Integer semantics shared by every executor.

Int is a mathematical integer confined to the signed 64-bit range: a result outside the range
traps; ``//`` and ``%`` floor like Python's; division by zero traps. Under these rules a run of
DSL source under CPython that does not trap agrees with the VM, so the source is the oracle.
"""

from __future__ import annotations

from collections.abc import Callable

from hotswap.errors import Trap
from hotswap.lang.terms import Op

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
#: The largest magnitude CPython 3.11 and later compare fast (a one-digit int, below ``2**30``):
#: generated range checks ask first whether an int is within it, which almost every one is.
SMALL_INT = 2**30 - 1


def in_range(n: int) -> bool:
    return INT_MIN <= n <= INT_MAX


def overflow(op: Op) -> Trap:
    return Trap("overflow", f"integer overflow in {op.name.lower()}")


def division_by_zero(op: Op) -> Trap:
    return Trap("division_by_zero", f"division by zero in {op.name.lower()}")


def _checked(op: Op, n: int) -> int:
    if INT_MIN <= n <= INT_MAX:
        return n
    raise overflow(op)


def add(a: int, b: int) -> int:
    return _checked(Op.ADD, a + b)


def sub(a: int, b: int) -> int:
    return _checked(Op.SUB, a - b)


def mul(a: int, b: int) -> int:
    return _checked(Op.MUL, a * b)


def floordiv(a: int, b: int) -> int:
    if b == 0:
        raise division_by_zero(Op.FLOORDIV)
    return _checked(Op.FLOORDIV, a // b)


def mod(a: int, b: int) -> int:
    if b == 0:
        raise division_by_zero(Op.MOD)
    return a % b  # |a % b| < |b|: always in range


def neg(a: int) -> int:
    return _checked(Op.NEG, -a)


#: Binary Int x Int -> Int primitives.
ARITH: dict[Op, Callable[[int, int], int]] = {
    Op.ADD: add,
    Op.SUB: sub,
    Op.MUL: mul,
    Op.FLOORDIV: floordiv,
    Op.MOD: mod,
}

#: Int x Int -> Bool primitives, as Python predicates.
COMPARE: dict[Op, Callable[[int, int], bool]] = {
    Op.LT: lambda a, b: a < b,
    Op.LE: lambda a, b: a <= b,
    Op.EQ: lambda a, b: a == b,
    Op.NE: lambda a, b: a != b,
    Op.GT: lambda a, b: a > b,
    Op.GE: lambda a, b: a >= b,
}
