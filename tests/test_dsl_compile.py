"""The DSL compiler on source text: what must compile (and mean what Python means), and what
must be rejected, with the message and the position of the error."""

from __future__ import annotations

import textwrap
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.dsl import Machine, compile_source
from hotswap.errors import SourceError, Trap
from strategies import outcome, python_outcome, python_values

HEADER = """\
from dataclasses import dataclass, replace
from hotswap.lang import ints


@dataclass(frozen=True)
class Incr:
    pass


@dataclass(frozen=True)
class Count:
    pass


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclass(frozen=True)
class Box:
    item: Deposit | Point | None


LIMIT = 100

"""
HEADER_LINES = HEADER.count("\n")


@cache
def machine_of(snippet: str) -> Machine[..., Any]:
    found = compile_source(HEADER + textwrap.dedent(snippet))
    m = found["m"]
    assert isinstance(m, Machine)
    return m


# --- sources that compile, each checked against Python on generated inputs ----------------

ACCEPTED: dict[str, str] = {
    "arithmetic": """
        @machine(init=0)
        def m(x: tuple[int, int], s: int) -> tuple[int, int]:
            a, b = x
            return s + a * b - a // 7 % 5, -a + +b
        """,
    "division traps by zero": """
        @machine(init=0)
        def m(x: tuple[int, int], s: int) -> tuple[int, int]:
            a, b = x
            return s, a // b + a % b
        """,
    "comparisons and chains": """
        @machine(init=0)
        def m(x: tuple[int, int], s: int) -> tuple[int, tuple[bool, bool, bool]]:
            a, b = x
            return s, (a < b <= s, a == b or a != s, not (a >= b > 0) and s < LIMIT)
        """,
    "short-circuit avoids a trap": """
        @machine(init=0)
        def m(x: tuple[int, int], s: int) -> tuple[int, bool]:
            a, b = x
            return s, b != 0 and a // b > 1 or b == 0 and a % 1 == 0
        """,
    "bool equality": """
        @machine(init=False)
        def m(x: tuple[bool, bool], s: bool) -> tuple[bool, tuple[bool, bool]]:
            p, q = x
            return p == q, (p != s, q == True)  # noqa: E712
        """,
    "if elif else with join": """
        @machine(init=0)
        def m(x: int, s: int) -> tuple[int, int]:
            if x < 0:
                y = -1
                z = s
            elif x == 0:
                y = 0
                z = s + 1
            else:
                y = 1
                z = s - 1
            s = s + y
            return z, y * s
        """,
    "early return without else": """
        @machine(init=0)
        def m(x: int, s: int) -> tuple[int, int]:
            if x > LIMIT:
                return s, 0
            if x < -LIMIT:
                return s, 1
            s += x
            return s, 2
        """,
    "conditional expressions": """
        @machine(init=0)
        def m(x: int, s: int) -> tuple[int, None | int]:
            y = x if x > s else s
            return y, None if y == 0 else y
        """,
    "annotated variable joins two types": """
        @machine(init=0)
        def m(x: int, s: int) -> tuple[int, None | int]:
            r: None | int = None
            if x > 0:
                r = x
            t: int
            t = 3
            return s + t, r
        """,
    "nested unpacking and indexing": """
        @machine(init=(0, (0, 0)))
        def m(x: int, s: tuple[int, tuple[int, int]]) -> tuple[tuple[int, tuple[int, int]], int]:
            a, (b, c) = s
            return (b, (c, a + x)), s[1][0] + s[-1][-1]
        """,
    "records: fields, keywords, defaults order": """
        @machine(init=Point(0, 0))
        def m(x: int, s: Point) -> tuple[Point, Deposit]:
            p = Point(y=s.x // x, x=s.y * x)
            return p, Deposit(amount=p.x + p.y)
        """,
    "replace": """
        @machine(init=Point(0, 0))
        def m(x: int, s: Point) -> tuple[Point, Point]:
            return replace(s, y=s.y + x), replace(Point(x, x), x=1)
        """,
    # A positional argument fills the first field that is not keyword-only, as in Python (it
    # used to fill field a, so R(x, c=...) was rejected and R(x, b=...) compiled).
    "positional arguments skip keyword-only fields": """
        from dataclasses import field, KW_ONLY

        @dataclass(frozen=True)
        class R:
            a: int = field(kw_only=True, default=3)
            b: int
            _: KW_ONLY
            c: bool = True

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            r = R(inp, c=False)
            return s, r.a + r.b if r.c else R(s, a=inp).a - r.b
        """,
    "helpers with keyword arguments": """
        def clamp(v: int, low: int, high: int) -> int:
            if v < low:
                return low
            return min(v, high)

        def twice(v: int) -> int:
            return clamp(high=LIMIT, v=v, low=-LIMIT) * 2

        @machine(init=0)
        def m(x: int, s: int) -> tuple[int, int]:
            return twice(x), clamp(s, 0, twice(3))
        """,
    "builtins abs min max": """
        @machine(init=0)
        def m(x: tuple[int, int], s: int) -> tuple[int, int]:
            a, b = x
            return max(a, b, s), abs(a) + min(b, s)
        """,
    "match on a union with narrowing": """
        @machine(init=0)
        def m(x: Incr | Deposit | None, s: int) -> tuple[int, None | Deposit]:
            match x:
                case Incr():
                    return s + 1, None
                case Deposit():
                    return s + x.amount, x
                case None:
                    return s, None
        """,
    "match with captures, keywords, guards and or-patterns": """
        @machine(init=0)
        def m(x: Incr | Count | Deposit, s: int) -> tuple[int, int]:
            match x:
                case Deposit(amount=a) if a > LIMIT:
                    return s, a
                case Deposit(a) as d if a < 0:
                    return s - 1, d.amount
                case Incr() | Count():
                    return s, 0
                case Deposit(amount):
                    return s + amount, amount
        """,
    "match on a tuple of variables": """
        @machine(init=Incr())
        def m(x: Incr | Count, s: Incr | Count) -> tuple[Incr | Count, int]:
            match x, s:
                case Incr(), Incr():
                    return Count(), 1
                case Incr(), Count():
                    return x, 2
                case Count(), _:
                    return s, 3
        """,
    "int literal patterns": """
        @machine(init=0)
        def m(x: int, s: int) -> tuple[int, int]:
            match x:
                case 0:
                    return s, 0
                case 1 | 2:
                    return s, 1
                case -9223372036854775808:
                    return s, 2
                case 5 as five:
                    return s + five, 3
                case other:
                    return s, other
        """,
    "int and None patterns in a union": """
        @machine(init=0)
        def m(x: None | int, s: int) -> tuple[int, int]:
            match x:
                case None:
                    return s, -1
                case 0:
                    return s, 0
                case int(n):
                    return n, 1
        """,
    "bool patterns": """
        @machine(init=0)
        def m(x: bool, s: int) -> tuple[int, int]:
            match x:
                case True:
                    return s + 1, 1
                case False:
                    return s, 0
        """,
    "nested class patterns": """
        @machine(init=Box(None))
        def m(x: Box, s: Box) -> tuple[Box, int]:
            match x:
                case Box(Deposit(0)):
                    return s, 0
                case Box(item=Deposit(amount=a)):
                    return x, a
                case Box(Point(x=px, y=py)):
                    return Box(Point(py, px)), px
                case Box(None):
                    return s, -1
        """,
    "match falls through to a join": """
        @machine(init=0)
        def m(x: Incr | Count, s: int) -> tuple[int, None | int]:
            match x:
                case Incr():
                    new = s + 1
                    out: None | int = None
                case Count():
                    new = s
                    out = s
            return new, out
        """,
    "sequence patterns on tuples": """
        @machine(init=(0, 0))
        def m(x: tuple[int, bool], s: tuple[int, int]) -> tuple[tuple[int, int], int]:
            match x:
                case (0, _):
                    return s, 0
                case (n, True):
                    return (n, s[0]), 1
                case [n, False]:
                    return (s[1], n), 2
        """,
    "module attributes and closures": """
        @machine(init=0)
        def m(x: int, s: int) -> tuple[int, bool]:
            return s, x == ints.INT_MAX or x == ints.INT_MIN
        """,
    "calling another machine inlines it": """
        @machine(init=0)
        def inner(x: Incr | Count, s: int) -> tuple[int, None | int]:
            match x:
                case Incr():
                    return s + 1, None
                case Count():
                    return s, s

        @machine(init=(0, 0))
        def m(x: Incr | Count, s: tuple[int, int]) -> tuple[tuple[int, int], None | int]:
            new, out = inner(x, s[1])
            return (s[0], new), out
        """,
    "docstrings pass and ellipsis": """
        @machine(init=0)
        def m(x: int, s: int) -> tuple[int, None]:
            '''A docstring is not code.'''
            pass
            ...
            if x > 0:
                pass
            return s, None
        """,
    "implicit return None": """
        def positive(x: int) -> None | int:
            if x > 0:
                return x

        @machine(init=0)
        def m(x: int, s: int) -> tuple[int, None | int]:
            return s, positive(x)
        """,
    "a failed guard fails the whole or-pattern case": """
        @machine(init=0)
        def m(x: tuple[int, int], s: int) -> tuple[int, int]:
            match x:
                case (a, _) | (_, a) if a > 5:
                    return s, a
                case _:
                    return s, -1
        """,
    "narrowed variables widen at a join": """
        @machine(init=Count())
        def m(x: Deposit | Count, s: Deposit | Count) -> tuple[Deposit | Count, int]:
            match x:
                case Deposit(n):
                    s = x
                    k = n
                case Count():
                    k = 0
            match s:
                case Deposit():
                    pass
                case Count():
                    s = Deposit(1)
            return s, k
        """,
    "unit-typed values need no slot": """
        @machine(init=Incr())
        def m(x: Incr | Count, s: Incr) -> tuple[Incr, tuple[Incr, None]]:
            n = None
            i = Incr()
            return i, (s, n)
        """,
}


