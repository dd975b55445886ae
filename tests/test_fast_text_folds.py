"""The fast path's cheaper forms agree with the reference VM at every budget (section 11.7).

- a primitive that cannot trap and costs 1 (``INT_TO_STR``, ``MAP_GET``, the lengths...) has its
  cost carried to the next subtraction;
- text known to be short when the code is generated (literals, ``INT_TO_STR``, concatenations of
  those) is concatenated without the length limit's check, and without a comparison of the fuel
  after it (or, under 16 code points, as an instruction of cost 1);
- a list accumulator that gets one append per run of its fold's body is built without the
  length limit's check;
- a fold over a small map's keys, values or items reads the map's dict, and the list is made
  only for a large map, when nothing else reads it;
- a fold whose only variable costs are concatenations gets its fuel taken up front while the
  texts it makes are short, and starts again, metered, at the first that is not.

None of that may change a result, a trap or the fuel used."""

from __future__ import annotations

from typing import Any

import pytest

from hotswap.cam.codegen import generate_source
from hotswap.cam.loaded import LoadedModule
from hotswap.dsl import Machine, compile_source
from hotswap.errors import Trap
from hotswap.lang.ints import INT_MAX, INT_MIN

_SOURCE = """
from hotswap.dsl import machine


@machine(init=0)
def texts(cmd: dict[str, int], n: int) -> tuple[int, str]:
    names = [f"{v}x{k}" for k, v in cmd.items()]
    short = [f"{v}:" for v in cmd.values()]
    twice = []
    for k in cmd:
        twice.append(k)
        twice.append(k + "!")
    values = list(cmd.values())
    total = 0
    for v in cmd.values():
        total += v
    found = cmd.get("a", 0)
    size = len(cmd) + len(names) + len(values)
    tag = str(size) + "-" + str(n)
    head = ", ".join(sorted(names)) + "|" + "".join(short) + "|" + "/".join(twice)
    return n + 1, head + tag + str(total) + str(found)


@machine(init=0)
def joined(cmd: dict[str, int], n: int) -> tuple[int, str]:
    text = ""
    for k in cmd:
        text = text + k + ";"
    count = 0
    for k, v in cmd.items():
        label = k + "=" + str(v)
        count += len(label)
    return n + count, text


@machine(init=0)
def tiny(cmd: int, n: int) -> tuple[int, str]:
    label = str(cmd) + "#" + str(n)
    count = len(label) + cmd
    return count, label + str(count)
"""


def _machines() -> dict[str, Machine[..., Any]]:
    found = compile_source(_SOURCE)
    return {k: v for k, v in found.items() if isinstance(v, Machine)}


MACHINES = _machines()


def _outcome(loaded: LoadedModule, value: Any, executor: str, fuel: int) -> tuple[Any, ...]:
    index = loaded.machine.step if loaded.machine else -1
    try:
        result, used = loaded.run_metered(index, value, executor, fuel)  # type: ignore[arg-type]
    except Trap as trap:
        return ("trap", trap.kind, str(trap))
    return ("ok", result, used)


def _agree(m: Machine[..., Any], inp: Any, state: Any, every: int = 1) -> tuple[Any, ...]:
    loaded = m.loaded
    value = (m.to_core_input(inp), m.to_core_state(state))
    index = loaded.machine.step if loaded.machine else -1
    exact = _outcome(loaded, value, "vm", 1 << 40)
    if exact[0] == "trap":
        assert _outcome(loaded, value, "fast", 1 << 40) == exact
        return exact
    used = exact[2]
    budgets = sorted({*range(0, used + 3, every), *range(max(0, used - 40), used + 3)})
    for fuel in budgets:
        fast, vm = _outcome(loaded, value, "fast", fuel), _outcome(loaded, value, "vm", fuel)
        assert fast == vm, (fuel, fast, vm)
    assert loaded.run_metered(index, value, "fast", used)[1] == used
    return exact


