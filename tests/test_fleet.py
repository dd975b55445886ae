"""Fleets: a rolling upgrade across real nodes that undoes itself when a node refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotswap.cam.build import migration_module
from hotswap.cam.module import encode_module
from hotswap.client import Upgrade
from hotswap.errors import HotswapError
from hotswap.examples.counter import Incr, counter_sm, counter_sm2, downgrade_state
from hotswap.fleet import Fleet, FleetUpgradeFailed
from hotswap.lang.terms import ID, SND, Fanout, Lit, Op, Prim, compose
from hotswap.lang.types import INT, Prod
from served import Served, run_cli

COUNTER = {"counter": "hotswap.examples.counter:counter_sm"}
#: (a, n) -> a // n: a way back that traps when n is 0.
TRAPPING_BACK = encode_module(migration_module(Prod(INT, INT), INT, Prim(Op.FLOORDIV)))
#: (old, n) -> n: the way back from counter_sm2, which loses the old count by design.
DOWN = encode_module(migration_module(Prod(INT, INT), INT, SND))
#: n -> (n // (n - 3), 0): traps on a node whose count is 3.
FRAGILE = encode_module(
    migration_module(
        INT,
        Prod(INT, INT),
        Fanout(
            compose(Fanout(ID, compose(Fanout(ID, Lit(3)), Prim(Op.SUB))), Prim(Op.FLOORDIV)),
            Lit(0),
        ),
    )
)


def test_a_fleet_upgrades_every_node(tmp_path: Path) -> None:
    with (
        Served(tmp_path / "a", COUNTER) as a,
        Served(tmp_path / "b", COUNTER) as b,
        Fleet([a.address, b.address]) as fleet,
    ):
        done = fleet.upgrade("counter", Upgrade(counter_sm, counter_sm2), back=downgrade_state)
        assert done.nodes == (a.address, b.address) and done.new == counter_sm2.identity
        assert {s.identity for s in fleet.status("counter").values()} == {counter_sm2.identity}


def test_a_refusal_rolls_the_upgraded_nodes_back(tmp_path: Path) -> None:
    """Node b's state makes the migration trap: a, already upgraded, goes back to v1."""
    with (
        Served(tmp_path / "a", COUNTER) as a,
        Served(tmp_path / "b", COUNTER) as b,
        Fleet([a.address, b.address]) as fleet,
    ):
        fleet.clients[a.address].session.remember(counter_sm)
        fleet.clients[b.address].session.remember(counter_sm)
        fleet.clients[a.address].send("counter", Incr())
        for _ in range(3):
            fleet.clients[b.address].send("counter", Incr())
        with pytest.raises(FleetUpgradeFailed, match="division by zero") as info:
            fleet.upgrade("counter", Upgrade(counter_sm, counter_sm2, FRAGILE), back=DOWN)
        assert info.value.node == b.address
        assert info.value.rolled_back == [a.address] and info.value.stranded == {}
        states = {addr: (s.identity, s.state) for addr, s in fleet.status("counter").items()}
        # a went 1 -> (1 // -2, 0) = (-1, 0) -> back to 0 through DOWN; b never changed
        assert states == {
            a.address: (counter_sm.identity, 0),
            b.address: (counter_sm.identity, 3),
        }


def test_a_node_on_other_code_stops_the_fleet_before_anything_changes(tmp_path: Path) -> None:
    with (
        Served(tmp_path / "a", COUNTER) as a,
        Served(tmp_path / "b", {"counter": "hotswap.examples.counter:counter_sm2"}) as b,
        Fleet([a.address, b.address]) as fleet,
    ):
        with pytest.raises(FleetUpgradeFailed, match="no node was touched"):
            fleet.upgrade("counter", Upgrade(counter_sm, counter_sm2))
        assert fleet.status("counter")[a.address].identity == counter_sm.identity


def test_without_a_way_back_nothing_is_touched(tmp_path: Path) -> None:
    """No back migration derives from (old, n) to n: refused before any node changes."""
    with (
        Served(tmp_path / "a", COUNTER) as a,
        Served(tmp_path / "b", COUNTER) as b,
        Fleet([a.address, b.address]) as fleet,
    ):
        with pytest.raises(FleetUpgradeFailed, match="no way back") as info:
            fleet.upgrade("counter", Upgrade(counter_sm, counter_sm2, FRAGILE))
        assert info.value.rolled_back == [] and info.value.stranded == {}
        assert {s.identity for s in fleet.status("counter").values()} == {counter_sm.identity}


def test_a_way_back_that_fails_is_reported_as_stranded(tmp_path: Path) -> None:
    """If undoing a node fails too (the back migration traps), the node is named, loudly."""
    with (
        Served(tmp_path / "a", COUNTER) as a,
        Served(tmp_path / "b", COUNTER) as b,
        Fleet([a.address, b.address]) as fleet,
    ):
        fleet.clients[b.address].session.remember(counter_sm)
        for _ in range(3):
            fleet.clients[b.address].send("counter", Incr())
        with pytest.raises(FleetUpgradeFailed, match="LEFT ON THE NEW CODE") as info:
            fleet.upgrade("counter", Upgrade(counter_sm, counter_sm2, FRAGILE), back=TRAPPING_BACK)
        assert list(info.value.stranded) == [a.address]
        assert fleet.status("counter")[a.address].identity == counter_sm2.identity


def test_a_node_named_twice_is_refused() -> None:
    with pytest.raises(HotswapError, match="named twice"):
        Fleet(["127.0.0.1:9", "127.0.0.1:9"])


def test_cli_fleet_upgrade(tmp_path: Path) -> None:
    with Served(tmp_path / "a", COUNTER) as a, Served(tmp_path / "b", COUNTER) as b:
        result = run_cli(
            "fleet-upgrade",
            "counter",
            "--nodes",
            f"{a.address},{b.address}",
            "--to",
            "hotswap.examples.counter:counter_sm2",
            "--back",
            "hotswap.examples.counter:downgrade_state",
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Upgrade successful on 2 nodes")
