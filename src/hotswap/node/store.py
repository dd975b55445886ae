"""The node's durable store: SQLite in WAL mode.

Four tables (docs/node.md, "Persistence"):

- ``meta``: the store's schema version;
- ``modules``: content-addressed store of every module the node has run, keyed by identity;
- ``log``: append-only, globally ordered: every machine start, every acknowledged input (with
  the identity of the code that processed it) and every upgrade (new code and migration);
- ``snapshots``: per machine, the state after the log entry ``seq``, taken every
  ``snapshot_every`` inputs and at every start, upgrade and clean shutdown.

Writes are grouped: the server appends rows as it applies inputs and calls :meth:`Store.commit`
once per batch, answering the batch only after the commit returns (group commit). With
``fsync=True`` SQLite runs with ``synchronous=FULL``, so a commit survives power loss; the
default ``NORMAL`` survives a crash of the process, which is what WAL guarantees without an
fsync per commit.

Recovery loads each machine's snapshot, then replays its later log entries on the code each
entry names, so the state is the one every acknowledged input produced.

A write that fails (disk full, read-only or vanished file) rolls the open transaction back,
drops the queued inputs and raises :class:`StoreError`. The machines in memory are then ahead
of the store: nothing they did since the last commit may be acknowledged, so the caller must
stop and recover (the node does).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.values import decode_value, encode_value
from hotswap.errors import BytecodeError, HotswapError, StoreError, Trap
from hotswap.node.registry import Change, Machine, Swap
from hotswap.protocol.events import HistoryKind

SCHEMA_VERSION = 1
SNAPSHOT_EVERY = 20_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS modules (identity TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    machine TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('start', 'input', 'upgrade')),
    identity TEXT NOT NULL,
    payload BLOB,
    migration TEXT,
    inputs INTEGER NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS log_changes ON log (machine, seq) WHERE kind != 'input';
CREATE TABLE IF NOT EXISTS snapshots (
    machine TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    identity TEXT NOT NULL,
    state BLOB NOT NULL,
    inputs INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`Store.recover` found: machines, and how many log entries were replayed."""

    machines: list[Machine]
    replayed: int
    seconds: float


