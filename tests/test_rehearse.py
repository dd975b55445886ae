"""Dry runs and trial upgrades: an upgrade rehearsed on real traffic, or made provisionally
and taken back exactly (``node/rehearse.py``), through the client and an in-memory node."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hotswap.client import Client, Upgrade
from hotswap.dsl import machine, migration
from hotswap.errors import HotswapError, NodeError, StepTrapped, UpgradeRejected
from hotswap.examples.counter import (
    Count,
    Incr,
    counter_sm,
    counter_sm2,
    downgrade_state,
    upgrade_state,
)
from hotswap.node.memory import MemoryNode
from hotswap.node.service import Conversation
from hotswap.protocol import ClientConnection, Hello
from hotswap.protocol.events import Error, ErrorCode, UpgradeRequest


@dataclass(frozen=True)
class Add:
    n: int


@machine(init=0)
def adder(inp: Add, state: int) -> tuple[int, int]:
    return state + inp.n, state + inp.n


@machine(init=0)
def adder_doubling(inp: Add, state: int) -> tuple[int, int]:
    """v2: adds twice as much once the total passes 10 (a behaviour change)."""
    n = inp.n * 2 if state > 10 else inp.n
    return state + n, state + n


@machine(init=0)
def adder_fragile(inp: Add, state: int) -> tuple[int, int]:
    """v2 that traps (division by zero) on an input of 7."""
    return state + inp.n + 0 // (inp.n - 7), state + inp.n


@migration(adder, adder_doubling)
def to_doubling(old: int) -> int:
    return old


@migration(adder, adder_fragile)
def to_fragile(old: int) -> int:
    return old


def _plain(n_inputs: list[int]) -> int:
    """What the adder's state is after these inputs, by the plain functions."""
    state = 0
    for n in n_inputs:
        state, _ = adder(Add(n), state)
    return state


def test_a_dry_run_reports_what_would_differ_and_changes_nothing() -> None:
    inputs = [3, 4, 5, 6, 7]
    with MemoryNode({"a": adder}) as node, Client(transport=node.connection()) as client:
        for n in inputs:
            client.send("a", Add(n))
        before = client.status("a")
        outcome = client.dry_run("a", Upgrade(adder, adder_doubling, to_doubling))
        after = client.status("a")
    # A plain-Python replay of the same inputs through v2 from the same (migrated) start.
    old_outputs, new_outputs, s_old, s_new = [], [], 0, 0
    for n in inputs:
        s_old, out_old = adder(Add(n), s_old)
        s_new, out_new = adder_doubling(Add(n), s_new)
        old_outputs.append(out_old)
        new_outputs.append(out_new)
    differing = [i for i, (a, b) in enumerate(zip(old_outputs, new_outputs, strict=True)) if a != b]
    assert outcome.replayed == len(inputs) and outcome.traps == 0
    assert outcome.differing == len(differing) > 0
    first = outcome.differences[0]
    assert first.seq == differing[0]
    assert (first.input, first.old, first.new) == (
        f"Add(n={inputs[differing[0]]})",
        str(old_outputs[differing[0]]),
        str(new_outputs[differing[0]]),
    )
    assert (after.identity, after.state, after.inputs, after.history) == (
        before.identity,
        before.state,
        before.inputs,
        before.history,
    )


def test_a_dry_run_counts_traps_and_limits_the_window() -> None:
    with MemoryNode({"a": adder}) as node, Client(transport=node.connection()) as client:
        for n in [1, 7, 2, 7, 3]:
            client.send("a", Add(n))
        outcome = client.dry_run("a", Upgrade(adder, adder_fragile, to_fragile))
        assert (outcome.replayed, outcome.traps) == (5, 2)
        assert outcome.differences[0].new is None and "division" in outcome.differences[0].trap
        last_two = client.dry_run("a", Upgrade(adder, adder_fragile, to_fragile), inputs=2)
        assert (last_two.replayed, last_two.traps) == (2, 1)