ACCEPTED["a deep context is compacted"] = (
    "@machine(init=0)\ndef m(x: tuple[int, int], s: int) -> tuple[int, int]:\n    a, b = x\n"
    + "".join(
        f"    if a > {i}:\n        s = s + b\n    else:\n        t = a - {i}\n        s = s - t\n"
        for i in range(40)
    )
    + "    return s, a\n"
)


@pytest.mark.parametrize("snippet", ACCEPTED.values(), ids=ACCEPTED.keys())
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_accepted_source_means_what_python_means(snippet: str, data: st.DataObject) -> None:
    """The compiled machine (on the fast path) and the plain function agree, traps included."""
    m = machine_of(snippet)
    small = data.draw(st.booleans())
    inp = data.draw(python_values(m.input_schema, small))
    state = data.draw(python_values(m.state_schema, small))
    expected = python_outcome(m.__wrapped__, inp, state)
    assert outcome(m.run, inp, state) == expected


def test_evaluation_order_decides_which_trap() -> None:
    """Keyword arguments run in source order, so the first trap is Python's."""
    m = machine_of(ACCEPTED["records: fields, keywords, defaults order"])
    with pytest.raises(Trap) as trap:
        m.run(0, m.__wrapped__.__globals__["Point"](2**62, 2**62))
    assert trap.value.kind == "division_by_zero"


