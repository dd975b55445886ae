"""``match`` as Python runs it: captures bound before the guard (and kept when it fails), cases
matched again on a variable an enclosing match or the decision tree narrowed, and the patterns
that must be rejected. Each source here once compiled to something that disagreed with its plain
Python, crashed with an internal error, or was rejected although it is valid."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.dsl import Machine, RecordSchema, UnionSchema, compile_source
from hotswap.errors import SourceError
from strategies import outcome, python_outcome, python_values

HEADER = """\
from dataclasses import dataclass


@dataclass(frozen=True)
class A:
    n: int
    f: bool


@dataclass(frozen=True)
class B:
    m: int

"""
HEADER_LINES = HEADER.count("\n")


def machine_of(snippet: str) -> Machine[..., Any]:
    m = compile_source(HEADER + textwrap.dedent(snippet))["m"]
    assert isinstance(m, Machine)
    return m


def rejected(snippet: str) -> SourceError:
    with pytest.raises(SourceError) as info:
        compile_source(HEADER + textwrap.dedent(snippet), "r.py")
    return info.value


# --- sources that must compile and mean what Python means ----------------------------------

AGREE = {
    # Python binds a case's captures when its pattern matches, before the guard runs: after a
    # failed guard they keep the captured values (they used to revert to the old ones).
    "captures survive a failed guard": """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            x = 0
            match inp:
                case B(x) if x > 5:
                    return s, x
                case _:
                    pass
            return s, x
        """,
    "a capture rebinding a parameter survives a failed guard": """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            match inp:
                case A(n=s, f=False) | A(n=s, f=True) if s > 5:
                    return s, 1
                case _:
                    return s, 2
        """,
    "captures of a failed guard reach the join": """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            x = 0
            match inp:
                case B(x) if x > 5:
                    y = 1
                case A(n=x) if x < 0:
                    y = 3
                case _:
                    y = 2
            return x, y
        """,
    # A variable narrowed by an enclosing match (or a case body copied into several arms of a
    # decision tree) may be matched again on its whole union (used to be "B() cannot match A").
    "a match on a variable narrowed by an early return": """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            match inp:
                case None:
                    return s, 1
                case A(n):
                    s = n
                case B(k):
                    s = k
            match inp:
                case A():
                    return s, 2
                case B():
                    return s, 3
        """,
    "a match on a variable narrowed in a copied case body": """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            match inp:
                case A(n) if n > s:
                    return s, n
                case _:
                    match inp:
                        case A(n):
                            return n, 1
                        case B(m):
                            return m, 2
                        case None:
                            return s, 3
        """,
    "a match on a capture narrowed by the decision tree": """
        @machine(init=0)
        def m(inp: tuple[A | B | None, int], s: int) -> tuple[int, int]:
            match inp:
                case (A(n, _), 0) | (B(n), 1):
                    return n, 1
                case (x, y):
                    match x:
                        case None:
                            return y, 4
                        case _:
                            return s, 5
        """,
    "a capture joined after the match": """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            match inp:
                case B(m=x) | A(n=x):
                    pass
                case None:
                    x = 0
            return s, x
        """,
}


@settings(max_examples=100, deadline=None)
@pytest.mark.parametrize("snippet", AGREE.values(), ids=AGREE.keys())
@given(data=st.data())
def test_match_means_what_python_means(snippet: str, data: st.DataObject) -> None:
    m = machine_of(snippet)
    inp = data.draw(python_values(m.input_schema))
    state = data.draw(python_values(m.state_schema))
    assert outcome(m.run, inp, state) == python_outcome(m.__wrapped__, inp, state)


def test_capture_after_failed_guard_example() -> None:
    m = machine_of(AGREE["captures survive a failed guard"])
    schema = m.input_schema
    assert isinstance(schema, UnionSchema)
    record = schema.alternatives[1]
    assert isinstance(record, RecordSchema) and record.cls is not None
    b = record.cls(3)
    assert m(b, 0) == (0, 3) == m.run(b, 0)


# --- sources that must be rejected, with the message and the position -----------------------

REJECT = {
    # Python's isinstance makes `case R()` match a subclass too: such a union compiled to a
    # decision tree that disagreed with Python.
    "a record and its subclass in one union": (
        """
        @dataclass(frozen=True)
        class S(B):
            k: int

        @machine(init=0)
        def m(inp: B | S, s: int) -> tuple[int, int]:
            match inp:
                case B():
                    return s, 1
                case S():
                    return s, 2
        """,
        "S is a subclass of B",
        (6, 11),
    ),
    # Used to escape as an InternalError from the term checker.
    "an int pattern outside 64 bits": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            match inp:
                case 9223372036854775808:
                    return s, 0
                case _:
                    return s, 1
        """,
        "outside the signed 64-bit range",
        (4, 13),
    ),
    # Used to escape as an InternalError ("x is int, not None | A") at the join.
    "a capture into a declared variable of another type": (
        """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            x: None | A = None
            match inp:
                case B(x):
                    pass
                case _:
                    x = A(1, True)
            return s, 0
        """,
        "x is declared None | A, but this pattern captures int",
        (5, 15),
    ),
    "a capture into a parameter of another type": (
        """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            match inp:
                case A(f=s):
                    return s, 0
                case _:
                    return s, 1
        """,
        "s is declared int, but this pattern captures bool",
        (4, 17),
    ),
    # In Python the local A is what the pattern calls (a TypeError at run time); the pattern
    # used to resolve A as the module's class and compile.
    "a class pattern naming a local variable": (
        """
        @machine(init=0)
        def m(inp: A | None, s: int) -> tuple[int, int]:
            A = 5
            match inp:
                case A(n):
                    return s, n
                case None:
                    return s, A
        """,
        "A in a class pattern must be a record",
        (5, 13),
    ),
}


@pytest.mark.parametrize(("snippet", "message", "position"), REJECT.values(), ids=REJECT.keys())
def test_rejected_match(snippet: str, message: str, position: tuple[int, int]) -> None:
    e = rejected(snippet)
    assert message in e.message
    assert e.filename == "r.py"
    assert (e.line - HEADER_LINES - 1, e.column) == position  # the snippet starts with \n