def test_a_dry_run_of_an_upgrade_the_node_would_refuse_is_refused() -> None:
    with MemoryNode({"c": counter_sm}) as node, Client(transport=node.connection()) as client:
        with pytest.raises(UpgradeRejected) as info:
            client.dry_run("c", Upgrade(counter_sm2, counter_sm2, upgrade_state.module))
        assert info.value.code == "wrong_version"


def test_a_dry_run_with_no_traffic_says_so() -> None:
    with MemoryNode({"c": counter_sm}) as node, Client(transport=node.connection()) as client:
        outcome = client.dry_run("c", Upgrade(counter_sm, counter_sm2, upgrade_state))
    assert outcome.replayed == 0 and "no recent inputs" in outcome.notes[0]


def test_a_reverted_trial_leaves_the_machine_as_if_it_never_happened() -> None:
    """100 inputs on the trial code, then revert: state, input count and code are exactly
    those of a run without the upgrade; the outputs already sent stay sent."""
    before, during = [2, 3], list(range(100))
    with MemoryNode({"a": adder}) as node, Client(transport=node.connection()) as client:
        for n in before:
            client.send("a", Add(n))
        client.upgrade("a", Upgrade(adder, adder_doubling, to_doubling), trial=1000)
        assert client.status("a").trial == 1000
        for n in during:
            client.send("a", Add(n))
        assert client.status("a").state != _plain(before + during)  # v2 doubled some
        ended = client.revert("a")
        status = client.status("a")
    assert (ended.replayed, ended.skipped, ended.identity) == (100, 0, adder.identity)
    assert status.state == _plain(before + during)
    assert status.inputs == len(before + during) and status.identity == adder.identity
    assert status.trial is None
    assert status.generation == 2  # the trial upgrade and the revert are changes of code


def test_a_trap_during_a_trial_reverts_it() -> None:
    with MemoryNode({"a": adder}) as node, Client(transport=node.connection()) as client:
        client.send("a", Add(1))
        client.upgrade("a", Upgrade(adder, adder_fragile, to_fragile), trial=10)
        client.send("a", Add(2))
        with pytest.raises(StepTrapped, match="trial upgrade was reverted") as info:
            client.send("a", Add(7))
        status = client.status("a")
    assert info.value.kind == "division_by_zero"
    assert status.identity == adder.identity and status.trial is None
    assert status.state == _plain([1, 2]) and status.inputs == 2  # the 7 had no effect


def test_a_trial_becomes_permanent_after_its_inputs_or_on_confirm() -> None:
    with MemoryNode({"c": counter_sm}) as node, Client(transport=node.connection()) as client:
        client.upgrade("c", Upgrade(counter_sm, counter_sm2, upgrade_state), trial=2)
        client.send("c", Incr())
        assert client.status("c").trial == 1
        client.send("c", Incr())
        assert client.status("c").trial is None
        with pytest.raises(NodeError, match="no trial upgrade to revert"):
            client.revert("c")
        assert client.send("c", Count()) == 2
    with MemoryNode({"c": counter_sm}) as node, Client(transport=node.connection()) as client:
        client.upgrade("c", Upgrade(counter_sm, counter_sm2, upgrade_state), trial=50)
        assert client.confirm("c").identity == counter_sm2.identity
        assert client.status("c").trial is None


def test_no_upgrade_while_a_trial_is_in_progress() -> None:
    with MemoryNode({"c": counter_sm}) as node, Client(transport=node.connection()) as client:
        client.upgrade("c", Upgrade(counter_sm, counter_sm2, upgrade_state), trial=5)
        with pytest.raises(UpgradeRejected, match="confirm or revert the trial upgrade first"):
            client.upgrade("c", Upgrade(counter_sm2, counter_sm, downgrade_state))


