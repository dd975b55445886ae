"""The decorators and compile_source: plain Python stays callable, compiled forms are lazy, and
every mistake surfaces as one of our errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hotswap.cam.loaded import load_module
from hotswap.dsl import Machine, Migration, compile_source, machine, migration
from hotswap.errors import HotswapError, SourceError, ValueTypeError
from hotswap.examples.counter import Count, Incr, counter_sm, counter_sm2, upgrade_state
from hotswap.lang.evaluate import evaluate
from hotswap.lang.types import BOOL, INT, UNIT, Prod, Sum


def test_decorated_functions_stay_plain_python() -> None:
    """Calling a machine or migration runs the Python function itself."""
    assert counter_sm(Incr(), 0) == (1, None)
    assert counter_sm(Count(), 3) == (3, 3)
    assert upgrade_state(5) == (5, 0)
    assert counter_sm.__name__ == "counter_sm"
    assert counter_sm.__wrapped__.__name__ == "counter_sm"


def test_run_goes_through_the_module() -> None:
    """``.run`` converts values, steps the loaded module and converts back."""
    assert counter_sm.run(Incr(), 0) == (1, None)
    assert counter_sm.run(Count(), 1) == (1, 1)
    assert counter_sm.run(inp=Count(), state=2) == (2, 2)
    assert counter_sm2.run(Incr(), (1, 0)) == ((1, 1), None)
    assert upgrade_state.run(5) == (5, 0)


_ARGUMENTS = """
@machine(init=0)
def adder(inp: int, total: int) -> tuple[int, int]:
    return total + inp, inp
"""


def test_run_binds_its_arguments_as_the_plain_function_does() -> None:
    """Once compiled, ``.run`` is the compiled runner itself (nothing in between for
    ``run(input, state)``): every other way of calling it binds like the plain function, and
    every wrong call is still a HotswapError naming the machine, before and after."""
    adder = compile_source(_ARGUMENTS)["adder"]
    assert isinstance(adder, Machine)
    wrong: list[tuple[tuple[object, ...], dict[str, object]]] = [
        ((), {}),
        ((1,), {}),
        ((1, 2, 3), {}),
        ((1,), {"inp": 2}),
        ((1, 2), {"other": 3}),
        ((), {"inp": 1, "state": 2}),
    ]
    for first in (True, False):
        for args, kwargs in wrong:
            with pytest.raises(HotswapError, match="adder") as info:
                adder.run(*args, **kwargs)
            assert type(info.value) is HotswapError
        if first:  # the calls above did not compile it: this one does
            assert "run" not in vars(adder)
            assert adder.run(1, 2) == (3, 1)
            assert vars(adder)["run"] is adder._runner
    assert adder.run(1, total=5) == adder(1, total=5) == (6, 1)
    assert adder.run(total=5, inp=2) == adder(total=5, inp=2) == (7, 2)
    with pytest.raises(ValueTypeError, match="state: expected int"):
        adder.run(1, total="x")


def test_module_identity_and_types() -> None:
    """The module bytes decode to the same identity and carry the machine's core types."""
    loaded = load_module(counter_sm.module)
    assert loaded.identity == counter_sm.identity
    assert len(counter_sm.identity) == 64
    int(counter_sm.identity, 16)
    assert loaded.machine is not None
    assert (loaded.machine.input, loaded.machine.state, loaded.machine.output) == (
        BOOL,
        INT,
        Sum(UNIT, INT),
    )
    assert (counter_sm.input_type, counter_sm.state_type, counter_sm.output_type) == (
        BOOL,
        INT,
        Sum(UNIT, INT),
    )
    assert counter_sm2.state_type == Prod(INT, INT)
    assert counter_sm.identity != counter_sm2.identity != upgrade_state.identity


def test_values_convert_through_the_machine() -> None:
    """The node and client convert values with the machine's own conversions."""
    assert counter_sm.to_core_input(Incr()) == (0, ())
    assert counter_sm.from_core_input((1, ())) == Count()
    assert counter_sm.to_core_output(None) == (0, ())
    assert counter_sm.from_core_output((1, 4)) == 4
    assert counter_sm2.to_core_state((1, 2)) == (1, 2)
    assert counter_sm2.from_core_state((3, 4)) == (3, 4)
    with pytest.raises(ValueTypeError, match=r"input: expected Incr \| Count"):
        counter_sm.to_core_input(5)
    with pytest.raises(ValueTypeError):
        counter_sm.run(Incr(), "zero")  # type: ignore[arg-type]


