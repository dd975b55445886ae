"""Fuel on the node: every step, init and migration runs with the node's budget (``--fuel``);
running out is the trap ``out_of_fuel``, which changes nothing, and recovery replays what was
accepted whatever budget the restarted node has."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from hotswap.cam.build import machine_module, migration_module
from hotswap.cam.limits import DEFAULT_FUEL
from hotswap.cam.loaded import load
from hotswap.cam.module import Module, encode_module
from hotswap.cam.values import encode_value
from hotswap.client import Client
from hotswap.errors import HotswapError, NodeError, UpgradeRejected
from hotswap.lang.terms import (
    FST,
    ID,
    SND,
    TERMINAL,
    Case,
    Fanout,
    Fold,
    Inl,
    Lit,
    Op,
    Prim,
    Term,
    compose,
)
from hotswap.lang.types import INT, UNIT
from hotswap.node.cli import add_node_command
from hotswap.node.main import NodeOptions, open_service
from hotswap.node.memory import MemoryNode
from hotswap.node.registry import MAX_FUEL, Registry
from hotswap.node.store import Store
from hotswap.node.trace import Trace
from nodeproc import NodeProcess

#: ``(n, s) -> s + n``, counting one by one over ``range(0, n)``: costs 19 + 9n fuel.
_BODY = compose(SND, SND, Fanout(ID, Lit(1)), Prim(Op.ADD), Inl(UNIT))
COUNT: Term = compose(
    Fanout(TERMINAL, Fanout(compose(FST, Fanout(Lit(0), ID), Prim(Op.RANGE)), SND)),
    Fold(_BODY),
    Case(ID, Lit(0)),
)


def cost(n: int) -> int:
    """The fuel one input ``n`` takes (the step, counted by the VM)."""
    return 19 + 9 * n


def looping_module(start: int = 0) -> Module:
    """Input ``n``, state ``s``: the new state and the output are ``s + n``, in ``n`` rounds of a
    loop, so an input costs as much fuel as it says; ``init`` loops ``start`` times too."""
    init = compose(Fanout(Lit(start), Lit(0)), COUNT)
    return machine_module(INT, INT, INT, init, compose(COUNT, Fanout(ID, ID)))


def looping_migration() -> Module:
    """``s -> s``, in ``s`` rounds of a loop."""
    return migration_module(INT, INT, compose(Fanout(ID, Lit(0)), COUNT))


def test_the_cost_model_is_what_these_tests_assume() -> None:
    code = load(looping_module())
    assert code.machine is not None
    for n in (0, 1, 10, 300):
        assert code.run_metered(code.machine.step, (n, 5), "vm") == ((n + 5, n + 5), cost(n))


def test_a_step_out_of_fuel_traps_and_changes_nothing() -> None:
    registry = Registry(fuel=cost(100))
    machine = registry.start("loop", load(looping_module()))
    assert registry.step_value(machine, 100).state == 100  # exactly the budget: runs
    with pytest.raises(NodeError) as trapped:
        registry.step_value(machine, 101)
    assert trapped.value.code == "trap" and trapped.value.trap == "out_of_fuel"
    assert f"all of its {cost(100)} units of fuel" in str(trapped.value)
    assert (machine.state, machine.inputs, len(machine.recent)) == (100, 1, 1)
    assert registry.step_value(machine, 1).state == 101  # the next input works


def test_init_and_migration_run_with_the_budget() -> None:
    registry = Registry(fuel=1000)
    with pytest.raises(NodeError, match="init of 'big' trapped") as trapped:
        registry.start("big", load(looping_module(start=1000)))
    assert trapped.value.trap == "out_of_fuel"
    assert "big" not in registry.machines
    machine = registry.start("loop", load(looping_module(start=10)))
    registry.step_value(machine, 100)  # state 110: the migration loops 110 times, over 1000 fuel
    v1, same = machine.identity, encode_module(looping_migration())
    v2 = encode_module(looping_module(start=1))
    with pytest.raises(UpgradeRejected) as refused:
        registry.upgrade("loop", v1, v2, same)
    assert refused.value.code == "migration_trap" and refused.value.trap == "out_of_fuel"
    assert (machine.identity, machine.state, machine.generation) == (v1, 110, 0)
    with pytest.raises(UpgradeRejected, match="out_of_fuel"):  # a dry run runs the same checks
        registry.dry_run("loop", v1, v2, same)
    roomy = Registry(fuel=10 * cost(110))
    roomy.restore(machine)
    roomy.upgrade("loop", v1, v2, same)
    assert (machine.state, machine.generation) == (110, 1)


def test_a_dry_run_and_a_revert_replay_with_the_budget() -> None:
    """The replays of an upgrade rehearsal count fuel like live steps: a recent input the new
    code cannot afford is a trap in the dry run; reverting a trial skips the inputs the old
    code cannot afford, as it skips those that trap."""
    registry = Registry(fuel=cost(50))
    flat = load(machine_module(INT, INT, INT, Lit(0), compose(FST, Fanout(ID, ID))))  # no loop
    looping, same = load(looping_module()), encode_module(migration_module(INT, INT, ID))
    dry = registry.start("dry", flat)
    for n in (60, 10):
        registry.step_value(dry, n)
    report = registry.dry_run("dry", flat.identity, looping.data, same)
    assert (report.replayed, report.differing, report.traps) == (2, 1, 1)
    assert report.differences[0].seq == 0 and "units of fuel" in report.differences[0].trap

    machine = registry.start("trial", looping)
    registry.step_value(machine, 5)
    registry.upgrade("trial", looping.identity, flat.data, same, trial=10)
    for n in (60, 10):  # cheap on the trial's code; 60 is too dear for the old code
        registry.step_value(machine, n)
    ended = registry.revert("trial")
    assert (ended.replayed, ended.skipped) == (1, 1)
    assert (machine.identity, machine.state, machine.inputs) == (looping.identity, 15, 2)


def test_recovery_replays_what_was_accepted_even_with_less_fuel(tmp_path: Path) -> None:
    """An input accepted under a large budget is replayed after a restart with a budget too
    small for it (recovery ignores the budget: the input already ran), a migration likewise;
    new inputs get the new budget."""
    store = Store(tmp_path / "node.sqlite3")
    registry = Registry(fuel=DEFAULT_FUEL)
    machine = registry.start("loop", load(looping_module()))
    store.log_start(machine)
    for n in (5000, 7):
        store.log_input(machine, encode_value(n, INT), registry.step_value(machine, n).identity)
    v1, v2 = machine.identity, encode_module(looping_module(start=3))
    store.log_upgrade(machine, registry.upgrade("loop", v1, v2, encode_module(looping_migration())))
    store.log_input(machine, encode_value(2, INT), registry.step_value(machine, 2).identity)
    store.commit(registry.machines)
    store.db.close()  # killed: nothing snapshotted since the start
    options = NodeOptions(data=tmp_path, fuel=200)
    service = open_service(options, Trace("off"))
    try:
        back = service.registry.get("loop")
        assert (back.state, back.inputs, back.generation) == (5009, 3, 1)
        with pytest.raises(NodeError, match="out_of_fuel"):
            service.registry.step_value(back, 5000)
        assert service.registry.step_value(back, 10).state == 5019
    finally:
        service.store.close()


def test_the_in_memory_node_takes_the_fuel() -> None:
    with MemoryNode({"loop": looping_module()}, fuel=cost(20)) as node:
        with Client(transport=node.connection()) as client:
            assert client.send("loop", 20) == 20
            with pytest.raises(NodeError) as trapped:
                client.send("loop", 21)
            assert trapped.value.trap == "out_of_fuel"
            assert client.send("loop", 1) == 21
            assert client.status("loop").state == 21
        node.reopen()
        with Client(transport=node.connection()) as client:
            assert client.status("loop").inputs == 2


@pytest.mark.parametrize("fuel", [0, -5, MAX_FUEL + 1, 2.5, True, "10"])
def test_a_bad_budget_is_refused_before_anything_opens(tmp_path: Path, fuel: object) -> None:
    options = NodeOptions(data=tmp_path / "d", machines=(("loop", looping_module()),))
    with pytest.raises(HotswapError, match=r"bad fuel .*whole number from 1 to"):
        open_service(dataclasses.replace(options, fuel=fuel), Trace("off"))  # type: ignore[arg-type]
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("text", ["0", "-1", "ten", "1.5", "", str(MAX_FUEL + 1)])
def test_the_fuel_option_says_what_it_takes(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse  # noqa: PLC0415 - only here

    parser = argparse.ArgumentParser(prog="hotswap")
    add_node_command(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["node", "--fuel", text])
    err = capsys.readouterr().err
    assert "argument --fuel: expected the fuel budget of each step as a whole number" in err
    assert repr(text) in err
    args = parser.parse_args(["node", "--fuel", "1_000"])
    assert args.fuel == 1000
    assert parser.parse_args(["node"]).fuel == DEFAULT_FUEL


def _reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: Module) -> str:
    """A ``module:attribute`` reference a node process can import: ``module``'s bytes."""
    (tmp_path / "fuel_machines.py").write_text(f"LOOPING = {encode_module(module)!r}\n")
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *([path] if path else [])]))
    return "fuel_machines:LOOPING"