@pytest.mark.parametrize("end", ["revert", "confirm", "open"])
def test_a_trial_survives_a_crash_at_any_point(tmp_path: Path, end: str) -> None:
    """The store is closed without a checkpoint (as SIGKILL leaves it) and recovered: an open
    trial is still open and can still be reverted exactly; an ended one stays ended."""
    before, during = [5, 6], [1, 2, 3, 4, 20, 30]
    node = MemoryNode({"a": adder}, data=tmp_path, snapshot_every=3)
    with node:
        with Client(transport=node.connection()) as client:
            for n in before:
                client.send("a", Add(n))
            client.upgrade("a", Upgrade(adder, adder_doubling, to_doubling), trial=100)
            for n in during:
                client.send("a", Add(n))
            if end == "revert":
                client.revert("a")
            elif end == "confirm":
                client.confirm("a")
        node.reopen()
        with Client(transport=node.connection()) as client:
            status = client.status("a")
            if end == "open":
                assert status.trial == 100 - len(during)
                client.revert("a")
                status = client.status("a")
    doubled = 0
    for n in before:
        doubled, _ = adder(Add(n), doubled)
    for n in during:
        doubled, _ = adder_doubling(Add(n), doubled)
    if end == "confirm":
        assert (status.identity, status.state) == (adder_doubling.identity, doubled)
    else:
        assert (status.identity, status.state) == (adder.identity, _plain(before + during))
        assert status.inputs == len(before + during)


def test_a_timed_trial_becomes_permanent_when_its_time_is_up(tmp_path: Path) -> None:
    """`trial_seconds`: provisional until then (also across a crash), permanent after, and
    logged as confirmed so recovery agrees."""
    node = MemoryNode({"c": counter_sm}, data=tmp_path)
    with node:
        with Client(transport=node.connection()) as client:
            started = time.time()
            change = Upgrade(counter_sm, counter_sm2, upgrade_state)
            client.upgrade("c", change, trial_seconds=60)
            status = client.status("c")
            assert status.in_trial and status.trial is None
            assert status.trial_until is not None and started + 59 <= status.trial_until
        node.reopen()  # the deadline is durable
        with Client(transport=node.connection()) as client:
            assert client.status("c").trial_until == status.trial_until
            assert node.service.tick(status.trial_until - 1) is False  # not yet
            assert node.service.tick(status.trial_until) is True  # the server's timer
            node.service.commit()
            after = client.status("c")
            assert not after.in_trial and after.identity == counter_sm2.identity
            with pytest.raises(NodeError, match="no trial upgrade to revert"):
                client.revert("c")
        node.reopen()
        with Client(transport=node.connection()) as client:
            assert not client.status("c").in_trial


def test_a_trial_ends_at_whichever_bound_comes_first() -> None:
    with MemoryNode({"c": counter_sm}) as node, Client(transport=node.connection()) as client:
        change = Upgrade(counter_sm, counter_sm2, upgrade_state)
        client.upgrade("c", change, trial=2, trial_seconds=3600)
        client.send("c", Incr())
        client.send("c", Incr())
        assert not client.status("c").in_trial


def test_trial_bounds_are_checked_and_nothing_crashes() -> None:
    """A trial of 2**63 inputs stopped the node (SQLite's integers are signed 64-bit)."""
    with MemoryNode({"c": counter_sm}) as node:
        change = Upgrade(counter_sm, counter_sm2, upgrade_state)
        with Client(transport=node.connection()) as client:
            with pytest.raises(HotswapError, match="whole number"):
                client.upgrade("c", change, trial=True)
            for too_long in ({"trial": 2**62 + 1}, {"trial_seconds": 2**62}):
                request = UpgradeRequest(
                    client.session.request_id(),
                    "c",
                    counter_sm.identity,
                    counter_sm2.module,
                    upgrade_state.module,
                    **too_long,  # type: ignore[arg-type]
                )
                reply = client.request(request)
                assert isinstance(reply, Error) and reply.code == ErrorCode.BAD_REQUEST
            assert node.failure is None
            assert client.status("c").identity == counter_sm.identity


