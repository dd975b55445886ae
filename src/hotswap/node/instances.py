"""Keyed instances: one machine's code shared by any number of states, each addressed by a key.

A machine is its code (the registry's :class:`~hotswap.node.registry.Machine`, whose state is
the *default* instance, the one a request without a key reaches) plus keyed instances, made
from ``init`` by their first input. Every instance records the generation of the machine's
history whose code it last ran, so an upgrade is one change of the machine's code pointer,
whatever the number of instances; an instance migrates when it is next touched (an input, a
keyed status, the sweeper), through the logged migrations from its generation to the running
one (v1 -> v2 -> v3 for one that slept through two upgrades), in the durable step of that
touch. A migration that traps leaves the instance on its code and state: the touch is answered
``migration_trap`` and the instance is listed as trapped until a later change of code.

"Upgrade" here is a change of the machine's code (an entry of its history); this module never
installs one, it only brings instances up to the one installed.

The instances live in the store (``store.py``: a checkpoint row each, which names the
generation its state is on, not the code, which the machine's history gives; and the log of
their inputs); :class:`Keyed` holds, per machine, a bounded LRU cache of live ones, the count of
instances on each generation and the trapped ones. :class:`Instances` is what the service
calls: it finds an instance in the cache or the store, creates, migrates, steps, deletes and
sweeps, and leaves durability to the store's group commit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from hotswap.cam.loaded import LoadedModule
from hotswap.cam.values import value_decoder
from hotswap.errors import (
    BytecodeError,
    HotswapError,
    NodeError,
    StoreError,
    Trap,
    UpgradeRejected,
)
from hotswap.lang.check import MAX_STATE_BYTES
from hotswap.lang.evaluate import Value
from hotswap.protocol.events import MAX_PAGE, MAX_TRAPPED_LISTED, ErrorCode
from hotswap.protocol.fields import key_problem

if TYPE_CHECKING:
    from hotswap.node.registry import Change, Machine, Swap

#: How many live instances a node keeps in memory unless told (``hotswap node --cache``).
DEFAULT_CACHE = 10_000
#: How many instances a second the sweeper migrates unless told (``--sweep-rate``; 0: off).
DEFAULT_SWEEP_RATE = 1000
#: A trap reason is kept and shown cut to this many characters.
MAX_REASON = 300


def check_key(key: object, what: str = "key") -> str:
    """``key`` if it is a valid instance key; :class:`NodeError` ``bad_request`` saying what
    is wrong otherwise."""
    if not isinstance(key, str):
        raise NodeError(
            ErrorCode.BAD_REQUEST,
            f"bad {what} {key!r}: an instance key is a string of 1 to 256 bytes of UTF-8",
        )
    problem = key_problem(key)
    if problem is not None:
        raise NodeError(ErrorCode.BAD_REQUEST, f"bad {what} {key[:40]!r}: {problem}")
    return key


def generation_code(machine: Machine, generation: int, key: str | None = None) -> str:
    """The identity of the code of ``generation`` in ``machine``'s history, which the stored
    checkpoint of instance ``key`` names (None: the store's count of instances on it);
    :class:`StoreError` if the history has no such generation (a damaged row)."""
    history = machine.history
    if not 0 <= generation < len(history):
        what = (
            f"the store counts keyed instances of {machine.name!r}"
            if key is None
            else f"the checkpoint of instance {key!r} of {machine.name!r} is"
        )
        raise StoreError(
            f"{what} on generation {generation}, which its history of {len(history)} changes "
            "of code lacks: the store is damaged"
        )
    return history[generation].identity


def prefix_end(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (in code point
    order, which is UTF-8 byte order), or None if there is none: ``key >= prefix AND key <
    prefix_end(prefix)`` selects the keys with that prefix through an index, in any SQL."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last == 0xD7FF:  # skip the surrogates: no key contains one
            return "".join(chars) + chr(0xE000)
        if last < 0x10FFFF:
            return "".join(chars) + chr(last + 1)
    return None


@dataclass(slots=True)
class Instance:
    """One keyed instance: the code and generation it last ran, its state and input count;
    what its stored checkpoint holds (``saved_*``; -1: none yet), and its last log entry."""

    key: str
    code: LoadedModule
    generation: int
    state: Value
    inputs: int
    seq: int = 0
    saved_inputs: int = -1
    saved_generation: int = -1
    saved_size: int = 0

    @property
    def dirty(self) -> bool:
        """Whether the stored checkpoint is behind this instance."""
        return self.inputs != self.saved_inputs or self.generation != self.saved_generation


@dataclass(slots=True)
class Keyed:
    """One machine's keyed instances as the node holds them: the live ones (LRU first), how
    many instances run each generation (all of them, stored or live), the trapped ones (key
    to reason) since the last change of code, and the keys run since the last commit."""

    cache: OrderedDict[str, Instance] = field(default_factory=OrderedDict)
    counts: dict[int, int] = field(default_factory=dict)
    trapped: dict[str, str] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    #: Live instances ahead of their checkpoint: key -> seq of the oldest input it lacks,
    #: oldest first (checkpointed before that input leaves the store's replay window).
    unsaved_since: dict[str, int] = field(default_factory=dict)
    #: Instances the sweeper migrated since the node started.
    swept: int = 0
    #: Where the sweeper is, per generation: the last key it looked at.
    sweep_after: dict[int, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, generation: int, change: int) -> None:
        left = self.counts.get(generation, 0) + change
        if left:
            self.counts[generation] = left
        else:
            self.counts.pop(generation, None)

    def code_changed(self) -> None:
        """A new code runs: traps may resolve, the sweeper starts over."""
        self.trapped.clear()
        self.sweep_after.clear()


class Backing(Protocol):
    """What :class:`Instances` needs of a store: the interface a store of keyed instances
    implements (SQLite here; a shared PostgreSQL store next, docs/design.md)."""

    snapshot_every: int
    #: The seq of the latest log entry.
    last_seq: int

    def loaded(self, identity: str) -> LoadedModule:
        """The stored module ``identity``, loaded (every code an instance ran is stored)."""

    def load_instance(self, machine: Machine, key: str) -> Instance | None:
        """Instance ``key`` from its checkpoint (or queued checkpoint), on the code its
        generation names in ``machine.history``; None if it has none."""

    def prefetch(self, machine: Machine, keys: list[str]) -> None:
        """Read the checkpoints of ``keys`` (instances that are not live, of valid keys,
        perhaps repeated) in one query, ahead of their inputs: :meth:`load_instance` then
        finds them without a read of its own, until the next write of the checkpoints. Only a
        hint: a store may do nothing."""

    def recover_instances(
        self,
        machine: Machine,
        replay: Callable[[Instance | None, int, str, bytes], Instance | None],
    ) -> list[Instance]:
        """After a crash: the instances whose checkpoint is behind their log, replayed."""

    def save_instance(self, machine: Machine, instance: Instance, since: int | None) -> None:
        """Queue a checkpoint of ``instance``, taken at the next commit and written before its
        oldest input the stored checkpoint lacks (seq ``since``; None: not known, written by
        that commit) leaves the replay window; reads see it at once."""

    def log_input(
        self,
        machine: Machine,
        payload: bytes,
        identity: str,
        key: str | None = None,
        generation: int | None = None,
    ) -> int: ...

    def log_delete(self, machine: Machine, instance: Instance) -> None: ...

    def instance_counts(self, name: str) -> dict[int, int]: ...

    def instance_keys(
        self, name: str, prefix: str | None, after: str | None, limit: int
    ) -> list[str]: ...

    def keys_on(self, name: str, generation: int, after: str, limit: int) -> list[str]: ...

    def stored_instances(self, name: str) -> Iterator[tuple[str, int, bytes]]:
        """Every checkpoint of machine ``name``: key, generation, encoded state (on the code of
        that generation in the machine's history, which the store does not repeat per row)."""


def chain_start(history: list[Change], generation: int, target: int | None = None) -> int:
    """Where an instance on ``generation`` starts migrating to ``target`` (the last generation
    if None): the latest generation since then, up to ``target``, that runs the same code
    (after A -> B -> A an instance on the first A needs no migration, so a rollback resolves
    the instances an upgrade's migration trapped on). Never past ``target``: recovery brings
    instances to the generations their inputs were logged on, not to the last one."""
    identity = history[generation].identity
    last = len(history) - 1 if target is None else target
    for g in range(last, generation, -1):
        if history[g].identity == identity:
            return g
    return generation


def migrated(
    history: list[Change],
    instance: Instance,
    target: int,
    load: Callable[[str], LoadedModule],
    fuel: int,
    state_limit: int | None = MAX_STATE_BYTES,
) -> tuple[LoadedModule, Value]:
    """The code of generation ``target`` and ``instance``'s state brought to it through the
    migrations logged since its generation (raises :class:`Trap`, changing nothing); recovery
    passes no ``state_limit``."""
    state = instance.state
    for g in range(chain_start(history, instance.generation, target) + 1, target + 1):
        change = history[g]
        if change.migration is None:  # a revert: the instance would cross a taken-back trial
            raise HotswapError(
                f"instance {instance.key!r} is on generation {instance.generation}, before a "
                f"reverted trial upgrade at generation {g}: it cannot be migrated across it"
            )
        state = load(change.migration).migrate(state, fuel=fuel, state_limit=state_limit)
    return load(history[target].identity), state


class Instances:
    """The keyed instances of every machine of a node, over one store (``backing``): the
    service's entry point for keyed requests. Every run of code has the registry's ``fuel``."""

    def __init__(
        self, backing: Backing, fuel: int, cache: int = DEFAULT_CACHE, window: int = 100_000
    ) -> None:
        self.store = backing
        self.fuel = fuel
        self.cache_size = max(1, cache)
        #: The store's replay window (``store.REPLAY_WINDOW``): a live instance is
        #: checkpointed once its oldest unsaved input is a quarter of it old (the store's
        #: write-back may hold the checkpoint for most of the rest).
        self.window = window

    # --- finding an instance ------------------------------------------------------------------

    def _find(self, machine: Machine, key: str, *, keep: bool = True) -> Instance | None:
        """The instance from the cache, or from the store (made live, in the cache if
        ``keep``); None if there is none."""
        keyed = machine.keyed
        instance = keyed.cache.get(key)
        if instance is not None:
            keyed.cache.move_to_end(key)
            return instance
        instance = self.store.load_instance(machine, key)
        if instance is not None and keep:
            self._keep(machine, instance)
        return instance

    def prefetch(self, machine: Machine, keys: list[str]) -> None:
        """Have the store read ahead the checkpoints of those of ``keys`` whose instances are
        not live (the inputs a connection sent next go to them: ``Service.prefetch``)."""
        cache = machine.keyed.cache
        missing = [key for key in keys if key not in cache]
        if len(missing) > 1:
            self.store.prefetch(machine, missing)

    def _keep(self, machine: Machine, instance: Instance) -> None:
        """Put ``instance`` in the cache; the least recently used leave it beyond its size,
        checkpointed on the way out if their checkpoint is behind."""
        cache = machine.keyed.cache
        cache[instance.key] = instance
        if instance.saved_inputs < 0:  # no checkpoint yet: the next commit writes one
            machine.keyed.touched.add(instance.key)
        while len(cache) > self.cache_size:
            _, old = cache.popitem(last=False)
            machine.keyed.touched.discard(old.key)
            if old.dirty:
                self._save(machine, old)

    def _save(self, machine: Machine, instance: Instance, *, urgent: bool = False) -> None:
        """Queue ``instance``'s checkpoint (taken by the next commit; written by it if
        ``urgent``)."""
        since = machine.keyed.unsaved_since.pop(instance.key, None)
        self.store.save_instance(machine, instance, None if urgent else since)

    def _replayer(
        self, machine: Machine
    ) -> Callable[[Instance | None, int, str, bytes], Instance | None]:
        """How the store replays one logged input (generation, key, payload) on an instance
        loaded from its checkpoint: exactly as it ran live, with no fuel limit."""
        from hotswap.node.store import REPLAY_FUEL  # noqa: PLC0415 - the store imports us

        def replay(
            instance: Instance | None, generation: int, key: str, payload: bytes
        ) -> Instance:
            code = self.store.loaded(machine.history[generation].identity)
            if instance is None:
                state = code.init(fuel=REPLAY_FUEL, state_limit=None)
                instance = Instance(key, code, generation, state, 0)
            elif instance.generation != generation:
                _, state = migrated(
                    machine.history, instance, generation, self.store.loaded, REPLAY_FUEL, None
                )
                instance.code, instance.generation, instance.state = code, generation, state
            sig = code.machine
            assert sig is not None
            value = value_decoder(sig.input)(payload)
            instance.state, _ = code.step(value, instance.state, fuel=REPLAY_FUEL, state_limit=None)
            instance.inputs += 1
            return instance

        return replay

    def _migrate(self, machine: Machine, instance: Instance) -> None:
        """Bring ``instance`` to the running code; on a trap it stays as it was, is listed as
        trapped, and :class:`UpgradeRejected` ``migration_trap`` names it and the reason."""
        current = machine.generation
        if instance.generation == current:
            return
        keyed = machine.keyed
        try:
            code, state = migrated(machine.history, instance, current, self.store.loaded, self.fuel)
        except Trap as e:
            old, new = instance.code.identity[:12], machine.identity[:12]
            reason = (
                f"migration of {machine.name}[{instance.key!r}] from {old} to {new} trapped: {e}"
            )
            keyed.trapped[instance.key] = reason[:MAX_REASON]
            raise UpgradeRejected(
                ErrorCode.MIGRATION_TRAP,
                f"{reason}; the instance stays on {old} with its state (going back to {old}, by "
                "a rollback or an upgrade to it, resolves it; an upgrade to other code does "
                "not, as the migration that trapped still runs first)",
                trap=e.kind,
            ) from None
        keyed.trapped.pop(instance.key, None)
        keyed.count(instance.generation, -1)
        keyed.count(current, 1)
        instance.code, instance.generation, instance.state = code, current, state
        keyed.touched.add(instance.key)

    # --- the requests -----------------------------------------------------------------------

    def check_usable(self, machine: Machine) -> None:
        if machine.trial is not None:
            raise NodeError(
                ErrorCode.BAD_REQUEST,
                f"{machine.name} is in a trial upgrade, which keyed instances do not take part "
                "in: confirm or revert the trial first",
            )

    def step(
        self, machine: Machine, key: str, value: Value, payload: bytes
    ) -> tuple[Value, Instance]:
        """Run one input on instance ``key``, made from ``init`` if it does not exist and
        migrated to the running code first; logs the input (durable at the next commit).
        ``migration_trap`` or ``trap`` change nothing the store would keep."""
        if machine.trial is not None:
            self.check_usable(machine)
        keyed = machine.keyed
        instance = self._find(machine, key)
        fresh = instance is None
        generation = machine.generation
        if instance is None:
            try:
                state = machine.code.init(fuel=self.fuel)
            except Trap as e:
                raise NodeError(
                    ErrorCode.TRAP, f"init of {machine.name}[{key!r}] trapped: {e}", trap=e.kind
                ) from None
            instance = Instance(key, machine.code, generation, state, 0)
        elif instance.generation != generation:
            self._migrate(machine, instance)
        try:
            state, output = machine.code.stepper(self.fuel)(value, instance.state)
        except Trap as e:
            unchanged = "no instance made" if fresh else "state unchanged"
            raise NodeError(
                ErrorCode.TRAP, f"{machine.name}[{key!r}]: {e}; {unchanged}", trap=e.kind
            ) from None
        if fresh:  # made by an input that ran: one that traps leaves no instance behind
            keyed.count(instance.generation, 1)
            self._keep(machine, instance)
        instance.state = state
        instance.inputs += 1
        instance.seq = self.store.log_input(
            machine, payload, machine.code.identity, key, generation
        )
        keyed.touched.add(key)
        if key not in keyed.unsaved_since:
            keyed.unsaved_since[key] = instance.seq
        return output, instance

    def status(self, machine: Machine, key: str) -> tuple[Instance, str | None]:
        """Instance ``key``, migrated to the running code if it can be (a status read is a
        touch); with the reason its migration trapped, if it did."""
        instance = self._find(machine, key)
        if instance is None:
            raise NodeError(
                ErrorCode.UNKNOWN_INSTANCE,
                f"{machine.name} has no instance {key!r}: an instance is made by its first input",
            )
        if machine.trial is None:
            with suppress(UpgradeRejected):  # then it stays on its code, listed as trapped
                self._migrate(machine, instance)
        return instance, machine.keyed.trapped.get(key)

    def delete(self, machine: Machine, key: str) -> Instance:
        """End instance ``key`` (logged); the next input to that key makes a new one."""
        self.check_usable(machine)
        instance = self._find(machine, key, keep=False)
        if instance is None:
            raise NodeError(
                ErrorCode.UNKNOWN_INSTANCE, f"{machine.name} has no instance {key!r} to delete"
            )
        keyed = machine.keyed
        keyed.cache.pop(key, None)
        keyed.touched.discard(key)
        keyed.unsaved_since.pop(key, None)
        keyed.trapped.pop(key, None)
        keyed.count(instance.generation, -1)
        self.store.log_delete(machine, instance)
        return instance

    def page(
        self, machine: Machine, prefix: str | None, after: str | None, limit: int
    ) -> tuple[list[str], bool]:
        """Up to ``limit`` keys in order, with ``prefix``, after ``after``; whether more follow."""
        if not 1 <= limit <= MAX_PAGE:
            raise NodeError(ErrorCode.BAD_REQUEST, f"limit is 1 to {MAX_PAGE}, not {limit}")
        self.flush(machine)  # instances made in this batch have their rows
        keys = self.store.instance_keys(machine.name, prefix, after, limit + 1)
        return keys[:limit], len(keys) > limit

    def flush(self, machine: Machine) -> None:
        """Write the checkpoints the next commit must hold: instances made or migrated since
        the last one, and those that ran far enough since their last checkpoint. What a commit
        costs grows with the instances run in its batch, not with the instances stored."""
        keyed = machine.keyed
        every = self.store.snapshot_every
        for key in keyed.touched:
            instance = keyed.cache.get(key)
            if instance is None:
                continue
            due = max(every, instance.saved_size // 16)
            if (
                instance.saved_inputs < 0
                or instance.generation != instance.saved_generation
                or instance.inputs - instance.saved_inputs >= due
            ):
                self._save(machine, instance)
        keyed.touched.clear()
        # Before an unsaved input leaves the replay window, its instance is checkpointed:
        # recovery reads the window only.
        # The keys are in the order of their oldest unsaved input, and those due are read in
        # one pass: a ``next(iter(...))`` for each would walk again over the slots that the
        # dict's earlier deletions left empty at its front (thousands, between two resizes),
        # which cost 8,000 instructions an input when many instances are due at once.
        oldest = self.store.last_seq - self.window // 4
        late: list[str] = []
        for key, since in keyed.unsaved_since.items():
            if since > oldest:
                break
            late.append(key)
        for key in late:
            instance = keyed.cache.get(key)
            if instance is None:  # cannot be: an instance leaving the cache is checkpointed
                keyed.unsaved_since.pop(key)
                continue
            self._save(machine, instance)

    def checkpoint(self, machine: Machine) -> None:
        """Checkpoint every live instance whose checkpoint is behind (a clean stop)."""
        for instance in machine.keyed.cache.values():
            if instance.dirty:
                self._save(machine, instance)
        machine.keyed.touched.clear()

    def recover(self, machine: Machine) -> None:
        """After the store recovered ``machine``: its instance counts (one indexed query), and
        the instances whose checkpoint is behind their log after a crash, replayed from the
        store's replay window at most (eagerly: so that the window stays all recovery reads)
        and checkpointed at the next commit. The others are read when first touched."""
        machine.keyed.counts = self.store.instance_counts(machine.name)
        if not machine.keyed.counts:  # a committed instance has a checkpoint: none to replay
            return
        for instance in self.store.recover_instances(machine, self._replayer(machine)):
            self._keep(machine, instance)
            if instance.dirty:  # its inputs may be nearly a window old: written at once
                self._save(machine, instance, urgent=True)

    # --- the sweeper ----------------------------------------------------------------------

    def sweep(self, machine: Machine, budget: int, until: float | None = None) -> int:
        """Migrate up to ``budget`` instances not yet on the running code, oldest generation
        first, without filling the cache, and stop early once ``time.perf_counter()`` passes
        ``until`` (instances can be large: a count alone would let one slice hold the event
        loop for seconds); how many it looked at (0: none is left to try)."""
        if machine.trial is not None or budget <= 0:
            return 0
        keyed = machine.keyed
        current = machine.generation
        looked = 0
        for generation in sorted(g for g in keyed.counts if g != current):
            if looked >= budget:
                break
            after = keyed.sweep_after.get(generation, "")
            keys = self.store.keys_on(machine.name, generation, after, budget - looked)
            for key in keys:
                if until is not None and looked and time.perf_counter() > until:
                    return looked
                looked += 1
                keyed.sweep_after[generation] = key
                if key in keyed.trapped:
                    continue
                instance = self._find(machine, key, keep=False)
                if instance is None or instance.generation == current:
                    continue
                try:
                    self._migrate(machine, instance)
                except UpgradeRejected:
                    continue
                keyed.swept += 1
                if key not in keyed.cache:  # not live: checkpoint it now, on its new code
                    keyed.touched.discard(key)
                    self._save(machine, instance)
        return looked

    def remaining(self, machine: Machine) -> int:
        """Instances not on the running code."""
        identity = machine.identity
        return sum(
            n for g, n in machine.keyed.counts.items() if generation_code(machine, g) != identity
        )

    # --- checking an upgrade on every instance ----------------------------------------------

    def check_all(self, machine: Machine, swap: Swap) -> None:
        """Migrate every instance, read-only, the way it would migrate once ``swap`` is
        installed (through the chain from its own code to the new one, as a lazy migration
        will: so a rollback to the code of instances that trapped passes, as it should);
        :class:`UpgradeRejected` ``migration_trap`` listing those that trap (changing
        nothing), or nothing."""
        self.flush(machine)
        future = [*machine.history, swap.change]
        target = len(future) - 1
        given = {swap.new.identity: swap.new, swap.migration.identity: swap.migration}

        def load(identity: str) -> LoadedModule:
            return given.get(identity) or self.store.loaded(identity)

        traps: list[str] = []
        count = 0
        for key, generation, data in self.store.stored_instances(machine.name):
            instance = machine.keyed.cache.get(key)  # a live instance may be ahead of its row
            if instance is None:
                if not 0 <= generation < len(machine.history):
                    raise NodeError(
                        ErrorCode.INTERNAL,
                        f"stored instance {key!r} is on generation {generation}, which the "
                        f"history of {machine.name} lacks",
                    )
                code = self.store.loaded(machine.history[generation].identity)
                sig = code.machine
                assert sig is not None
                try:
                    state = value_decoder(sig.state)(data)
                except BytecodeError as e:
                    raise NodeError(
                        ErrorCode.INTERNAL, f"stored instance {key!r} is unreadable: {e}"
                    ) from None
                instance = Instance(key, code, generation, state, 0)
            try:
                migrated(future, instance, target, load, self.fuel)
            except Trap as e:
                count += 1
                if len(traps) < MAX_TRAPPED_LISTED:
                    traps.append(f"{key!r} ({e})")
        if count:
            shown = ", ".join(traps[:10]) + (f" and {count - 10} more" if count > 10 else "")
            raise UpgradeRejected(
                ErrorCode.MIGRATION_TRAP,
                f"upgrade refused by --check-all, nothing changed: migrating to the new code "
                f"traps on {count} instance(s) of {machine.name}: {shown}",
                trap="check_all",
            )