def test_a_real_node_traps_out_of_fuel_and_recovers_with_less(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hotswap node --fuel``: a step that runs out is the trap ``out_of_fuel`` with the state
    unchanged, and the next input works; a node killed after accepting an input that needed
    more fuel than it is restarted with recovers it (replay ignores the budget)."""
    ref = _reference(tmp_path, monkeypatch, looping_module())
    data = tmp_path / "data"
    with NodeProcess(data, {"loop": ref}, "--fuel", str(cost(1000)), "--trace", "off") as node:
        with Client(node.address) as client:
            assert client.send("loop", 1000) == 1000
            with pytest.raises(NodeError) as trapped:
                client.send("loop", 1001)
            assert trapped.value.code == "trap" and trapped.value.trap == "out_of_fuel"
            assert client.status("loop").state == 1000
            assert client.send("loop", 1) == 1001
        node.kill()
    with NodeProcess(data, {"loop": ref}, "--fuel", "100", "--trace", "off") as node:
        assert any("Recovered machine 'loop'" in line for line in node.lines(0))
        with Client(node.address) as client:
            status = client.status("loop")
            assert (status.state, status.inputs) == (1001, 2)
            with pytest.raises(NodeError, match="out_of_fuel"):
                client.send("loop", 10)
            assert client.send("loop", 5) == 1006
        assert node.stop() == 0