def test_a_version_1_client_upgrading_during_a_trial_gets_a_version_1_refusal() -> None:
    """bad_request does not answer an upgrade in version 1: its client broke the connection."""
    with MemoryNode({"c": counter_sm}) as node:
        with Client(transport=node.connection()) as client:
            client.upgrade("c", Upgrade(counter_sm, counter_sm2, upgrade_state), trial=5)
        conversation, v1 = Conversation(node.service), ClientConnection()
        v1.receive_data(b"".join(conversation.receive(v1.send(Hello(version=1))).replies))
        v1.next_event()
        request = UpgradeRequest(
            1, "c", counter_sm2.identity, counter_sm.module, downgrade_state.module
        )
        v1.receive_data(b"".join(conversation.receive(v1.send(request)).replies))
        reply = v1.next_event()  # a reply version 1 allows: no protocol error here
    assert isinstance(reply, Error) and reply.code == ErrorCode.WRONG_VERSION
    assert "on trial" in reply.message


def test_a_dry_run_checks_the_generation_too() -> None:
    with MemoryNode({"c": counter_sm}) as node, Client(transport=node.connection()) as client:
        client.upgrade("c", Upgrade(counter_sm, counter_sm2, upgrade_state))
        client.upgrade("c", Upgrade(counter_sm2, counter_sm, downgrade_state))
        stale = Upgrade(counter_sm, counter_sm2, upgrade_state, generation=0)
        with pytest.raises(UpgradeRejected) as info:
            client.dry_run("c", stale)
        assert info.value.code == "wrong_version" and info.value.generation == 2


@dataclass(frozen=True)
class Reset:
    pass


@machine(init=0)
def adder_resetting(inp: Add | Reset, state: int) -> tuple[int, int]:
    """v2 on another input type: ``Reset`` too."""
    match inp:
        case Add(n):
            return state + n, state + n
        case Reset():
            return 0, 0


@migration(adder, adder_resetting)
def to_resetting(old: int) -> int:
    return old


def test_a_trial_upgrade_to_another_input_type_is_refused_changing_nothing() -> None:
    """A revert replays the trial's inputs through the old code, which could not take them:
    such a trial is refused, saying why and what to do; the upgrade without a trial is not."""
    with MemoryNode({"a": adder}) as node, Client(transport=node.connection()) as client:
        client.send("a", Add(3))
        upgrade = Upgrade(adder, adder_resetting, to_resetting)
        with pytest.raises(UpgradeRejected, match="a trial upgrade keeps the input type") as e:
            client.upgrade("a", upgrade, trial=10)
        assert e.value.code == ErrorCode.BAD_REQUEST and "without a trial" in str(e.value)
        status = client.status("a")
        assert (status.identity, status.state, status.trial) == (adder.identity, 3, None)
        client.upgrade("a", upgrade)
        client.send("a", Reset())
        assert client.status("a").state == 0


def test_a_trial_on_another_input_type_reverts_replaying_nothing() -> None:
    """Such a trial, as a store of an earlier release may hold one, reverts to the state from
    before it, every input it took skipped: none is a value the old code can take."""
    with MemoryNode({"a": adder}) as node:
        registry = node.service.registry
        machine = registry.get("a")
        registry.step_value(machine, adder.to_core_input(Add(5)))
        swap = registry.prepare("a", adder.identity, adder_resetting.module, to_resetting.module)
        registry.install(swap, trial=10)  # the checks of an upgrade with a trial, skipped
        for inp in (Reset(), Add(2)):
            registry.step_value(machine, adder_resetting.to_core_input(inp))
        ended = registry.revert("a")
        assert (ended.replayed, ended.skipped, ended.identity) == (0, 2, adder.identity)
        assert (machine.state, machine.inputs, machine.code.identity) == (5, 1, adder.identity)
