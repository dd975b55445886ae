"""Joins that take returns: an ``if`` or ``match`` whose branches may return early, with code
after it, compiles that code once (the branches yield ``result + vars``) instead of copying it
into every branch that falls through. Checked against Python (traps included) and for size."""

from __future__ import annotations

import textwrap
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.dsl import Machine, compile_source
from hotswap.examples import counter
from hotswap.lang.terms import term_size
from strategies import outcome, python_outcome, python_values

HEADER = """\
from dataclasses import dataclass


@dataclass(frozen=True)
class A:
    n: int


@dataclass(frozen=True)
class B:
    n: int
    f: bool


"""


@cache
def machine_of(snippet: str) -> Machine[..., Any]:
    m = compile_source(HEADER + textwrap.dedent(snippet))["m"]
    assert isinstance(m, Machine)
    return m


def guarded_steps(count: int) -> str:
    """The shape that used to copy the rest of the block 2**count times."""
    steps = "".join(
        f"    if inp > {i}:\n        s += 1\n        if s > 100:\n            return s, {i + 1}\n"
        for i in range(count)
    )
    return (
        f"@machine(init=0)\ndef m(inp: int, s: int) -> tuple[int, int]:\n{steps}    return s, 0\n"
    )


def guarded_matches(count: int) -> str:
    """Returns inside match cases, more than one case falling through, code after."""
    steps = "".join(
        f"    match inp - {i}:\n"
        f"        case 0:\n            return s, {i}\n"
        f"        case 1:\n            s = s * 2\n"
        f"        case _:\n            s = s + 1\n"
        for i in range(count)
    )
    return (
        f"@machine(init=0)\ndef m(inp: int, s: int) -> tuple[int, int]:\n{steps}    return s, -1\n"
    )


def instructions(m: Machine[..., Any]) -> int:
    return sum(len(f.code) for f in m.cam_module.functions)


ACCEPTED: dict[str, str] = {
    "guarded steps (16)": guarded_steps(16),
    "guarded steps (40)": guarded_steps(40),
    "guarded matches (12)": guarded_matches(12),
    "nested ifs with returns inside a match, code after": """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            t = 0
            match inp:
                case A(n):
                    if n > 10:
                        if n > 20:
                            return s, n
                        t = n // (s - 3)
                    s = s + n
                case B(n, f):
                    if f:
                        return s, -n
                    t = n
                case None:
                    pass
            if t > 5:
                s += t
                if s > 50:
                    return s, 1
            s -= 1
            return s, t
        """,
    "a variable bound only where the branch does not return": """
        @machine(init=0)
        def m(inp: tuple[int, int], s: int) -> tuple[int, int]:
            a, b = inp
            if a > b:
                if a > s:
                    return s, a
                y = a - b
            else:
                y = b * 2
            z = y + s
            if z > 7:
                return z, y
            return s + 1, z
        """,
    "a trap in a branch comes before the code after": """
        @machine(init=0)
        def m(inp: tuple[int, int], s: int) -> tuple[int, int]:
            a, b = inp
            if a > 0:
                q = s // b
                if q > 3:
                    return s, q
            else:
                q = a * b
            s = s * a + q
            if s == 0:
                return 1 // s, 0
            return s, q
        """,
    "a match in a join that takes returns, inside another": """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            if s > 0:
                match inp:
                    case A(n) if n == s:
                        return s, 0
                    case A(n):
                        s = n
                    case _:
                        s = s - 1
                if s < 3:
                    return s, 1
                s = s + 1
            elif s < -5:
                return s, 2
            else:
                s = s + 2
            s = s * 3
            return s, 3
        """,
    "the subject read after the match (copied, keeping it narrowed)": """
        @machine(init=0)
        def m(inp: A | B | None, s: int) -> tuple[int, int]:
            match inp:
                case None:
                    return s, 0
                case A(n):
                    s = s + n
                case B(n, f):
                    s = s - n
            match inp:
                case A(n):
                    return s, n
                case B(n, f):
                    return s, -n
        """,
    "returns with None results and implicit ends": """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int | None]:
            r: int | None = None
            if inp > 3:
                if inp > 9:
                    return s, None
                r = inp
            elif inp < -3:
                r = -inp
            match r:
                case None:
                    return s, r
                case int(v):
                    return s + v, r
        """,
}


@pytest.mark.parametrize("snippet", ACCEPTED.values(), ids=ACCEPTED.keys())
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_joins_taking_returns_mean_what_python_means(snippet: str, data: st.DataObject) -> None:
    m = machine_of(snippet)
    small = data.draw(st.booleans())
    inp = data.draw(python_values(m.input_schema, small))
    state = data.draw(python_values(m.state_schema, small))
    assert outcome(m.run, inp, state) == python_outcome(m.__wrapped__, inp, state)


def test_guarded_steps_on_chosen_inputs() -> None:
    m = machine_of(guarded_steps(16))
    for inp in range(-1, 18):
        for state in (-5, 0, 90, 95, 99, 100, 101, 2**63 - 1):
            assert outcome(m.run, inp, state) == python_outcome(m.__wrapped__, inp, state)


@pytest.mark.parametrize("shape", [guarded_steps, guarded_matches])
def test_code_after_early_returns_grows_linearly(shape: Any) -> None:
    sizes = {n: machine_of(shape(n)) for n in (8, 16, 32)}
    assert instructions(sizes[32]) < 3 * instructions(sizes[16])
    assert instructions(sizes[16]) < 3 * instructions(sizes[8])
    assert term_size(sizes[32].compiled.step) < 3 * term_size(sizes[16].compiled.step)


def test_simple_machines_do_not_grow() -> None:
    """A guard clause (one branch falls through) still goes to the one branch that continues."""
    assert instructions(counter.counter_sm) == 24
    guards = "".join(f"    if x == {i}:\n        return s, {i}\n" for i in range(10))
    m = machine_of(
        f"@machine(init=0)\ndef m(x: int, s: int) -> tuple[int, int]:\n{guards}    return s, -1\n"
    )
    assert m.run(3, 7) == (7, 3)
    assert m.run(10, 7) == (7, -1)
