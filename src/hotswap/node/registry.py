"""The registry: the machines a node runs, and the pure logic of inputs and upgrades.

No I/O happens here, so every rule can be tested without a network or a disk. Each operation
either changes everything it should or nothing: a step that traps leaves the state as it was;
an upgrade is checked completely (docs/design.md, "Upgrades") before the swap, which cannot
fail. "Upgrade" here is the operation: :meth:`Registry.prepare` checks one and returns a
:class:`Swap`, :meth:`Registry.install` installs it. This is where an upgrade is refused.

Upgrade checks, in order: both modules decode canonically and verify; the new module is a
machine and the migration a migration; the running identity equals the expected one; the
migration maps the running state type to the new state type; the code is compiled (by
loading); the migration runs on the current state without trapping. Then the swap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.values import value_decoder
from hotswap.errors import BytecodeError, NodeError, Trap, UpgradeRejected
from hotswap.lang.evaluate import Value
from hotswap.names.lint import migration_name_differences, nominal_notes
from hotswap.protocol.events import ErrorCode, HistoryKind

VERSION_MISMATCH = "The version running isn't the one the upgrade expects. Aborting upgrade."


@dataclass(frozen=True, slots=True)
class Change:
    """One change of code on a machine; ``seq`` counts the inputs processed before it."""

    identity: str
    kind: HistoryKind
    seq: int
    time: float
    migration: str | None = None


@dataclass(slots=True)
class Machine:
    """A running machine: its code, its state, how many inputs it has processed."""

    name: str
    code: LoadedModule
    state: Value
    inputs: int = 0
    history: list[Change] = field(default_factory=list)

    @property
    def identity(self) -> str:
        return self.code.identity

    @property
    def generation(self) -> int:
        """How many changes of code the machine has had: 0 on its first code, one more for
        every upgrade, rollback or release that swapped it."""
        return len(self.history) - 1


@dataclass(frozen=True, slots=True)
class Stepped:
    """The result of one input: the output and new state, and the code that produced them."""

    output: Value
    state: Value
    identity: str


@dataclass(frozen=True, slots=True)
class Swap:
    """An upgrade checked completely and its state migrated, ready to install (the pure part
    of an upgrade); after :meth:`Registry.install`, what the store needs to log it."""

    machine: str
    old: str
    new: LoadedModule
    migration: LoadedModule
    state: Value
    change: Change
    notes: tuple[str, ...] = ()


def load_machine_code(data: bytes) -> LoadedModule:
    """Load module bytes that must define a machine; :class:`NodeError` ``bad_module`` if not."""
    try:
        loaded = load_module(data)
    except BytecodeError as e:
        raise NodeError(ErrorCode.BAD_MODULE, f"module rejected: {e}") from None
    if loaded.machine is None:
        raise NodeError(ErrorCode.BAD_MODULE, f"module {loaded.identity[:12]} is not a machine")
    return loaded


class Registry:
    """The machines of one node, by name."""

    def __init__(self) -> None:
        self.machines: dict[str, Machine] = {}

    def get(self, name: str) -> Machine:
        machine = self.machines.get(name)
        if machine is None:
            known = ", ".join(sorted(self.machines)) or "none"
            raise NodeError(ErrorCode.UNKNOWN_MACHINE, f"no machine {name!r} (known: {known})")
        return machine

    def start(self, name: str, code: LoadedModule, now: float | None = None) -> Machine:
        """Add a machine in its initial state."""
        if name in self.machines:
            raise NodeError(ErrorCode.BAD_REQUEST, f"machine {name!r} already exists")
        if code.machine is None:
            raise NodeError(ErrorCode.BAD_MODULE, f"module {code.identity[:12]} is not a machine")
        try:
            state = code.init()
        except Trap as e:
            raise NodeError(ErrorCode.TRAP, f"init of {name!r} trapped: {e}") from None
        change = Change(code.identity, HistoryKind.START, 0, time.time() if now is None else now)
        machine = Machine(name, code, state, 0, [change])
        self.machines[name] = machine
        return machine

    def restore(self, machine: Machine) -> None:
        """Put back a machine recovered from the store."""
        self.machines[machine.name] = machine

    def decode_input(self, machine: Machine, data: bytes) -> Value:
        sig = machine.code.machine
        assert sig is not None
        try:
            return value_decoder(sig.input)(data)
        except BytecodeError as e:
            raise NodeError(
                ErrorCode.BAD_INPUT, f"input is not a value of {machine.name}'s input type: {e}"
            ) from None

    def step(self, name: str, data: bytes, code: str | None = None) -> Stepped:
        """Run one input (canonical bytes); on a trap the state is unchanged. With ``code``, the
        identity the input was encoded for, only if that is the code running (else
        ``wrong_version``: its bytes would be read at a type they were not written for)."""
        machine = self.get(name)
        if code is not None and code != machine.identity:
            raise NodeError(
                ErrorCode.WRONG_VERSION,
                f"{name} runs {machine.identity[:12]}, the input was encoded for {code[:12]}: "
                "re-encode it for the running code",
            )
        return self.step_value(machine, self.decode_input(machine, data))

    def step_value(self, machine: Machine, value: Value) -> Stepped:
        try:
            state, output = machine.code.step(value, machine.state)
        except Trap as e:
            raise NodeError(
                ErrorCode.TRAP, f"{machine.name}: {e}; state unchanged", trap=e.kind
            ) from None
        machine.state = state
        machine.inputs += 1
        return Stepped(output, state, machine.code.identity)

    def upgrade(
        self,
        name: str,
        expected: str,
        module: bytes,
        migration: bytes,
        now: float | None = None,
        *,
        generation: int | None = None,
        rename: bool = False,
    ) -> Swap:
        """Check everything, migrate the state, swap; :class:`UpgradeRejected` changes nothing."""
        prepared = self.prepare(
            name, expected, module, migration, now, generation=generation, rename=rename
        )
        return self.install(prepared)

    def release(
        self, items: list[tuple[str, str, bytes, bytes]], now: float | None = None
    ) -> list[Swap]:
        """Upgrade several machines, ``(name, expected, module, migration)`` each: all are
        checked and migrated first, then all swap, so a failure in any changes nothing."""
        names = [name for name, *_ in items]
        if not items or len(set(names)) != len(names):
            raise UpgradeRejected(
                ErrorCode.BAD_REQUEST, "a release names one or more machines, each once"
            )
        prepared = []
        for name, expected, module, migration in items:
            try:
                prepared.append(self.prepare(name, expected, module, migration, now))
            except NodeError as e:  # name the machine: a release spans several
                raise UpgradeRejected(
                    e.code, f"{name}: {e}", running=e.running, generation=e.generation, trap=e.trap
                ) from None
        return [self.install(p) for p in prepared]

    def prepare(
        self,
        name: str,
        expected: str,
        module: bytes,
        migration: bytes,
        now: float | None = None,
        *,
        generation: int | None = None,
        rename: bool = False,
    ) -> Swap:
        """Every check of an upgrade and the migrated state, without touching the machine.

        ``generation``, when given, must be the machine's: an upgrade made for A at generation
        0 is refused after A -> B -> A (generation 2), where it would otherwise apply again.
        The migration's names must be the running and new states' names unless ``rename``."""
        machine = self.get(name)
        try:
            new = load_module(module)
        except BytecodeError as e:
            raise UpgradeRejected(ErrorCode.BAD_MODULE, f"new module rejected: {e}") from None
        try:
            migrate = load_module(migration)
        except BytecodeError as e:
            raise UpgradeRejected(ErrorCode.BAD_MODULE, f"migration rejected: {e}") from None
        if new.machine is None:
            raise UpgradeRejected(ErrorCode.BAD_MODULE, "the new module is not a machine")
        if migrate.migration is None:
            raise UpgradeRejected(ErrorCode.BAD_MODULE, "the migration module is not a migration")
        if machine.identity != expected:
            raise UpgradeRejected(
                ErrorCode.WRONG_VERSION,
                f"{VERSION_MISMATCH} (running {machine.identity[:12]}, expected {expected[:12]})",
                running=machine.identity,
                generation=machine.generation,
            )
        if generation is not None and generation != machine.generation:
            raise UpgradeRejected(
                ErrorCode.WRONG_VERSION,
                f"{VERSION_MISMATCH} ({name} is at generation {machine.generation}, the "
                f"upgrade was made for generation {generation}: its code has changed since, "
                "so this may be an old upgrade replayed; make it again for the running code)",
                running=machine.identity,
                generation=machine.generation,
            )
        running = machine.code.machine
        assert running is not None
        if (
            migrate.migration.old is not running.state
            or migrate.migration.new is not new.machine.state
        ):
            raise UpgradeRejected(
                ErrorCode.ILL_TYPED_UPGRADE,
                f"migration is {migrate.migration.old} -> {migrate.migration.new}, "
                f"expected {running.state} -> {new.machine.state}",
            )
        renamed = migration_name_differences(machine.code, new, migrate)
        if renamed and not rename:
            raise UpgradeRejected(
                ErrorCode.ILL_TYPED_UPGRADE,
                f"the migration's names do not match the states': {'; '.join(renamed)}. "
                "It may be declared for other machines; if this is a deliberate rename, "
                "upgrade with rename=True (hotswap upgrade --rename)",
            )
        try:
            state = migrate.migrate(machine.state)
        except Trap as e:
            raise UpgradeRejected(
                ErrorCode.MIGRATION_TRAP, f"migration trapped: {e}", trap=e.kind
            ) from None
        change = Change(
            new.identity,
            HistoryKind.UPGRADE,
            machine.inputs,
            time.time() if now is None else now,
            migrate.identity,
        )
        notes = nominal_notes(machine.code, new) + tuple(f"renamed: {r}" for r in renamed)
        return Swap(name, machine.identity, new, migrate, state, change, notes)

    def install(self, prepared: Swap) -> Swap:
        """Install a prepared swap: nothing here can fail."""
        machine = self.machines[prepared.machine]
        machine.code, machine.state = prepared.new, prepared.state
        machine.history.append(prepared.change)
        return prepared