# --- sources that must be rejected ----------------------------------------------------------

#: (snippet, message fragment, line within the snippet, 1-based column)
REJECTED: dict[str, tuple[str, str, int, int]] = {
    "non-exhaustive match": (
        """
        @machine(init=0)
        def m(inp: Incr | Count, s: int) -> tuple[int, None | int]:
            match inp:
                case Incr():
                    return s + 1, None
        """,
        "non-exhaustive match: Count not handled",
        3,
        5,
    ),
    "non-exhaustive tuple match": (
        """
        @machine(init=0)
        def m(inp: Incr | Count, s: None | int) -> tuple[None | int, int]:
            match inp, s:
                case Incr(), _:
                    return s, 1
                case Count(), int():
                    return s, 2
        """,
        "non-exhaustive match: (Count, None) not handled",
        3,
        5,
    ),
    "non-exhaustive int match": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            match inp:
                case 0 | 1:
                    return s, 1
        """,
        "non-exhaustive match: an int other than 0, 1 not handled",
        3,
        5,
    ),
    "guards do not count": (
        """
        @machine(init=0)
        def m(inp: Incr | Count, s: int) -> tuple[int, int]:
            match inp:
                case Incr():
                    return s, 1
                case Count() if s > 0:
                    return s, 2
        """,
        "Count not handled when the guards are false",
        3,
        5,
    ),
    "unreachable case": (
        """
        @machine(init=0)
        def m(inp: Incr | Count, s: int) -> tuple[int, int]:
            match inp:
                case Incr() | Count():
                    return s, 1
                case Count():
                    return s, 2
        """,
        "this case is unreachable",
        6,
        14,
    ),
    "wrong return type": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, None | int]:
            return s
        """,
        "return type is int, expected tuple[int, None | int]",
        3,
        12,
    ),
    "wrong item type": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, None | int]:
            return s, Incr()
        """,
        "value is Incr, expected None | int",
        3,
        15,
    ),
    "float literal": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, 1.5
        """,
        "float literals are not supported",
        3,
        15,
    ),
    "string literal after unicode": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, ("é", 1.5)[0]
        """,
        "float literals are not supported",
        3,
        21,
    ),
    "int | int": (
        """
        @machine(init=0)
        def m(inp: int | int, s: int) -> tuple[int, int]:
            return s, 1
        """,
        "ambiguous union int | int: int appears twice",
        2,
        12,
    ),
    "int | bool": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int | bool]:
            return s, 1
        """,
        "bool is a subclass of int",
        2,
        39,
    ),
    "unsupported annotation": (
        """
        @machine(init=0)
        def m(inp: set[int], s: int) -> tuple[int, int]:
            return s, 1
        """,
        "set[int] is not supported",
        2,
        12,
    ),
    "missing annotation": (
        """
        @machine(init=0)
        def m(inp, s: int) -> tuple[int, int]:
            return s, 1
        """,
        "parameter inp needs a type annotation",
        2,
        7,
    ),
    "missing return annotation": (
        """
        @machine(init=0)
        def m(inp: int, s: int):
            return s, 1
        """,
        "m needs a return type annotation",
        2,
        1,
    ),
    "three parameters": (
        """
        @machine(init=0)
        def m(inp: int, s: int, t: int) -> tuple[int, int]:
            return s, 1
        """,
        "a machine's step takes (input, state), but m takes 3",
        2,
        1,
    ),
    "result is not a pair": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> int:
            return s
        """,
        "a machine's step returns tuple[state, output], not int",
        2,
        28,
    ),
    "state types disagree": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[bool, int]:
            return True, s
        """,
        "returns the state as bool, but its state parameter is int",
        2,
        28,
    ),
    "init does not fit": (
        """
        @machine(init=(0, 1))
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, 1
        """,
        "init does not fit the state type int",
        1,
        2,
    ),
    "non-frozen record": (
        """
        @dataclass
        class Mutable:
            a: int

        @machine(init=0)
        def m(inp: Mutable, s: int) -> tuple[int, int]:
            return s, inp.a
        """,
        "Mutable must be a frozen dataclass",
        6,
        12,
    ),
    "plain class": (
        """
        class Plain:
            pass

        @machine(init=0)
        def m(inp: Plain, s: int) -> tuple[int, int]:
            return s, 1
        """,
        "Plain must be a frozen dataclass",
        5,
        12,
    ),
    "syntax warnings are errors": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, 0(1)
        """,
        "perhaps you missed a comma?",
        3,
        15,
    ),
    "recursive record": (
        """
        @dataclass(frozen=True)
        class Node:
            next: "Node | None"

        @machine(init=0)
        def m(inp: Node, s: int) -> tuple[int, int]:
            return s, 1
        """,
        "recursive type Node",
        6,
        12,
    ),
    # Python runs __post_init__ (and a hand-written __init__) on construction, compiled code
    # does not: the results disagreed.
    "a record with __post_init__": (
        """
        @dataclass(frozen=True)
        class R:
            a: int

            def __post_init__(self) -> None:
                object.__setattr__(self, "a", max(self.a, 0))

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, R(inp).a
        """,
        "has its own __init__ or __post_init__",
        10,
        15,
    ),
    "a record with its own __init__": (
        """
        @dataclass(frozen=True, init=False)
        class R:
            a: int
            b: int

            def __init__(self, b: int, a: int) -> None:
                object.__setattr__(self, "a", a)
                object.__setattr__(self, "b", b)

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, R(inp, 0).a
        """,
        "has its own __init__ or __post_init__",
        12,
        15,
    ),
    "while loop": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            while s > 0:
                s = s - 1
            return s, 1
        """,
        "loops are not supported",
        3,
        5,
    ),
    "for loop": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            t = (1, 2)
            for i in t:
                s = s + i
            return s, 1
        """,
        "cannot loop over tuple[int, int]",
        4,
        14,
    ),
    "raise": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            if inp < 0:
                raise ValueError("negative") from ArithmeticError()
            return s, 1
        """,
        "raise ... from e is not supported",
        4,
        43,
    ),
    "nested function": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            def f(x: int) -> int:
                return x
            return s, f(1)
        """,
        "nested functions are not supported",
        3,
        5,
    ),
    "recursion": (
        """
        def f(x: int) -> int:
            return f(x - 1)

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, f(inp)
        """,
        "recursion is not supported: f -> f",
        2,
        12,
    ),
    "mutual recursion": (
        """
        def f(x: int) -> int:
            return g(x)

        def g(x: int) -> int:
            return f(x)

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, f(inp)
        """,
        "recursion is not supported: f -> g -> f",
        5,
        12,
    ),
    "missing return": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            if inp > 0:
                return s, 1
        """,
        "m can end here without a return, but it must return tuple[int, int]",
        3,
        5,
    ),
    "maybe unbound": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            if inp > 0:
                x = 1
            return s, x
        """,
        "x is not assigned on every path through the if on line 3",
        5,
        15,
    ),
    "used before assignment": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            y = x + 1
            x = 2
            return s, y
        """,
        "x is used before it is assigned",
        3,
        9,
    ),
    "types disagree across branches": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            if inp > 0:
                x = 1
            else:
                x = None
            return s, 1
        """,
        "x is None and int on different paths",
        3,
        5,
    ),
    "true division": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s / 2, 1
        """,
        "/ is true division",
        3,
        12,
    ),
    "power": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s ** 2, 1
        """,
        "operator ** is not supported",
        3,
        12,
    ),
    "truthiness of an int": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            if inp:
                return s, 1
            return s, 2
        """,
        "condition is int, expected bool",
        3,
        8,
    ),
    "bool arithmetic": (
        """
        @machine(init=0)
        def m(inp: bool, s: int) -> tuple[int, int]:
            return s + inp, 1
        """,
        "right operand of + is bool, expected int",
        3,
        16,
    ),
    "field of a union": (
        """
        @machine(init=0)
        def m(inp: Deposit | Incr, s: int) -> tuple[int, int]:
            return s, inp.amount
        """,
        "Deposit | Incr has no field amount: use match",
        3,
        15,
    ),
    "unknown field": (
        """
        @machine(init=0)
        def m(inp: Deposit, s: int) -> tuple[int, int]:
            return s, inp.value
        """,
        "Deposit has no field value",
        3,
        15,
    ),
    "missing constructor field": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, Point]:
            return s, Point(x=1)
        """,
        "Point() is missing field y",
        3,
        15,
    ),
    "unknown constructor field": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, Deposit]:
            return s, Deposit(value=1)
        """,
        "Deposit has no parameter value",
        3,
        23,
    ),
    "a keyword for a field a positional argument already filled": (
        """
        from dataclasses import field

        @dataclass(frozen=True)
        class R:
            a: int = field(kw_only=True, default=3)
            b: int

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, R(inp, b=5).a
        """,
        "R got two values for b",
        10,
        22,
    ),
    "unsupported call": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, len((1, 2))
        """,
        "len() measures a str, list or dict, not tuple[int, int]",
        3,
        19,
    ),
    "is": (
        """
        @machine(init=0)
        def m(inp: None | int, s: int) -> tuple[int, bool]:
            return s, inp is s
        """,
        "`is` is supported with None only",
        3,
        15,
    ),
    "equality of records": (
        """
        @machine(init=0)
        def m(inp: Deposit, s: int) -> tuple[int, bool]:
            return s, inp == (1, 2)
        """,
        "== compares values of one type, but these are Deposit and tuple[int, int]",
        3,
        15,
    ),
    "lambda": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            f = lambda x: x
            return s, 1
        """,
        "lambda is not supported",
        3,
        9,
    ),
    "attribute assignment": (
        """
        @machine(init=Point(0, 0))
        def m(inp: int, s: Point) -> tuple[Point, int]:
            s.x = inp
            return s, 1
        """,
        "records are immutable",
        3,
        5,
    ),
    "chained assignment": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            a = b = inp
            return s, a + b
        """,
        "chained assignment",
        3,
        5,
    ),
    "literal out of range": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, 9223372036854775808
        """,
        "integer 9223372036854775808 is outside the signed 64-bit range",
        3,
        15,
    ),
    "class not in the union": (
        """
        @machine(init=0)
        def m(inp: Incr | Count, s: int) -> tuple[int, int]:
            match inp:
                case Deposit():
                    return s, 1
                case _:
                    return s, 2
        """,
        "Deposit() cannot match Incr | Count: it is not one of its cases",
        4,
        14,
    ),
    "capture used after the match": (
        """
        @machine(init=0)
        def m(inp: None | int, s: int) -> tuple[int, int]:
            match inp:
                case None:
                    y = 0
                case int(n):
                    y = n
            return s, n + y
        """,
        "n is a capture of the match on line",
        8,
        15,
    ),
    "sequence pattern length": (
        """
        @machine(init=0)
        def m(inp: tuple[int, int], s: int) -> tuple[int, int]:
            match inp:
                case (a, b, c):
                    return s, a
                case _:
                    return s, 2
        """,
        "this pattern has 3 items but tuple[int, int] has 2",
        4,
        14,
    ),
    "mapping pattern": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            match inp:
                case {"a": 1}:
                    return s, 1
                case _:
                    return s, 2
        """,
        "mapping patterns are not supported",
        4,
        14,
    ),
    "tuple index out of range": (
        """
        @machine(init=0)
        def m(inp: tuple[int, int], s: int) -> tuple[int, int]:
            return s, inp[2]
        """,
        "index 2 is out of range for tuple[int, int]",
        3,
        19,
    ),
    "undefined name": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, UNDEFINED
        """,
        "name UNDEFINED is not defined",
        3,
        15,
    ),
    "non-int module constant": (
        """
        NAME = 1.5

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, NAME
        """,
        "NAME is a float: only int, bool and str constants can be used",
        5,
        15,
    ),
    "print as a statement": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            print(inp)
            return s, inp
        """,
        "print is not available in a machine",
        3,
        5,
    ),
    "a call of a builtin as a statement": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            abs(inp)
            return s, inp
        """,
        "abs(...) as a statement has no effect: only a call of a DSL function",
        3,
        5,
    ),
    "list module constant": (
        """
        COINS = [5, 10, 25]

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, bool]:
            return s, inp in COINS
        """,
        "COINS is a list: only int, bool and str constants can be used: write a helper "
        "function, def coins() -> list[int]: return [5, 10, 25], and call it, coins()",
        5,
        22,
    ),
    "isinstance": (
        """
        @machine(init=0)
        def m(inp: Incr | Count, s: int) -> tuple[int, int]:
            if isinstance(inp, Incr):
                return s + 1, 0
            return s, s
        """,
        "calling isinstance is not supported: call records, builtins (len, str, sorted, sum, "
        "min, max, any, all, abs, range, list, dict), methods or DSL functions; to tell the "
        "alternatives of a union apart, match on them: match inp: case Incr(): ... case _: ...",
        3,
        8,
    ),
    "a str repeated": (
        """
        @machine(init="")
        def m(inp: int, s: str) -> tuple[str, int]:
            return "-" * inp, 0
        """,
        "a str cannot be repeated with * here: build it with a loop or a comprehension, or "
        "write the repeated value out",
        3,
        12,
    ),
    "reversed sorted": (
        """
        @machine(init=[])
        def m(inp: int, s: list[int]) -> tuple[list[int], int]:
            return list(reversed(sorted(s))), 0
        """,
        "reversed(sorted(...)) is written sorted(..., reverse=True) here",
        3,
        17,
    ),
    "tuple module constant": (
        """
        COINS = (5, 10, 25)

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, bool]:
            return s, inp in COINS
        """,
        "COINS is a tuple: only int, bool and str constants can be used: write a helper "
        "function, def coins() -> list[int]: return [5, 10, 25], and call it, coins()",
        5,
        22,
    ),
    "syntax error": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]
            return s, 1
        """,
        "invalid syntax",
        2,
        43,
    ),
    "error while running the source": (
        """
        X = 1 // 0
        """,
        "running the source failed: ZeroDivisionError",
        1,
        1,
    ),
    "migration between mismatched states": (
        """
        @machine(init=0)
        def one(inp: int, s: int) -> tuple[int, int]:
            return s, 1

        @machine(init=(0, 0))
        def m(inp: int, s: tuple[int, int]) -> tuple[tuple[int, int], int]:
            return s, 1

        @migration(one, m)
        def up(old: bool) -> tuple[int, int]:
            return 0, 0
        """,
        "the migration takes bool, but one has state int",
        10,
        8,
    ),
    # Raised by the decorator while the text runs: it had no position (<source>:0).
    "a migration between something that is not a machine": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, 0

        @migration(m, 5)
        def up(old: int) -> int:
            return old
        """,
        "takes two machines",
        5,
        1,
    ),
}