def test_wrong_call_shape_is_our_error() -> None:
    """Calling ``.run`` with the wrong arguments is a HotswapError naming the machine (that
    class itself: no subclass such as an InternalError)."""
    with pytest.raises(HotswapError, match="counter_sm") as info:
        counter_sm.run(Incr())  # type: ignore[call-arg]
    assert type(info.value) is HotswapError


def test_evaluate_uses_the_reference_evaluator() -> None:
    """``.evaluate`` runs the step term itself, without the CAM."""
    assert counter_sm.evaluate(Incr(), 41) == (42, None)
    assert evaluate(counter_sm.compiled.step, ((1, ()), 9)) == (9, (1, 9))
    assert upgrade_state.evaluate(2) == (2, 0)


def test_machines_in_a_test_function_use_local_classes() -> None:
    """Classes local to a function resolve through the closure and the annotations."""

    @dataclass(frozen=True)
    class Ping:
        n: int

    @dataclass(frozen=True)
    class Pong:
        n: int

    limit = 10

    @machine(init=0)
    def local(inp: Ping, state: int) -> tuple[int, Pong]:
        return state + 1, Pong(min(inp.n, limit))

    assert local.run(Ping(50), 0) == (1, Pong(10))
    assert local(Ping(5), 0) == (1, Pong(5))


def test_compilation_is_lazy_and_helpers_may_come_later() -> None:
    """A machine may call a helper defined after it; errors surface on first use."""
    found = compile_source(
        """
@machine(init=0)
def early(inp: int, state: int) -> tuple[int, int]:
    return state, helper(inp)

def helper(x: int) -> int:
    return x * 2
"""
    )
    assert found["early"].run(4, 0) == (0, 8)

    @machine(init=0)
    def broken(inp: int, state: int) -> tuple[int, int]:
        return state, inp / 2  # type: ignore[return-value]

    assert broken(4, 0) == (0, 2.0)
    with pytest.raises(SourceError, match="true division"):
        broken.compile()
    with pytest.raises(SourceError, match="true division"):
        _ = broken.module


def test_compile_source_returns_machines_and_migrations_in_order() -> None:
    """The result maps names to compiled machines and migrations, in definition order."""
    found = compile_source(
        """
@dataclass(frozen=True)
class Tick:
    pass

@machine(init=0)
def v1(inp: Tick, state: int) -> tuple[int, int]:
    return state + 1, state

@machine(init=(0, 0))
def v2(inp: Tick, state: tuple[int, int]) -> tuple[tuple[int, int], int]:
    return (state[0], state[1] + 1), state[1]

@migration(v1, v2)
def up(old: int) -> tuple[int, int]:
    return old, old
""",
        filename="ticks.py",
    )
    assert list(found) == ["v1", "v2", "up"]
    v1, up = found["v1"], found["up"]
    assert isinstance(v1, Machine)
    assert isinstance(up, Migration)
    assert up.run(3) == (3, 3)
    assert repr(up) == "<migration up: v1 -> v2>"


def test_compile_source_errors_name_the_file() -> None:
    """A given filename appears in the error, with the line and a caret."""
    with pytest.raises(SourceError) as error:
        source = "@machine(init=0)\ndef m(i: int, s: int) -> tuple[int, int]:\n    return s\n"
        compile_source(source, "m.py")
    assert str(error.value).startswith("m.py:3:12: return type is int")
    assert str(error.value).splitlines()[1:] == ["        return s", "               ^"]


def test_migration_checks_both_state_types() -> None:
    """The migration's parameter and result must be the two machines' state types."""

    with pytest.raises(SourceError, match="the migration returns int, but counter_sm2"):

        @migration(counter_sm, counter_sm2)
        def wrong(old: int) -> int:
            return old

        wrong.compile()


def test_decorators_reject_non_functions() -> None:
    """Only plain functions can be machines, and migrations connect two machines."""
    with pytest.raises(SourceError, match="plain function"):
        machine(init=0)(print)
    with pytest.raises(SourceError, match="takes two machines"):
        migration(counter_sm, upgrade_state)(lambda old: old)  # type: ignore[arg-type]


def test_source_must_be_available() -> None:
    """A function without source text gets a clear SourceError."""
    namespace: dict[str, object] = {}
    exec("def f(i: int, s: int) -> tuple[int, int]:\n    return s, i\n", namespace)
    m: Machine[..., object] = machine(init=0)(namespace["f"])  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="source of f is not available"):
        m.compile()
