"""Old and new versions side by side: `hotswap types` writes the running version's types as a
module, a migration is written against them with the running code (fetched from the node) as
its old side, and the upgrade goes through, names and all. Against a node on loopback."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotswap.client import Upgrade, connect
from served import Served, run_cli

NEW_VERSION = """
from __future__ import annotations

from dataclasses import dataclass

from hotswap.dsl import machine, migration

import tally_v1


@dataclass(frozen=True)
class Use:
    amount: int


@dataclass(frozen=True)
class Tally:
    used: int
    peak: int


@machine(init=Tally(0, 0))
def tally(inp: Use, state: Tally) -> tuple[Tally, int]:
    used = state.used + inp.amount
    return Tally(used, max(state.peak, inp.amount)), used


def upgrade_from(running: object) -> object:
    @migration(running, tally)
    def up(old: tally_v1.State) -> Tally:
        return Tally(old.used, old.used)

    return up
"""

OLD_VERSION = """
from __future__ import annotations

from dataclasses import dataclass

from hotswap.dsl import machine


@dataclass(frozen=True)
class Use:
    amount: int


@dataclass(frozen=True)
class Tally:
    used: int


@machine(init=Tally(0))
def tally(inp: Use, state: Tally) -> tuple[Tally, int]:
    return Tally(state.used + inp.amount), state.used + inp.amount
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path holding the user's modules."""
    (tmp_path / "tally_old.py").write_text(OLD_VERSION)
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("tally_old", "tally_v1", "tally_new"):
            sys.modules.pop(name, None)


def test_types_then_a_migration_against_them(project: Path) -> None:
    with Served(project / "data", {"t": "tally_old:tally"}) as node:
        at = ("--node", node.address)
        assert run_cli("send", *at, "t", "Use(amount=5)").returncode == 0
        types = run_cli("types", *at, "t")
        assert types.returncode == 0, types.stderr
        assert "class Tally:" in types.stdout and "State: TypeAlias = Tally" in types.stdout
        (project / "tally_v1.py").write_text(types.stdout)
        (project / "tally_new.py").write_text(NEW_VERSION)
        new = importlib.import_module("tally_new")
        with connect(node.address) as client:
            running = client.status("t").identity
            up = new.upgrade_from(client.code(running))
            reply = client.upgrade("t", Upgrade(running, new.tally, up))
            assert reply.new == new.tally.identity
            state = client.status("t").state
        assert state == new.Tally(5, 5)
        bad = run_cli("types", *at, "t", "--version", "ffff")
        assert bad.returncode == 1 and "has never run code 'ffff'" in bad.stderr