@pytest.mark.parametrize(
    ("snippet", "fragment", "line", "column"), REJECTED.values(), ids=REJECTED.keys()
)
def test_rejected_source_reports_message_and_position(
    snippet: str, fragment: str, line: int, column: int
) -> None:
    """The error is a SourceError naming the problem at the offending line and column."""
    with pytest.raises(SourceError) as error:
        compile_source(HEADER + textwrap.dedent(snippet).lstrip("\n"), "r.py")
    e = error.value
    assert fragment in e.message
    assert e.filename == "r.py"
    assert (e.line - HEADER_LINES, e.column + 1) == (line, column), str(e)
    assert e.source_line.strip()
    assert str(e).splitlines()[-1].strip() == "^"


@pytest.mark.parametrize("terms", [400, 5000])
def test_deeply_nested_source_is_a_source_error(terms: int) -> None:
    """Too deep for our compiler or for Python's own parser: a SourceError either way."""
    body = " + ".join(["x"] * terms)
    source = f"@machine(init=0)\ndef m(x: int, s: int) -> tuple[int, int]:\n    return s, {body}\n"
    with pytest.raises(SourceError, match="nested too deeply"):
        compile_source(source)


def test_exponential_code_copying_is_a_source_error() -> None:
    """Early returns copy the rest of a block into each branch; 3**20 copies are refused."""
    matches = "".join(
        f"    match x:\n        case {i}:\n            return s, {i}\n"
        f"        case {i + 100}:\n            s = s + 1\n        case _:\n            s = s - 1\n"
        for i in range(20)
    )
    source = (
        f"@machine(init=0)\ndef m(x: int, s: int) -> tuple[int, int]:\n{matches}    return s, 0\n"
    )
    with pytest.raises(SourceError, match="copied into too many branches"):
        compile_source(source)