class Store:
    """One node's database. Not thread-safe: the node's event loop owns it."""

    def __init__(
        self, path: Path | str, *, fsync: bool = False, snapshot_every: int = SNAPSHOT_EVERY
    ) -> None:
        self.path = Path(path)
        self.snapshot_every = snapshot_every
        try:
            self.db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0.1
            )
            # One node owns its store: an exclusive lock keeps a second node off it, and spares
            # every commit SQLite's file-lock system calls.
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self.db.execute("BEGIN IMMEDIATE")  # take the lock now, not at the first input
            self.db.execute("COMMIT")
            self.db.executescript(_SCHEMA)
            self._check_version()
            row = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM log").fetchone()
        except sqlite3.OperationalError as e:
            if "locked" in str(e):
                msg = f"the store {self.path} is in use by another node"
                raise StoreError(msg) from None
            raise StoreError(f"cannot open the store {self.path}: {e}") from None
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the store {self.path}: {e}") from None
        self.last_seq: int = row[0]
        self._pending_inputs: list[tuple[int, str, str, bytes, int, float]] = []
        self._last_snapshot: dict[str, int] = {}  # machine -> inputs at its last snapshot
        self._machine_seq: dict[str, int] = {}  # machine -> seq of its last log entry

    def _check_version(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise StoreError(f"store {self.path} has schema {row[0]}, expected {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # --- writing ----------------------------------------------------------------------------

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn a failed write into :class:`StoreError`, rolling back everything uncommitted.

        SQLite may already have rolled the transaction back by itself (it does on a full disk),
        so the connection's own ``in_transaction`` is asked, never a flag of ours."""
        try:
            yield
        except sqlite3.Error as e:
            self._pending_inputs.clear()
            if self.db.in_transaction:
                with suppress(sqlite3.Error):  # the original error is the one to report
                    self.db.execute("ROLLBACK")
            raise StoreError(f"{what} {self.path} failed: {e}") from None

    def _begin(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN")

    def _next_seq(self, machine: str) -> int:
        self.last_seq += 1
        self._machine_seq[machine] = self.last_seq
        return self.last_seq

    def _add_module(self, code: LoadedModule) -> None:
        self.db.execute("INSERT OR IGNORE INTO modules VALUES (?, ?)", (code.identity, code.data))

    def log_start(self, machine: Machine) -> None:
        """Log a new machine and snapshot its initial state (commit follows)."""
        with self._writing("logging a start to"):
            self._begin()
            self._add_module(machine.code)
            change = machine.history[-1]
            seq = self._next_seq(machine.name)
            self.db.execute(
                "INSERT INTO log VALUES (?, ?, 'start', ?, NULL, NULL, 0, ?)",
                (seq, machine.name, machine.identity, change.time),
            )
            self._snapshot(machine)

    def log_input(self, machine: Machine, payload: bytes, identity: str) -> None:
        """Queue an applied input; it is durable after the next :meth:`commit`."""
        seq = self._next_seq(machine.name)
        self._pending_inputs.append(
            (seq, machine.name, identity, payload, machine.inputs, time.time())
        )

    def log_upgrade(self, machine: Machine, swap: Swap) -> None:
        """Log an applied upgrade with both modules, and snapshot the migrated state."""
        with self._writing("logging an upgrade to"):
            self._flush_inputs()
            self._begin()
            self._add_module(swap.new)
            self._add_module(swap.migration)
            seq = self._next_seq(machine.name)
            change = swap.change
            self.db.execute(
                "INSERT INTO log VALUES (?, ?, 'upgrade', ?, NULL, ?, ?, ?)",
                (seq, machine.name, change.identity, change.migration, change.seq, change.time),
            )
            self._snapshot(machine)

    def _flush_inputs(self) -> None:
        if self._pending_inputs:
            self._begin()
            self.db.executemany(
                "INSERT INTO log VALUES (?, ?, 'input', ?, ?, NULL, ?, ?)", self._pending_inputs
            )
            self._pending_inputs.clear()

    def _snapshot(self, machine: Machine) -> None:
        sig = machine.code.machine
        assert sig is not None
        state = encode_value(machine.state, sig.state)
        self.db.execute(
            "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
            (
                machine.name,
                self._machine_seq[machine.name],
                machine.identity,
                state,
                machine.inputs,
            ),
        )
        self._last_snapshot[machine.name] = machine.inputs

    def commit(self, machines: dict[str, Machine]) -> None:
        """Make everything logged so far durable; snapshot machines that ran far enough."""
        with self._writing("commit to"):
            self._flush_inputs()
            if not self.db.in_transaction:
                return
            for name, machine in machines.items():
                if machine.inputs - self._last_snapshot.get(name, 0) >= self.snapshot_every:
                    self._snapshot(machine)
            self.db.execute("COMMIT")

    def checkpoint(self, machines: dict[str, Machine]) -> None:
        """Snapshot every machine now (on clean shutdown), so the next start replays nothing."""
        with self._writing("checkpoint of"):
            self._flush_inputs()
            self._begin()
            for machine in machines.values():
                if machine.name in self._machine_seq:
                    self._snapshot(machine)
        self.commit(machines)

    # --- reading ----------------------------------------------------------------------------

    def module(self, identity: str) -> bytes | None:
        row = self.db.execute("SELECT data FROM modules WHERE identity = ?", (identity,)).fetchone()
        return None if row is None else bytes(row[0])

    def _load(self, identity: str) -> LoadedModule:
        data = self.module(identity)
        if data is None:
            raise StoreError(f"the store lacks module {identity}")
        try:
            return load_module(data)
        except BytecodeError as e:
            raise StoreError(f"stored module {identity[:12]} no longer loads: {e}") from None

    def recover(self) -> Recovery:
        """Rebuild every machine from its snapshot and the log entries after it."""
        started = time.perf_counter()
        machines: list[Machine] = []
        replayed = 0
        snapshots = self.db.execute(
            "SELECT machine, seq, identity, state, inputs FROM snapshots ORDER BY machine"
        ).fetchall()
        for name, seq, identity, state_bytes, inputs in snapshots:
            code = self._load(identity)
            assert code.machine is not None
            try:
                state = decode_value(bytes(state_bytes), code.machine.state)
            except HotswapError as e:
                raise StoreError(f"snapshot of {name!r} is unreadable: {e}") from None
            machine = Machine(name, code, state, inputs, self._history(name))
            replayed += self._replay(machine, seq)
            self._machine_seq[name] = self._last_seq_of(name)
            self._last_snapshot[name] = inputs
            machines.append(machine)
        return Recovery(machines, replayed, time.perf_counter() - started)

    def _history(self, name: str) -> list[Change]:
        rows = self.db.execute(
            "SELECT kind, identity, migration, inputs, time FROM log "
            "WHERE machine = ? AND kind != 'input' ORDER BY seq",
            (name,),
        )
        return [Change(ident, HistoryKind(kind), n, t, mig) for kind, ident, mig, n, t in rows]

    def _last_seq_of(self, name: str) -> int:
        row = self.db.execute("SELECT MAX(seq) FROM log WHERE machine = ?", (name,)).fetchone()
        return int(row[0] or 0)

    def _replay(self, machine: Machine, after: int) -> int:
        rows = self.db.execute(
            "SELECT seq, kind, identity, payload, migration FROM log "
            "WHERE machine = ? AND seq > ? ORDER BY seq",
            (machine.name, after),
        )
        count = 0
        for seq, kind, identity, payload, migration in rows:
            count += 1
            if kind == "input":
                if identity != machine.identity:
                    raise StoreError(
                        f"log entry {seq} ran on {identity[:12]}, replay has "
                        f"{machine.identity[:12]}"
                    )
                sig = machine.code.machine
                assert sig is not None
                try:
                    value = decode_value(bytes(payload), sig.input)
                    machine.state, _ = machine.code.step(value, machine.state)
                except (HotswapError, Trap) as e:
                    raise StoreError(f"replaying log entry {seq} failed: {e}") from None
                machine.inputs += 1
            elif kind == "upgrade":
                new, migrate = self._load(identity), self._load(migration)
                try:
                    machine.state = migrate.migrate(machine.state)
                except Trap as e:
                    raise StoreError(f"replaying the upgrade at {seq} trapped: {e}") from None
                machine.code = new
            else:
                raise StoreError(f"log entry {seq} starts {machine.name!r} a second time")
        return count
