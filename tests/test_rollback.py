"""Upgrades without a hand-written migration, and rollback to the previous code."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotswap.cam.build import migration_module
from hotswap.cam.module import encode_module
from hotswap.client import Client, Upgrade
from hotswap.dsl.derive import MigrationError
from hotswap.errors import NodeError
from hotswap.examples import handbuilt
from hotswap.examples.counter import Count, Incr, counter_sm, counter_sm2
from hotswap.lang.terms import FST, SND, Fanout
from hotswap.lang.types import INT, Prod
from hotswap.node.memory import MemoryNode
from served import Served, run_cli

COUNTER = "hotswap.examples.counter:counter_sm"


def test_the_seeds_upgrade_needs_no_migration(tmp_path: Path) -> None:
    """Upgrade(counter_sm, counter_sm2) derives n -> (n, 0), as the seed wrote by hand."""
    with MemoryNode({"counter": COUNTER}) as node, Client(transport=node.connection()) as client:
        client.send("counter", Incr())
        client.upgrade("counter", Upgrade(counter_sm, counter_sm2))
        client.send("counter", Incr())
        assert client.status("counter").state == (1, 1)
        assert client.send("counter", Count()) == 1


def test_rollback_returns_to_the_previous_code(tmp_path: Path) -> None:
    """Back from v2 to v1 with a migration given; then forth again with one derived."""
    down = encode_module(migration_module(Prod(INT, INT), INT, SND))
    with MemoryNode({"counter": COUNTER}) as node, Client(transport=node.connection()) as client:
        client.send("counter", Incr())
        client.upgrade("counter", Upgrade(counter_sm, counter_sm2))
        client.send("counter", Incr())
        with pytest.raises(MigrationError, match="cannot derive"):
            client.rollback("counter")  # (old, n) -> n loses data: not derived
        back = client.rollback("counter", down)
        assert back.new == counter_sm.identity
        assert client.status("counter").state == 1  # the count, from (1, 1)
        forth = client.rollback("counter")  # v1 -> v2 again: derived, (1, 0)
        assert forth.new == counter_sm2.identity
        status = client.status("counter")
        assert status.state == (1, 0)
        assert [h.kind for h in status.history] == ["start", "upgrade", "upgrade", "upgrade"]


def test_rollback_without_history_is_refused(tmp_path: Path) -> None:
    with (
        MemoryNode({"counter": COUNTER}) as node,
        Client(transport=node.connection()) as client,
        pytest.raises(NodeError, match="no earlier code"),
    ):
        client.rollback("counter")


def test_same_state_types_without_names_use_the_identity(tmp_path: Path) -> None:
    """Hand-built machines carry no names: equal state types still upgrade without one."""
    commuted = encode_module(handbuilt.counter_commuted_module())
    spec = "hotswap.examples.handbuilt:counter_module"
    with MemoryNode({"counter": spec}) as node, Client(transport=node.connection()) as client:
        client.send("counter", (0, ()))
        running = client.status_raw("counter").identity
        client.upgrade("counter", Upgrade(running, commuted))
        assert client.status("counter").state == 1
        with pytest.raises(MigrationError, match="without names"):
            client.upgrade("counter", Upgrade(commuted, encode_module(handbuilt.counter2_module())))


def test_cli_upgrade_and_rollback_derive_migrations(tmp_path: Path) -> None:
    cli = run_cli
    with Served(tmp_path, {"counter": COUNTER}) as node:
        at = ("--node", node.address)
        up = cli("upgrade", *at, "counter", "--to", "hotswap.examples.counter:counter_sm2")
        assert up.returncode == 0, up.stderr
        assert "migration derived" in up.stdout
        down = cli("rollback", *at, "counter")
        assert down.returncode == 1 and "cannot derive" in down.stderr


def test_rollback_skips_upgrades_that_kept_the_code(tmp_path: Path) -> None:
    """After v1 -> v2 -> v2 (a state fix on the same code), rollback goes to v1, not to v2."""
    fix = encode_module(migration_module(Prod(INT, INT), Prod(INT, INT), Fanout(SND, FST)))
    down = encode_module(migration_module(Prod(INT, INT), INT, SND))
    with MemoryNode({"counter": COUNTER}) as node, Client(transport=node.connection()) as client:
        client.upgrade("counter", Upgrade(counter_sm, counter_sm2))
        client.upgrade("counter", Upgrade(counter_sm2, counter_sm2, fix))
        back = client.rollback("counter", down)
        assert back.new == counter_sm.identity