def test_many_early_returns_compile_without_copying() -> None:
    """A chain of guard clauses copies nothing: the rest goes to the one branch that continues."""
    guards = "".join(f"    if x == {i}:\n        return s, {i}\n" for i in range(40))
    source = (
        f"@machine(init=0)\ndef m(x: int, s: int) -> tuple[int, int]:\n{guards}    return s, -1\n"
    )
    m = compile_source(source)["m"]
    assert isinstance(m, Machine)
    assert m.run(39, 7) == (7, 39)
    assert m.run(40, 7) == (7, -1)


def test_branches_nested_beyond_the_bytecode_limit_are_a_source_error() -> None:
    """The verifier allows 48 nested branches; the DSL says so at the function."""
    guards = "".join(f"    if x == {i}:\n        return s, {i}\n" for i in range(60))
    source = (
        f"@machine(init=0)\ndef m(x: int, s: int) -> tuple[int, int]:\n{guards}    return s, -1\n"
    )
    with pytest.raises(SourceError, match="nests its branches 60 deep") as error:
        compile_source(source)
    assert (error.value.line, error.value.column) == (2, 0)


def test_code_too_big_for_the_bytecode_is_reported_by_compile_source() -> None:
    """compile_source promises every error; the bytecode's size limit used to surface only on
    the first .run or .module."""
    expr = " + ".join(f"min(a, {i})" for i in range(60))
    body = "\n".join(f"    s = s + ({expr})" for _ in range(35))
    head = "@machine(init=0)\ndef m(a: int, s: int) -> tuple[int, int]:\n"
    source = f"{head}{body}\n    return s, 0\n"
    with pytest.raises(SourceError, match="too big for the bytecode"):
        compile_source(source)


def test_types_nested_beyond_the_limit_are_a_source_error() -> None:
    """A union of 45 cases is a sum nested 44 deep: rejected at the annotation."""
    classes = "".join(f"@dataclass(frozen=True)\nclass C{i}:\n    pass\n" for i in range(45))
    union = " | ".join(f"C{i}" for i in range(45))
    source = f"{classes}@machine(init=0)\ndef m(x: {union}, s: int) -> tuple[int, int]:\n"
    with pytest.raises(SourceError, match="nests 44 deep as a core type") as error:
        compile_source(source + "    return s, 1\n")
    assert (error.value.line, error.value.column) == (137, 9)


def test_many_locals_keep_the_context_shallow() -> None:
    """Hundreds of bindings compile: the context is rebuilt from the live variables when it
    grows deep, so its type stays within the bytecode's limit."""
    body = "".join(f"    v{i} = x + {i}\n" for i in range(300))
    source = f"@machine(init=0)\ndef m(x: int, s: int) -> tuple[int, int]:\n{body}"
    m = compile_source(source + "    return s + v7, v0 + v299\n")["m"]
    assert isinstance(m, Machine)
    assert m.run(1, 7) == (15, 301) == m(1, 7)
