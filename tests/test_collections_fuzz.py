"""The module mutation fuzz over format 2: seeds with text, lists, maps, folds and fail.

The long run is `make fuzz` (bench/fuzz_modules.py); this one is a few thousand mutants.
"""

from __future__ import annotations

import random

import pytest

import hotswap.cam.fuzz as fuzz_module
from hotswap.cam.fuzz import (
    collection_seeds,
    exercise,
    fuzz,
    nested_module,
    some_value,
)
from hotswap.cam.instructions import Opcode
from hotswap.cam.loaded import Executor, LoadedModule, load, load_module
from hotswap.cam.module import decode_module
from hotswap.errors import InternalError
from hotswap.lang.evaluate import Value
from hotswap.lang.terms import V1_OPS, Op
from hotswap.lang.types import INT, STR, ListT, MapT, Prod, Sum
from hotswap.lang.values import check_value
from strategies import components


def test_the_seeds_use_every_new_instruction_and_type() -> None:
    """Between them the seeds hold every opcode of format 2, most new primitives, and a Str,
    a List and a Map type; each is format 2 and runs as it should on both executors."""
    opcodes: set[Opcode] = set()
    prims: set[Op] = set()
    kinds: set[type] = set()
    for data in collection_seeds():
        assert data[4] == 2
        module = decode_module(data)
        for f in module.functions:
            opcodes.update(i.op for i in f.code)
            prims.update(i.arg for i in f.code if isinstance(i.arg, Op))
            for t in (f.dom, f.cod):
                kinds.update(type(c) for c in components(t))
        exercise(load_module(data), random.Random(0))
    assert {Opcode.STR, Opcode.EMPTY, Opcode.FOLD, Opcode.NEXT, Opcode.FAIL} <= opcodes
    assert {type(STR), ListT, MapT} <= kinds
    assert len(prims - V1_OPS) >= 20
    assert {Op.STR_SPLIT, Op.STR_FIND} <= prims


def test_some_value_makes_values_of_every_type() -> None:
    rng = random.Random(7)
    for t in (STR, ListT(Prod(INT, STR)), MapT(Sum(STR, INT), ListT(STR)), MapT(INT, INT)):
        for _ in range(20):
            check_value(some_value(t, rng), t)


def test_three_thousand_mutants_of_format_2_raise_only_our_errors() -> None:
    """Flipped, inserted and deleted bytes of the format 2 seeds: only our rejection errors,
    and every accepted mutant runs with the VM and the fast path agreeing, fuel included."""
    report = fuzz(collection_seeds(), 3_000, seed=20260807)
    assert report.mutants == 3_000
    assert sum(report.reasons.values()) > 2_500
    assert report.accepted > 50


def test_the_fuzz_compares_fuel(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast path that reported one unit of fuel more than the VM would be caught."""
    real = LoadedModule.run_metered

    def skewed(
        self: LoadedModule, index: int, value: Value, executor: Executor = "fast", fuel: int = 0
    ) -> tuple[Value, int]:
        result, used = real(self, index, value, executor, fuel)
        return result, used + (executor == "fast")

    monkeypatch.setattr(LoadedModule, "run_metered", skewed)
    with pytest.raises(AssertionError, match="disagrees"):
        exercise(load(nested_module()), random.Random(0))


def test_the_fuzz_stops_at_an_internal_error_rather_than_count_it_a_rejection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ``InternalError`` is our own error but a bug (say, generated code that does not
    compile): the fuzz must report it, not file it among the reasons a mutant was refused."""

    def broken(data: bytes) -> LoadedModule:
        raise InternalError("generated code does not compile")

    monkeypatch.setattr(fuzz_module, "load_module", broken)
    with pytest.raises(InternalError, match="does not compile"):
        fuzz(collection_seeds(), 5, seed=1)
