"""Fleets: one machine on several nodes, upgraded as a rolling upgrade that undoes itself.

    fleet = Fleet(["10.0.0.1:7411", "10.0.0.2:7411"])
    fleet.upgrade("counter", Upgrade(counter_sm, counter_sm2), back=downgrade)

An upgrade across nodes cannot be atomic the way one node's is, so a fleet upgrade does the next
best thing: it first checks that every node runs the expected code and that a way back exists
(``back``, or a migration derived from the state types' names), touching no node otherwise;
then it upgrades the nodes one by one; if a node refuses or is lost, the nodes already upgraded
go back to the code they ran, through ``back``, and :class:`FleetUpgradeFailed` says which
node failed, why, and where each node ended up. "Upgrade" here is the user's
:class:`hotswap.code.Upgrade`, applied node by node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from hotswap.cam.loaded import load_module
from hotswap.client import Client, MachineStatus, Upgrade, connect, derived_migration
from hotswap.code import module_bytes
from hotswap.dsl.derive import MigrationError
from hotswap.errors import HotswapError


class FleetUpgradeFailed(HotswapError):
    """A node refused its part of a fleet upgrade. ``rolled_back`` lists the nodes returned to
    the old code, ``stranded`` those left on the new code because their rollback failed too."""

    def __init__(
        self, node: str, reason: str, rolled_back: list[str], stranded: dict[str, str]
    ) -> None:
        self.node = node
        self.reason = reason
        self.rolled_back = rolled_back
        self.stranded = stranded
        msg = f"{node} refused the upgrade: {reason}"
        if rolled_back:
            msg += f"; rolled back {', '.join(rolled_back)}"
        if stranded:
            left = "; ".join(f"{n}: {why}" for n, why in stranded.items())
            msg += f"; LEFT ON THE NEW CODE (rollback failed): {left}"
        super().__init__(msg)


@dataclass(frozen=True, slots=True)
class FleetUpgraded:
    """Every node now runs ``new``."""

    machine: str
    old: str
    new: str
    nodes: tuple[str, ...]


class Fleet:
    """Blocking connections to several nodes that run the same machines."""

    def __init__(self, addresses: Sequence[str], *, timeout: float = 30.0) -> None:
        if not addresses:
            raise HotswapError("a fleet needs at least one node")
        if len(set(addresses)) != len(addresses):
            raise HotswapError(f"a node is named twice in the fleet: {', '.join(addresses)}")
        self.clients: dict[str, Client] = {}
        try:
            for address in addresses:
                self.clients[address] = connect(address, timeout=timeout)
        except HotswapError:
            self.close()
            raise

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def status(self, machine: str) -> dict[str, MachineStatus]:
        """The machine's status on every node."""
        return {address: client.status(machine) for address, client in self.clients.items()}

    def upgrade(self, machine: str, upgrade: Upgrade, back: object | None = None) -> FleetUpgraded:
        """Check every node and the way back, then upgrade the nodes in order, undoing on the
        first node that fails. Nothing is touched unless every node runs the expected code and
        a migration back exists (``back``, or one derived from the state types' names)."""
        expected = upgrade.expected_identity()
        for address, client in self.clients.items():
            running = client.status_raw(machine).identity
            if running != expected:
                msg = f"it runs {running[:12]}, the upgrade expects {expected[:12]}"
                raise FleetUpgradeFailed(address, f"{msg}; no node was touched", [], {})
        first = next(iter(self.clients.values()))
        old_code = load_module(first.module(expected))
        new = module_bytes(upgrade.new, "the new machine")
        forward = upgrade.migration
        if forward is None:  # derive once, for every node
            forward = derived_migration(old_code, load_module(new), upgrade.old, upgrade.new)
        if back is None:
            try:
                back = derived_migration(load_module(new), old_code, upgrade.new, upgrade.old)
            except MigrationError as e:
                msg = f"no way back if a node refuses ({e}): give back="
                raise FleetUpgradeFailed(
                    first.address, f"{msg}; no node was touched", [], {}
                ) from e
        step = Upgrade(expected, new, forward)
        undo = Upgrade(load_module(new).identity, old_code.data, back)
        done: list[str] = []
        result = None
        for address, client in self.clients.items():
            try:
                result = client.upgrade(machine, step)
            except HotswapError as e:  # refused, or lost: either way, undo what is done
                raise self._undo(machine, address, str(e), done, undo) from e
            done.append(address)
        assert result is not None
        return FleetUpgraded(machine, expected, result.new, tuple(done))

    def _undo(
        self, machine: str, failed: str, reason: str, done: list[str], undo: Upgrade
    ) -> FleetUpgradeFailed:
        rolled_back: list[str] = []
        stranded: dict[str, str] = {}
        for address in reversed(done):
            try:
                self.clients[address].upgrade(machine, undo)
            except HotswapError as e:  # keep undoing the others; report this one
                stranded[address] = str(e)
            else:
                rolled_back.append(address)
        return FleetUpgradeFailed(failed, reason, rolled_back, stranded)