def test_the_forms_are_in_the_generated_code() -> None:
    m = MACHINES["texts"]
    index = m.loaded.machine.step if m.loaded.machine else -1
    source = generate_source(m.loaded.module.functions[index].code)
    assert source.count(" is None: v") == 4  # four folds read a small map's dict
    assert ".values() if " in source and ".items() if " in source
    # only the list appended to twice per run, in the fold's two copies
    assert source.count(">= 16777216") == 4
    assert source.count("raise _Long") == 4  # the two texts of the names, and the "!"
    assert "_p26(" in source


MAPS = [
    {},
    {"a": 1},
    {"a": 1, "bb": 22, "ccc": -3},
    {"a": INT_MIN, "b": INT_MAX, "é" * 20: 5, "long key of more than sixteen": 7},
    {f"k{i}": i * 1000003 for i in range(40)},  # a large map: the lists are made
]


@pytest.mark.parametrize("cmd", MAPS, ids=range(len(MAPS)))
def test_texts_agree_with_the_vm_at_every_budget(cmd: dict[str, int]) -> None:
    m = MACHINES["texts"]
    every = 1 if len(cmd) < 10 else 7
    outcome = _agree(m, cmd, 3, every)
    assert outcome[0] == "ok" and outcome[1][1] == m.to_core_output(m(cmd, 3)[1])
    assert m.run(cmd, 3) == m(cmd, 3)


def test_an_overflow_after_short_texts_is_the_vms_trap_at_every_budget() -> None:
    m = MACHINES["texts"]
    outcome = _agree(m, {"a": INT_MAX, "b": 1}, 3)  # the total overflows after the texts
    assert outcome[:2] == ("trap", "overflow")
    outcome = _agree(m, {"a": 1}, INT_MAX)  # n + 1 overflows
    assert outcome[:2] == ("trap", "overflow")


@pytest.mark.parametrize("cmd", [0, 7, -1, INT_MAX, INT_MIN, 10**15])
@pytest.mark.parametrize("state", [0, 5, INT_MAX, INT_MIN])
def test_short_texts_agree_with_the_vm_at_every_budget(cmd: int, state: int) -> None:
    outcome = _agree(MACHINES["tiny"], cmd, state)
    if outcome[0] == "ok":
        assert MACHINES["tiny"].run(cmd, state) == MACHINES["tiny"](cmd, state)


JOINED = [
    {},
    {"a": 1, "b": 2},
    {"abc": 1, "defg": 2, "hi": 3, "jklmn": 4},  # the text passes 16 code points midway
    {"a" * 15: 1},  # a label of exactly 17
    {"a" * 12: 1, "b": 2},  # a label of 14, then of 3: short throughout
    {f"k{i}": i for i in range(12)},
]


@pytest.mark.parametrize("cmd", JOINED, ids=range(len(JOINED)))
def test_folds_started_again_once_a_text_is_long_agree_with_the_vm_at_every_budget(
    cmd: dict[str, int],
) -> None:
    m = MACHINES["joined"]
    index = m.loaded.machine.step if m.loaded.machine else -1
    assert generate_source(m.loaded.module.functions[index].code).count("except _Long") == 2
    outcome = _agree(m, cmd, 3)
    assert outcome[0] == "ok" and outcome[1][1] == m.to_core_output(m(cmd, 3)[1])
    assert m.run(cmd, 3) == m(cmd, 3)
    outcome = _agree(m, cmd, INT_MAX)  # n + count overflows after both folds, if cmd has keys
    assert outcome[:2] == (("trap", "overflow") if cmd else ("ok", (INT_MAX, "")))


def test_run_that_runs_out_of_its_fuel_traps_out_of_fuel() -> None:
    """``.run`` calls the metered step itself: running out is the trap ``out_of_fuel``."""
    found = compile_source(
        "from hotswap.dsl import machine\n"
        "@machine(init=0)\n"
        "def spin(cmd: int, n: int) -> tuple[int, int]:\n"
        "    total = 0\n"
        "    for i in range(cmd):\n"
        "        total += i\n"
        "    return n, total\n"
    )
    m = found["spin"]
    assert isinstance(m, Machine)
    assert m.run(10, 0) == (0, 45) == m(10, 0)
    with pytest.raises(Trap) as caught:
        m.run(900_000, 0)
    assert caught.value.kind == "out_of_fuel"
