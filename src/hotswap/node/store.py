"""The node's durable store: SQLite in WAL mode.

Six tables (docs/node.md, "Persistence"):

- ``meta``: the store's schema version;
- ``modules``: content-addressed store of the modules the node may still run or be asked for,
  keyed by identity (:meth:`Store.collect_modules` deletes the others); a module of more than
  :data:`PART_BYTES` is kept in parts, and its row holds a reference to them instead of its
  bytes (``parts:`` and the hex SHA-256 of the bytes: never a module, which begins with
  ``\\0hsm``);
- ``module_parts``: the parts of those modules, by that digest and number, each at most
  :data:`PART_BYTES`. They are written before the row that references them, off the event
  loop when they come with a held request (:meth:`Store.stage`), and deleted off it too
  (:meth:`Store.discard`) once no row references them and no request in flight holds them;
- ``log``: globally ordered: every machine start, every acknowledged input (with the identity
  of the code that processed it), every upgrade (new code and migration), every trial upgrade
  (``trial``: the same, provisional for ``trial`` inputs or ``until`` a time), the end of each
  trial (``confirm`` or ``revert``), and the end of a keyed instance (``delete``); a keyed
  instance's input carries its ``key`` and ``generation``, a change of code who made it
  (``principal``, ``signer``: the audit trail). Inputs and deletes that recovery no longer
  reads are deleted in small batches (:meth:`Store.compaction_horizon`, ``--retain``); changes
  of code never are;
- ``instances``: one checkpoint per keyed instance (``hotswap.node.instances``), the state after
  log entry ``seq`` on the code of ``generation`` (the machine's history says which code that
  is), queued by the service (:meth:`save_instance`) and written by the next commit, in one
  statement, or, for a checkpoint that only rewrites a row on its generation, held in the
  write-back (``writeback.py``) and written later in key order;
- ``snapshots``: per machine, the state after the log entry ``seq``, taken at its start, at
  the end of a trial, on clean shutdown, and every ``snapshot_every`` inputs, or more rarely
  for a large state (:meth:`Store.snapshot_interval`: a snapshot of S bytes is taken at most
  once every S / :data:`SNAPSHOT_BYTES_PER_INPUT` inputs, so its cost per input stays small),
  but never during a trial: recovery needs the state from before it to take it back.

Schema 2 added the trial kinds and the ``trial`` and ``until`` columns; schema 3 keyed
instances (the ``key`` and ``generation`` columns, the ``delete`` kind, the ``instances``
table); schema 4 the audit trail (``principal`` and ``signer``); schema 5 the ``module_parts``
table (a schema 4 store keeps every module whole in its row, and still reads so); schema 6 a
cheaper check of the log's ``kind`` (the same kinds: the log is copied once); schema 7 the
``instances`` table without the ``identity`` of each row's code, which its generation
determines (the table is copied once). Older stores are upgraded in place when opened
(``tests/fixtures/store_v1.sqlite3``, ``store_v2.sqlite3``, ``store_v2_pre_instances.sqlite3``,
``store_v3.sqlite3``, ``store_v4.sqlite3``, ``store_v5.sqlite3``, ``store_v6.sqlite3`` and
``store_v7.sqlite3`` are such). Schema 8 changed no table: it is the first with an input log
beside the database (below), which an older release would not read.

One connection, in SQLite's exclusive locking mode (which keeps a second node off the store
and spares every commit SQLite's file locks), serves two threads: the event loop, which does
everything else, and the loader thread, which writes and deletes parts, one part per short
transaction. A lock in the store (``_txn``) keeps their transactions apart: the loop waits at
most one part's write (about 2 ms for 1 MiB) to begin one of its own.

Beside the database, the position file (``node.position``) holds the seq of the last committed
entry, rewritten after each commit: a store found behind it at start lost committed work (its
write-ahead log removed or truncated after a crash) and is refused unless ``accept_loss``
(``hotswap node --accept-loss``).

Writes are grouped: the service (``service.py``) queues a row for each input it applies
(:meth:`Store.log_input`), and the server or in-memory node calls :meth:`Store.commit` once per
batch, answering the batch only after the commit returns (group commit). A commit of at most
:data:`LOG_BATCH` inputs and nothing else appends them to the input log (``node.inputs``,
``inputlog.py``) in one ``write``, in place of a SQLite transaction, and SQLite takes them
later, many to a transaction (:meth:`Store.settle`, the next full commit, or the commit that
finds :data:`LOG_ROWS` waiting), after which the file is cut back; opening the store writes
what the file holds past SQLite's last entry into SQLite before anything reads the log. With
``fsync=True`` SQLite runs with ``synchronous=FULL``, so a commit survives power loss; the
default ``NORMAL`` survives a crash of the process, which is what WAL guarantees without an
fsync per commit. SQLite copies its write-ahead log into the database (a checkpoint, the one
place where ``NORMAL`` syncs) at the end of the commit that takes the log past
:data:`WAL_CHECKPOINT_PAGES` pages, and the store asks for one every
:data:`CHECKPOINT_COMMITS` commits (a light load): far fewer copies than SQLite's default of
1,000 pages when commits write pages at random places (keyed instances), each page copied
once however many commits wrote it. The log's file then holds the threshold and the largest
commit since (80 to 115 MiB at 1,000,000 instances: the first commit after a restart
checkpoints every instance recovery replayed), cut back to :data:`WAL_LIMIT_BYTES` after a
commit that grew it further (a snapshot of a large state).

Recovery loads each machine's snapshot, then replays its later log entries on the code each
entry names, so the state is the one every acknowledged input produced. Keyed instances are
recovered from their checkpoints, lazily, and from the last :data:`REPLAY_WINDOW` log entries
for those whose checkpoint is behind (:meth:`Store.recover_instances`). It replays inputs and
migrations with no fuel limit (:data:`REPLAY_FUEL`): each was accepted, so it finished within
the budget of the node that accepted it, whatever ``--fuel`` the restarted node has. (A revert
replays the trial's inputs on the old code with the node's fuel, skipping those that trap, as
the live revert did; every revert is snapshotted in the transaction that logs it, so recovery
starts after it.)

A write that fails (disk full, read-only or vanished file) rolls the open transaction back,
drops the queued inputs and raises :class:`StoreError`. The machines in memory are then ahead
of the store: nothing they did since the last commit may be acknowledged, so the caller must
stop and recover (the node does).

"Upgrade" here is a logged ``Swap`` of the registry (an ``upgrade`` or ``trial`` row).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from hotswap.cam.limits import DEFAULT_FUEL
from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.values import decode_value, stop_yielding_on, value_decoder, value_encoder
from hotswap.errors import BytecodeError, HotswapError, StoreError, Trap
from hotswap.lang.evaluate import Value
from hotswap.lang.persistent import bulk, state_size
from hotswap.node.inputlog import HEADER as INPUT_LOG_HEADER
from hotswap.node.inputlog import DefaultRow, InputLog, KeyedRow
from hotswap.node.instances import Instance, generation_code, prefix_end
from hotswap.node.registry import MAX_FUEL, Change, Machine, Swap, apply_input, revert_trial
from hotswap.node.rehearse import Trial, TrialEnd
from hotswap.node.writeback import Row, WriteBack, key_order
from hotswap.protocol.events import HistoryKind
from hotswap.signing import digest

SCHEMA_VERSION = 8
SNAPSHOT_EVERY = 20_000
#: ``--retain``'s default: the log keeps at least its last this many entries; older inputs
#: that recovery no longer needs (they are behind their machine's snapshot, or their keyed
#: instance's replay window) are deleted. None (``--retain all``): the log keeps everything.
DEFAULT_RETAIN = 100_000
#: A commit of at most this many inputs and nothing else goes to the input log
#: (``inputlog``): one ``write`` in place of a SQLite transaction. A larger batch (a
#: pipelining client's) is written to SQLite at once, where its transaction is shared.
LOG_BATCH = 64
#: Once the input log holds this many inputs SQLite does not, the next commit writes them all
#: into SQLite, with its own, in one transaction: a bound on the rows kept in memory and on
#: what a restart reads from the file, whatever calls :meth:`Store.settle`.
LOG_ROWS = 4096
#: The server writes the input log into SQLite (:meth:`Store.settle`) this many seconds after
#: a commit left it inputs, so a lone client's inputs reach SQLite in batches, not one by one.
SETTLE_AFTER = 0.01
#: Compaction waits until this many log entries are due, then deletes at most this many a
#: commit (or twice the commit's own new entries, when more), so it keeps up with any input
#: rate without making one commit long.
COMPACT_BATCH = 4096
#: While keyed instances on old generations keep migrations, collection looks again this
#: often (seconds): the sweeper moves them on without any change of code or snapshot.
COLLECT_EVERY = 60.0
#: The position file's one record: a magic, the seq of the last committed log entry, and the
#: CRC-32 of what precedes it; always the same length, rewritten in place after each commit.
_POSITION = "hotswap-position 1 {seq:020d}"
_POSITION_BYTES = _POSITION.replace("{seq:020d}", "%020d").encode()
#: A snapshot of S bytes is taken at most once every S / SNAPSHOT_BYTES_PER_INPUT inputs: a
#: state of a million map entries (4 MB) is snapshotted every 250,000 inputs, not 20,000, which
#: keeps the encoding's cost per input to about 16 bytes' worth (a few microseconds).
SNAPSHOT_BYTES_PER_INPUT = 16
#: Only the last REPLAY_WINDOW log entries may be newer than their keyed instance's checkpoint:
#: the service checkpoints a live instance before its oldest unsaved input gets older, so
#: recovery reads that many entries at most, whatever the number of instances. The log needs
#: no index by key, so an input appends to it and writes nowhere else.
REPLAY_WINDOW = 100_000
#: Checkpoints that only rewrite a stored row wait in the store's write-back
#: (``writeback.py``) for about ``2 * WRITE_BACK_SHARE * REPLAY_WINDOW`` log entries before
#: they reach SQLite, in key order; the service checkpoints a live instance once its oldest
#: unsaved input is a quarter of the window old (a quarter and twice the share: 0.85 of the
#: window). Those steps run at commits, each up to a commit late, so the write-back also
#: writes a key at once when its oldest input the table lacks nears the window's end: every
#: such input stays in the window whatever the size of the commits.
WRITE_BACK_SHARE = 0.3
#: A batch of the write-back is sealed and written once its states take this many bytes,
#: whatever its age: what the write-back holds in memory is at most about twice this.
WRITE_BACK_BYTES = 8 << 20
#: A machine whose last snapshot took at least this many bytes is snapshotted in the
#: background: its state (an immutable value) is encoded on a thread of the store's own, and
#: the first full commit after the encoding ends writes the row, as of the log entry the state
#: was taken at. Encoding a state of a million map entries takes one to two seconds, which on
#: the event loop was that long without an answer to anyone; on the thread the loop goes on
#: answering (sharing the interpreter with it, so more slowly), and the log keeps every entry
#: the snapshot does not yet cover.
BACKGROUND_SNAPSHOT_BYTES = 1 << 20
#: SQLite's page cache, in KiB (``PRAGMA cache_size``).
CACHE_KIB = 64 * 1024
#: SQLite copies the write-ahead log into the database (a checkpoint: the pages the log
#: holds, written in page order, with an fsync of the log before and of the database after)
#: at the end of the first commit that leaves the log holding at least this many pages
#: (``PRAGMA wal_autocheckpoint``; SQLite's default is 1,000). Keyed instances at random
#: keys dirty about one page for each instance's checkpoint written: with 1,000,000
#: instances a commit of 2,000 inputs writes about 1,650 pages, so at SQLite's default every
#: such commit copied its own pages (half its time). At 20,000 pages the copy comes once
#: every dozen such commits and writes each page once however many of them dirtied it: a
#: commit's share fell from about 55 to 36 us an input. The price: the log grows to the
#: threshold plus the commit that crosses it (80 to 115 MiB), which a restart after a crash
#: reads once (about 40 ms for 80 MiB), and the commit that copies takes longer (0.3 to
#: 0.5 s, where each commit of 2,000 took 0.1 to 0.2 s).
WAL_CHECKPOINT_PAGES = 20_000
#: The node checkpoints the write-ahead log itself every this many commits, however few
#: pages they wrote (:meth:`Store._checkpoint_due`), so that a light load keeps about as
#: little in the log alone as SQLite's default of 1,000 pages did.
CHECKPOINT_COMMITS = 1024
#: After a checkpoint SQLite reuses the write-ahead log from its start, and cuts the file
#: back to this many bytes if one large commit (a snapshot of a large state) grew it
#: further (``PRAGMA journal_size_limit``): what the log keeps on disk between two
#: checkpoints is bounded by this or by the last commit, whichever is larger.
WAL_LIMIT_BYTES = 128 << 20
#: The fuel of recovery's replay of inputs and migrations: none runs out (each was accepted).
REPLAY_FUEL = MAX_FUEL
#: A module of more than this many bytes is kept in parts of at most this many (a row of 1 MiB
#: is written and committed in about 2 ms, a module of 16 MiB in 120): its row in ``modules``
#: holds a reference, its bytes are in ``module_parts``. Smaller modules are kept whole.
PART_BYTES = 1 << 20
#: The longest the event loop waits to begin a transaction while the loader thread writes one
#: part (a few ms; this is for a disk that stalls), before its write fails (and the node
#: stops, acknowledging nothing more).
LOOP_WAIT = 10.0
#: The longest the loader thread waits to write a part while the loop's transaction is open
#: (a commit; a snapshot of a large state takes most of a second), before staging fails: then
#: the request whose modules it wrote is refused (``overloaded``), and nothing else is.
STAGING_WAIT = 30.0
#: The free space a module's staging leaves on the store's disk for everything else: a
#: module that would leave less is refused before any of it is written.
STAGING_RESERVE = 64 << 20
#: What the ``modules`` row of a module kept in parts holds: this, then the hex SHA-256 of the
#: module's bytes, under which ``module_parts`` keeps them. A module begins with ``\\0hsm``.
PARTS_REFERENCE = b"parts:"
_REFERENCE_BYTES = len(PARTS_REFERENCE) + 64

#: The log of schema 2 (recreated by the upgrade from schema 1, before the one to schema 3).
_LOG_2 = """
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    machine TEXT NOT NULL,
    kind TEXT NOT NULL
        CHECK (kind IN ('start', 'input', 'upgrade', 'trial', 'confirm', 'revert')),
    identity TEXT NOT NULL,
    payload BLOB,
    migration TEXT,
    inputs INTEGER NOT NULL,
    time REAL NOT NULL,
    trial INTEGER,
    until REAL
);
CREATE INDEX IF NOT EXISTS log_changes ON log (machine, seq) WHERE kind != 'input';
"""

#: Schema 3: a ``key`` (NULL: the default instance) and the ``generation`` it ran on for the
#: entries of keyed instances, and the ``delete`` kind. The columns are listed in every
#: INSERT, and the SQL is plain enough for PostgreSQL (TEXT keys compared bytewise there with
#: COLLATE "C"). (Recreated by the upgrade from schema 2, before the one to schema 4.)
_LOG_3 = """
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    machine TEXT NOT NULL,
    kind TEXT NOT NULL
        CHECK (kind IN ('start', 'input', 'upgrade', 'trial', 'confirm', 'revert', 'delete')),
    identity TEXT NOT NULL,
    payload BLOB,
    migration TEXT,
    inputs INTEGER NOT NULL,
    time REAL NOT NULL,
    trial INTEGER,
    until REAL,
    key TEXT,
    generation INTEGER
);
CREATE INDEX IF NOT EXISTS log_changes ON log (machine, seq) WHERE kind != 'input';
"""

#: Schema 4: the audit trail. A change of code (``start``, ``upgrade``, ``trial``,
#: ``confirm``, ``revert``) names who made it: ``principal``, the authenticated principal's
#: name (NULL without ``--auth``, or when the node made it itself), and ``signer``, the id of
#: the trusted key that signed it (NULL: unsigned). Inputs leave both NULL. The columns come
#: last, where ``ALTER TABLE ... ADD COLUMN`` puts them in a schema 3 store.
_LOG_4 = _LOG_3.replace(
    "    generation INTEGER\n", "    generation INTEGER,\n    principal TEXT,\n    signer TEXT\n"
)

#: Schema 6: the same columns and kinds, with ``kind`` checked against ``'input'`` first. The
#: ``IN`` list of seven texts alone cost SQLite about 4 us per row inserted here, nearly half
#: of what the row of an input costs; tested for ``'input'`` first, an input's row pays for one
#: comparison. (SQLite keeps a CHECK in the table's definition: the upgrade from schema 5
#: rebuilds the table, copying the log once.)
_KINDS_CHECK_3 = (
    "CHECK (kind IN ('start', 'input', 'upgrade', 'trial', 'confirm', 'revert', 'delete'))"
)
_KINDS_CHECK = (
    "CHECK (kind = 'input' OR kind IN ('start', 'upgrade', 'trial', 'confirm', 'revert', 'delete'))"
)
assert _KINDS_CHECK_3 in _LOG_4
_LOG = _LOG_4.replace(_KINDS_CHECK_3, _KINDS_CHECK)
#: Every column of the log since schema 4, in the order of its definition.
_ALL_COLUMNS = (
    "seq, machine, kind, identity, payload, migration, inputs, time, trial, until, key, "
    "generation, principal, signer"
)

#: One row per keyed instance: its checkpoint (the state after log entry ``seq``, on the code
#: of ``generation``: the identity of entry ``generation`` of the machine's history, which the
#: log keeps whole). Written when an instance is made or migrated, leaves the cache, has run
#: far enough, and on a clean stop.
#:
#: Schema 7: the row no longer holds that identity (64 characters of hex, which schemas 3 to 6
#: kept beside the generation, two thirds of a small instance's row): the table of 1,000,000
#: counters went from 26,379 pages to 8,569, which SQLite's page cache (:data:`CACHE_KIB`)
#: holds, and a uniform input over them from about 41 to 34 us in process (docs/design.md).
_INSTANCES_TABLE = """
CREATE TABLE IF NOT EXISTS instances (
    machine TEXT NOT NULL,
    key TEXT NOT NULL,
    generation INTEGER NOT NULL,
    state BLOB NOT NULL,
    inputs INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (machine, key)
) WITHOUT ROWID;
"""
_INSTANCES_INDEX = """
CREATE INDEX IF NOT EXISTS instances_by_generation ON instances (machine, generation, key);
"""
_INSTANCES = _INSTANCES_TABLE + _INSTANCES_INDEX

#: Schema 5: the parts of the modules kept in parts (above :data:`PART_BYTES`), by the hex
#: SHA-256 of the module's bytes (``digest``; not its identity, which leaves out its custom
#: sections: two modules of one identity may differ in their names, and the parts of one must
#: not be written over the other's) and their number from 0. Each part is a row of its own, so
#: that each is written, and deleted, in a short transaction of its own.
_MODULE_PARTS = """
CREATE TABLE IF NOT EXISTS module_parts (
    digest TEXT NOT NULL,
    part INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (digest, part)
);
"""
#: One part, written again if it was there (the same digest: the same bytes).
_PUT_PART = (
    "INSERT INTO module_parts VALUES (?, ?, ?) ON CONFLICT (digest, part) DO UPDATE "
    "SET data = excluded.data"
)
#: Whether a row references a digest's parts (``length`` first: it reads no module's bytes).
_REFERENCED = "SELECT 1 FROM modules WHERE length(data) = ? AND data = ?"

_COLUMNS = "(seq, machine, kind, identity, payload, migration, inputs, time, trial, until)"
#: An instance's checkpoint, inserted or written over whole.
_PUT_INSTANCE = (
    "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (machine, key) DO UPDATE "
    "SET generation = excluded.generation, state = excluded.state, inputs = excluded.inputs, "
    "seq = excluded.seq"
)
#: The same for a checkpoint on the generation of the one stored: its state, count and entry.
_PUT_INSTANCE_STATE = (
    "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (machine, key) DO UPDATE "
    "SET state = excluded.state, inputs = excluded.inputs, seq = excluded.seq"
)
#: An instance's checkpoint, by primary key (a cache miss).
_LOAD_INSTANCE = (
    "SELECT generation, state, inputs, seq FROM instances WHERE machine = ? AND key = ?"
)
#: The checkpoints of up to ``n`` keys, read ahead of their inputs (:meth:`Store.prefetch`):
#: one statement for each of a few sizes, the last key repeated to fill one (SQLite keeps a
#: prepared statement per text, and ``IN`` reads each key once).
_PREFETCH_SIZES = (4, 16, 64, 256)
_PREFETCH = {
    n: "SELECT key, generation, state, inputs, seq FROM instances WHERE machine = ? AND key IN "
    f"({', '.join('?' * n)})"
    for n in _PREFETCH_SIZES
}
#: What :meth:`Store.prefetch` keeps for a key it found no checkpoint of.
_ABSENT: tuple[()] = ()
#: A commit, or a prefetch, forgets what was read ahead if more than this many rows are left
#: (their inputs were refused: a stream of refused inputs would otherwise pile them up until
#: the commit): the rows read ahead stay under this plus a query's worth.
PREFETCH_KEPT = 4 * _PREFETCH_SIZES[-1]
#: ... or once the states read ahead since it last forgot them pass this many bytes (a row is
#: a whole state, of up to ``MAX_STATE_BYTES``): a prefetch that passes it stops at that row,
#: so what is read ahead stays under this plus one state.
PREFETCH_KEPT_BYTES = 16 << 20
#: The columns of a change of code: those of schema 2 and who made it (schema 4).
_CHANGE = (
    "(seq, machine, kind, identity, payload, migration, inputs, time, trial, until, principal, "
    "signer)"
)
#: The default instance's inputs, as before keyed instances (the hot path binds six values).
_INPUT = (
    "INSERT INTO log VALUES (?, ?, 'input', ?, ?, NULL, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL)"
)
_KEYED_INPUT = (
    "INSERT INTO log (seq, machine, kind, identity, payload, inputs, time, key, generation) "
    "VALUES (?, ?, 'input', ?, ?, 0, ?, ?, ?)"
)

#: The numbers of rows in the statements of :class:`_Inserts`, largest first.
INSERT_ROWS = (128, 16)


class _Inserts:
    """An ``INSERT`` of one row (``sql``: its ``VALUES (...)`` one row's, any ``ON CONFLICT``
    clause after it) run for many rows, as statements of :data:`INSERT_ROWS` rows, then one a
    row (``executemany``) for the few left. A statement of many rows costs SQLite less a row
    than a statement a row does: 2,000 input rows took 1.8 us a row that way against 2.7 us,
    and 1,920 checkpoints at neighbouring keys 3.3 us against 4.1 (docs/design.md). The rows
    go in in order, as ``executemany`` puts them: a later row of one key's wins."""

    __slots__ = ("_many", "one")

    def __init__(self, sql: str) -> None:
        head, _, rest = sql.partition(" VALUES (")
        values, _, tail = rest.partition(")")
        assert head and (not tail or tail.startswith(" ON CONFLICT")) and "(" not in values
        self.one = sql
        row = f"({values})"
        self._many = [(n, f"{head} VALUES {', '.join([row] * n)}{tail}") for n in INSERT_ROWS]

    def run(self, db: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
        """Insert ``rows``, in order, in the open transaction."""
        at, end = 0, len(rows)
        for n, statement in self._many:
            while end - at >= n:
                db.execute(statement, tuple(chain.from_iterable(rows[at : at + n])))
                at += n
        if at < end:
            db.executemany(self.one, rows[at:] if at else rows)


_INSERT_INPUTS = _Inserts(_INPUT)
_INSERT_KEYED = _Inserts(_KEYED_INPUT)
_PUT_INSTANCES = _Inserts(_PUT_INSTANCE)
_PUT_STATES = _Inserts(_PUT_INSTANCE_STATE)

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS modules (identity TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    machine TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    identity TEXT NOT NULL,
    state BLOB NOT NULL,
    inputs INTEGER NOT NULL
);
"""
    + _LOG
    + _INSTANCES
    + _MODULE_PARTS
)

#: Schema 1 -> 2: the log gains the trial kinds (a CHECK constraint, so the table is rebuilt)
#: and the ``trial`` column.
_UPGRADE_1_TO_2 = [
    "ALTER TABLE log RENAME TO log_v1",
    "DROP INDEX IF EXISTS log_changes",
    *(statement for statement in _LOG_2.split(";") if statement.strip()),
    "INSERT INTO log SELECT seq, machine, kind, identity, payload, migration, inputs, time, "
    "NULL, NULL FROM log_v1",
    "DROP TABLE log_v1",
]

#: Schema 2 -> 3: the log gains ``key``, ``generation`` and the ``delete`` kind (rebuilt, for
#: the CHECK constraint); the instances table is new. Every entry of a schema 2 store is the
#: default instance's.
_UPGRADE_2_TO_3 = [
    "ALTER TABLE log RENAME TO log_v2",
    "DROP INDEX IF EXISTS log_changes",
    *(statement for statement in _LOG_3.split(";") if statement.strip()),
    f"INSERT INTO log {_COLUMNS} SELECT seq, machine, kind, identity, payload, migration, "
    "inputs, time, trial, until FROM log_v2",
    "DROP TABLE log_v2",
]

#: Schema 3 -> 4: who made each change of code (two columns, added in place: no copy of the
#: log, however long). Every change of a schema 3 store was made by no one known.
_UPGRADE_3_TO_4 = [
    "ALTER TABLE log ADD COLUMN principal TEXT",
    "ALTER TABLE log ADD COLUMN signer TEXT",
]

#: Schema 4 -> 5: the table of module parts (every module of a schema 4 store is whole in its
#: row, and stays so: a module's row says which it is).
_UPGRADE_4_TO_5 = [statement for statement in _MODULE_PARTS.split(";") if statement.strip()]

#: Schema 5 -> 6: the log's cheaper check of ``kind`` (the table rebuilt; every row copied as
#: it is).
_UPGRADE_5_TO_6 = [
    "ALTER TABLE log RENAME TO log_v5",
    "DROP INDEX IF EXISTS log_changes",
    *(statement for statement in _LOG.split(";") if statement.strip()),
    f"INSERT INTO log ({_ALL_COLUMNS}) SELECT {_ALL_COLUMNS} FROM log_v5",
    "DROP TABLE log_v5",
]

#: The code of each generation of each machine's keyed instances: its history's changes of
#: code in order (as :meth:`Store._history` reads them), numbered from 0 within the machine.
_GENERATIONS = (
    "SELECT machine, identity FROM log WHERE kind != 'input' AND kind NOT IN ('confirm', "
    "'delete') ORDER BY machine, seq"
)

#: Schema 6 -> 7: the instances table without ``identity`` (copied once, in key order, its
#: index made afresh after the copy). :meth:`Store._check_identities` first checks that every
#: row's identity is the one its generation names, so nothing the table held is lost.
_UPGRADE_6_TO_7 = [
    "DROP INDEX IF EXISTS instances_by_generation",
    "ALTER TABLE instances RENAME TO instances_v6",
    _INSTANCES_TABLE,
    "INSERT INTO instances (machine, key, generation, state, inputs, seq) "
    "SELECT machine, key, generation, state, inputs, seq FROM instances_v6 ORDER BY machine, key",
    "DROP TABLE instances_v6",
    _INSTANCES_INDEX,
]


#: The key of a module's parts: the hex SHA-256 of all its bytes, as a signature names them.
_digest = digest


def _reference(digest: str) -> bytes:
    """The ``modules`` row of a module kept in parts under ``digest``."""
    return PARTS_REFERENCE + digest.encode("ascii")


def _referenced_digest(data: bytes) -> str | None:
    """The digest a ``modules`` row's data references, or None if it is a whole module."""
    if len(data) != _REFERENCE_BYTES or not data.startswith(PARTS_REFERENCE):
        return None
    return data[len(PARTS_REFERENCE) :].decode("ascii")


@dataclass
class _Encoding:
    """A snapshot being encoded in the background (:data:`BACKGROUND_SNAPSHOT_BYTES`): the
    state after log entry ``seq``, on code ``identity``, after ``inputs`` inputs, while the
    machine had had ``changes`` changes of code and ``keyed`` entries of keyed instances since
    its snapshot."""

    future: Future[bytes]
    seq: int
    identity: str
    inputs: int
    changes: int
    keyed: int


@dataclass(slots=True, eq=False)
class _Staged:
    """Module bytes staged for a request in flight (:meth:`Store.stage`)."""

    data: bytes  # the bytes the request carried
    code: bytes  # the loaded module's bytes: these, or equal ones the module cache held
    digest: str
    holders: int = 1  # unstaged once each holder's request is answered
    done: bool = False  # every part is committed
    error: str | None = None  # why staging failed: the request's error


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`Store.recover` found: machines, and how many log entries were replayed."""

    machines: list[Machine]
    replayed: int
    seconds: float


def _read_position(data: bytes) -> int | None:
    """The seq a position file's bytes record: 0 for an empty file (none written yet), None
    for anything that is not a whole record with the right checksum."""
    if not data:
        return 0
    text = data.decode("ascii", "replace")
    head, _, rest = text.partition("\n")[0].rpartition(" ")
    parts = head.split(" ")
    if (
        len(parts) != 3
        or parts[:2] != ["hotswap-position", "1"]
        or not parts[2].isdigit()
        or rest != f"{zlib.crc32(head.encode()):08x}"
    ):
        return None
    return int(parts[2])


class Store:
    """One node's database. The node's event loop owns it: only :meth:`stage` and
    :meth:`discard` run on another thread (the loader), through the same connection, their
    transactions and the loop's kept apart by ``_txn``, and the bookkeeping they share with
    the loop behind ``_lock``."""

    def __init__(
        self,
        path: Path | str,
        *,
        fsync: bool = False,
        snapshot_every: int = SNAPSHOT_EVERY,
        retain: int | None = DEFAULT_RETAIN,
        accept_loss: bool = False,
    ) -> None:
        self.path = Path(path)
        self.snapshot_every = snapshot_every
        #: Checkpoints written later, in key order (``writeback.py``; :attr:`replay_window`).
        self._write_back = WriteBack(0, WRITE_BACK_BYTES)
        #: How far back recovery looks for keyed inputs newer than their checkpoint.
        self.replay_window = REPLAY_WINDOW
        #: The log keeps at least its last ``retain`` entries (``--retain``; None: all).
        self._retain = retain
        #: :meth:`commit` has nothing to do but write the queued entries while ``last_seq``
        #: is below this, for this dict of machines of this many (:meth:`_quiet_bound`).
        self._quiet_until = -1
        self._quiet_machines: dict[str, Machine] | None = None
        self._quiet_count = 0
        #: Where the seq of the last committed entry is kept, beside the database.
        self.position_path = self.path.with_suffix(".position")
        #: Module bytes staged for requests in flight, by the ``id`` of the bytes; the digests
        #: of parts that may be unreferenced now (:meth:`discard` checks and deletes them).
        #: Both shared with the loader thread, behind ``_lock``.
        self._staged: dict[int, _Staged] = {}
        self._to_discard: set[str] = set()
        self._lock = threading.Lock()
        #: Held for each staging or discard (the loader thread's work, one at a time).
        self._stage_lock = threading.Lock()
        #: Held for every write transaction on :attr:`db`, the one connection, which the
        #: event loop and the loader thread share: by the loop from :meth:`_begin` to its
        #: commit or rollback (``_in_txn``), by the loader thread for each part it writes or
        #: deletes. So the loop waits at most one part's write, and neither ever finds the
        #: other's transaction open. No Python callback (trace, progress handler, function)
        #: may be set on the connection while two threads use it: SQLite calls it holding the
        #: connection's mutex, which the other thread may be waiting for holding the GIL.
        self._txn = threading.Lock()
        self._in_txn = False
        self._closing = False
        #: machine -> its snapshot being encoded in the background
        self._encoding: dict[str, _Encoding] = {}
        self._encoder: ThreadPoolExecutor | None = None  # made for the first of them
        self._stop_encoding = threading.Event()  # set by close: the encoding stops at a pause
        #: How many parts :meth:`discard` deleted since the store opened.
        self.discarded = 0
        #: With ``accept_loss``, a store found behind its position file opens anyway: then
        #: ``(the store's last seq, the position's)`` (the caller reports it), else None.
        self.lost: tuple[int, int | None] | None = None
        #: The schema this store had before it was upgraded in place on opening, and the
        #: seconds that took (None: it was at the current schema, or new).
        self.upgraded: tuple[int, float] | None = None
        self._fsync = fsync
        try:
            self.db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0.1
            )
            # One node owns its store: an exclusive lock keeps a second node off it, and spares
            # every commit SQLite's file-lock system calls and its shared-memory index (the
            # loader thread writes module parts through this same connection: ``_txn``).
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            # Keyed instances are read and written at random keys: a page cache of 64 MiB
            # (SQLite's default is 2 MiB) keeps the hot part of their tables in memory.
            self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            self.db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            self.db.execute("BEGIN IMMEDIATE")  # take the lock now, not at the first input
            self.db.execute("COMMIT")
            self._open_schema()
            # The last entry ever committed: compaction may have deleted it from the log, but
            # only once a snapshot covers it, and a snapshot keeps the seq of the entry it
            # was taken after.
            row = self.db.execute(
                "SELECT MAX(COALESCE((SELECT MAX(seq) FROM log), 0), "
                "COALESCE((SELECT MAX(seq) FROM snapshots), 0))"
            ).fetchone()
        except BaseException as e:
            db = getattr(self, "db", None)
            if db is not None:
                db.close()  # its lock too: the caller may fix the problem and open it again
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                msg = (
                    f"the store {self.path} is in use by another node (or another program "
                    "has it open: a node holds its store alone)"
                )
                raise StoreError(msg) from None
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot open the store {self.path}: {e}") from None
            raise
        self.last_seq: int = row[0]
        self._committed_seq = self.last_seq  # last_seq at the previous commit
        self._commits = 0  # since the last checkpoint :meth:`_checkpoint_due` ran
        #: machine -> seq of its first default-instance input after its latest snapshot
        self._unsnapped: dict[str, int] = {}
        #: machines whose code changed since their snapshot: a snapshot of one may make
        #: migrations unreachable (:meth:`collect_modules`)
        self._changed: set[str] = set()
        self._collect_due = True  # at the first commit: what an older node left
        #: When collection kept a migration for keyed instances alone (then it looks again
        #: after COLLECT_EVERY seconds), else None.
        self._held_for_instances: float | None = None
        #: How many modules :meth:`collect_modules` deleted since the store opened.
        self.collected = 0
        self._position_fd = -1
        self._position = -1  # the seq the position file holds
        self._pending_inputs: list[DefaultRow] = []
        self._pending_keyed: list[KeyedRow] = []
        #: (machine, key) -> an instance whose checkpoint the next commit writes, or holds in
        #: the write-back if it only rewrites a stored row; and, for each, the seq of the
        #: oldest input its stored row lacks (None: not known, so written by that commit)
        self._unsaved: dict[tuple[str, str], Instance] = {}
        self._unsaved_since: dict[tuple[str, str], int | None] = {}
        #: (machine, key) -> the checkpoint :meth:`prefetch` read (generation, state, inputs,
        #: seq; ``_ABSENT``: none), taken by :meth:`load_instance`; forgotten when the table's
        #: row is written (:meth:`_forget_prefetched`, :meth:`log_delete`), so it is the row.
        self._prefetched: dict[tuple[str, str], tuple[int, bytes, int, int] | tuple[()]] = {}
        #: The bytes of the states read ahead since ``_prefetched`` was last cleared.
        self._prefetched_bytes = 0
        #: The input log beside the database (``inputlog``), and the rows written to it
        #: since SQLite last took them: queries and full commits write these first.
        self._log: InputLog | None = None
        self.log_dropped = 0
        #: With ``accept_loss``, what was wrong with a damaged input log (None: nothing), and
        #: where its bytes were kept (``InputLog.set_aside``).
        self.log_damage: str | None = None
        self.log_set_aside: Path | None = None
        self._logged_inputs: list[DefaultRow] = []
        self._logged_keyed: list[KeyedRow] = []
        self._logged_written = False  # both are in the open transaction
        try:
            self._log = InputLog(self.path.with_suffix(".inputs"), fsync)
            logged = self._read_log(accept_loss)
            self._open_position(accept_loss)
            self._settle_read(logged)
            first = self.db.execute(
                "SELECT seq FROM log WHERE kind IN ('input', 'delete') ORDER BY seq LIMIT 1"
            ).fetchone()
            keyed = self.db.execute("SELECT 1 FROM instances LIMIT 1").fetchone() is not None
        except BaseException as e:
            self.close()  # the database and the position file: a refused store stays as it was
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot open the store {self.path}: {e}") from None
            raise
        #: Every input and delete entry up to this seq is compacted away (or never was).
        self._compacted = self.last_seq if first is None else int(first[0]) - 1
        #: Whether the store holds keyed instances: then recovery reads the replay window.
        self._keyed = keyed
        self._modules: dict[str, LoadedModule] = {}  # identity -> loaded, for instances
        #: The size of a last snapshot past which the next is taken in the background.
        self.background_snapshot_bytes = BACKGROUND_SNAPSHOT_BYTES
        self._last_snapshot: dict[str, int] = {}  # machine -> inputs at its last snapshot
        self._snapshot_size: dict[str, int] = {}  # machine -> bytes of its last snapshot
        self._snapshot_seq: dict[str, int] = {}  # machine -> the log entry it was taken after
        self._machine_seq: dict[str, int] = {}  # machine -> seq of its last log entry
        #: machine -> entries of its keyed instances since its (default) snapshot: they count
        #: toward the snapshot cadence, so recovery's scan for the default instance stays short
        self._keyed_entries: dict[str, int] = {}

    def _open_schema(self) -> None:
        """Create the tables of a new store, or upgrade an older schema in place, in one
        transaction: a failure leaves the store as it was."""
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is not None and row[0] in ("1", "2", "3", "4", "5", "6", "7"):
            started = time.monotonic()
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if row[0] == "1":
                    for statement in _UPGRADE_1_TO_2:
                        self.db.execute(statement)
                if row[0] in ("1", "2"):
                    for statement in _UPGRADE_2_TO_3:
                        self.db.execute(statement)
                if row[0] in ("1", "2", "3"):
                    for statement in _UPGRADE_3_TO_4:
                        self.db.execute(statement)
                if row[0] in ("1", "2", "3", "4"):
                    for statement in _UPGRADE_4_TO_5:
                        self.db.execute(statement)
                if row[0] not in ("6", "7"):
                    for statement in _UPGRADE_5_TO_6:
                        self.db.execute(statement)
                if row[0] not in ("1", "2", "7"):  # schema 3 made the instances table
                    self._check_identities(row[0])
                    for statement in _UPGRADE_6_TO_7:
                        self.db.execute(statement)
                self.db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),)
                )
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            self.upgraded = (int(row[0]), time.monotonic() - started)
            row = (str(SCHEMA_VERSION),)
        self.db.executescript(_SCHEMA)
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise StoreError(
                f"store {self.path} has schema {row[0]}; this release reads schemas 1 to "
                f"{SCHEMA_VERSION}: open it with a newer hotswap"
            )

    def _check_identities(self, schema: str) -> None:
        """Before the instances table of schema 6 loses ``identity``: that every row's is the
        code its machine's history names for its generation (what schema 7 reads in its place),
        or :class:`StoreError` naming the first that is not (the caller then rolls the upgrade
        back: the store stays as it was). The history's generations go into a small table of
        their own, which one pass over the instances joins by primary key (0.2 s for
        1,000,000 instances, where grouping them by code inside SQLite took 1 to 2 s)."""
        generations: list[tuple[str, int, str]] = []
        count: dict[str, int] = {}
        for machine, identity in self.db.execute(_GENERATIONS):
            count[machine] = count.get(machine, -1) + 1
            generations.append((machine, count[machine], identity))
        self.db.execute("DROP TABLE IF EXISTS temp.generations_v6")
        self.db.execute(
            "CREATE TEMP TABLE generations_v6 (machine TEXT NOT NULL, generation INTEGER NOT "
            "NULL, identity TEXT NOT NULL, PRIMARY KEY (machine, generation)) WITHOUT ROWID"
        )
        self.db.executemany("INSERT INTO temp.generations_v6 VALUES (?, ?, ?)", generations)
        lost = (
            "FROM instances AS i LEFT JOIN temp.generations_v6 AS g "
            "ON g.machine = i.machine AND g.generation = i.generation "
            "WHERE g.identity IS NOT i.identity"
        )
        first = self.db.execute(
            f"SELECT i.machine, i.key, i.generation, i.identity, g.identity {lost} LIMIT 1"
        ).fetchone()
        if first is not None:
            (wrong,) = self.db.execute(f"SELECT COUNT(*) {lost}").fetchone()
            machine, key, generation, identity, named = first
            what = (
                f"code {named[:12]} there"
                if named is not None
                else f"{count.get(machine, -1) + 1} generations"
            )
            raise StoreError(
                f"cannot upgrade the store {self.path} to schema {SCHEMA_VERSION}: {wrong} "
                "keyed instance(s) name code other than their generation's in their machine's "
                f"history (the first: {key!r} of {machine!r}, on generation {generation}, names "
                f"{identity[:12]}; the history has {what}); the store was left as it was, at "
                f"schema {schema}"
            )
        self.db.execute("DROP TABLE temp.generations_v6")

    def close(self) -> None:
        """Close the store (what is not committed is lost, as in a crash). A staging on the
        loader thread stops after its current part; its request is never applied."""
        self._closing = True
        if self._encoder is not None:  # a snapshot still being encoded is never written
            self._stop_encoding.set()  # the one running stops at its next pause
            self._encoder.shutdown(wait=False, cancel_futures=True)
            self._encoding.clear()
        if self._in_txn:  # the loop's own transaction, never committed: lost
            self._release()
        with self._txn:  # a staging's part in progress ends first; the next sees _closing
            self.db.close()
        if self._log is not None:  # what it holds SQLite takes at the next start
            self._log.close()
        if self._position_fd >= 0:
            os.close(self._position_fd)
            self._position_fd = -1

    # --- the input log ----------------------------------------------------------------------

    def _read_log(self, accept_loss: bool) -> tuple[list[DefaultRow], list[KeyedRow]]:
        """The input log's entries after SQLite's last, which ``last_seq`` then counts: those
        that follow it with no seq missing. An entry after a missing one means committed work
        was lost (the input log or the write-ahead log removed or cut, or an older copy put in
        place), and so does a damaged file (``Read.damage``): each is refused, unless
        ``accept_loss``, which keeps the entries before the gap or the damage."""
        assert self._log is not None
        read = self._log.read()
        if read.damage is not None:
            if not accept_loss:
                raise StoreError(
                    f"the store {self.path} is damaged: in its input log {self._log.path}, "
                    f"{read.damage}. The node did not start and changed nothing. To start "
                    "anyway on what the store holds and the input log's entries before the "
                    "damage (the file is kept aside, as it is), run the same command with "
                    "--accept-loss (the node notes the loss in its trace)"
                )
            self.log_damage = read.damage
        start = self.last_seq
        inputs = [row for row in read.inputs if row[0] > start]
        keyed = [row for row in read.keyed if row[0] > start]
        seqs = sorted([row[0] for row in inputs] + [row[0] for row in keyed])
        run = 0
        while run < len(seqs) and seqs[run] == start + 1 + run:
            run += 1
        if run < len(seqs):
            missing = start + run + 1
            gap = (
                f"entry {missing:,} is"
                if missing == seqs[run] - 1
                else f"entries {missing:,} to {seqs[run] - 1:,} are"
            )
            if not accept_loss:
                raise StoreError(
                    f"the store {self.path} is damaged: its log ends at entry {start + run:,}, "
                    f"but its input log {self._log.path} holds entries from {seqs[run]:,} to "
                    f"{seqs[-1]:,}, committed (and acknowledged) after them; {gap} missing. "
                    "The node did not start and changed nothing. To start anyway on the "
                    "entries before the gap, run the same command with --accept-loss (the "
                    "node notes the loss in its trace)"
                )
            end = start + run
            inputs = [row for row in inputs if row[0] <= end]
            keyed = [row for row in keyed if row[0] <= end]
            self.lost = (end, seqs[-1])
        self.last_seq = self._committed_seq = start + run
        #: Bytes at the end of the input log that were not whole frames (a write cut short by
        #: a kill or power loss: never acknowledged), dropped when the log is cut back at start.
        self.log_dropped = read.dropped
        return inputs, keyed

    def _settle_read(self, logged: tuple[list[DefaultRow], list[KeyedRow]]) -> None:
        """Write what :meth:`_read_log` kept into SQLite and cut the input log back, before
        anything reads the log: recovery then reads SQLite alone."""
        assert self._log is not None
        inputs, keyed = logged
        if self.log_damage is not None:  # --accept-loss: its bytes kept, the entries taken
            self.log_set_aside = self._log.set_aside()
        if inputs or keyed:
            self._logged_inputs, self._logged_keyed = inputs, keyed
            with self._writing("writing the input log into"):
                self._begin()
                self._commit()
        elif self._log.size > len(INPUT_LOG_HEADER):
            self._log.clear()

    # --- the position file ------------------------------------------------------------------

    def _open_position(self, accept_loss: bool) -> None:
        """Check the store against its position file (the seq of the last entry committed,
        written after each commit) and keep the file open for the next commits.

        A store behind its position lost committed, so acknowledged, work: its write-ahead
        log was truncated or removed after a crash, or an older copy of the database was put
        in its place. Such a store is refused, unless ``accept_loss``: then it opens on what
        it holds, :attr:`lost` says what was lost, and the position is reset to the store's."""
        path = self.position_path
        try:
            self._position_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            data = os.pread(self._position_fd, 256, 0)
        except OSError as e:
            raise StoreError(f"cannot open the position file {path}: {e}") from None
        recorded = _read_position(data)
        if recorded is None or recorded > self.last_seq:
            if not accept_loss:
                raise StoreError(self._damaged(recorded))
            self.lost = (self.last_seq, recorded)
        elif recorded == self.last_seq:
            self._position = recorded
        self._record_position()

    def _damaged(self, recorded: int | None) -> str:
        path, wal = self.position_path, f"{self.path}-wal"
        if recorded is None:
            what = f"its position file {path} is unreadable (not a record this node writes)"
        else:
            log = self.path.with_suffix(".inputs")
            what = (
                f"its log ends at entry {self.last_seq:,}, but {path} records that entry "
                f"{recorded:,} was committed (and acknowledged): "
                + (
                    f"entry {recorded:,} is"
                    if recorded == self.last_seq + 1
                    else f"entries {self.last_seq + 1:,} to {recorded:,} are"
                )
                + " missing, as when the write-ahead "
                f"log {wal} or the input log {log} is truncated or removed after a crash, or "
                "an older copy of the database is put in its place"
            )
        return (
            f"the store {self.path} is damaged: {what}. The node did not start and changed "
            "nothing. To start anyway on what the store holds, run the same command with "
            "--accept-loss (the node notes the loss in its trace)"
        )

    def _record_position(self) -> None:
        """Write the seq of the last committed entry into the position file (and fsync it
        with ``--fsync``), in place: one ``pwrite`` of a fixed-length record."""
        if self._position == self.last_seq or self._position_fd < 0:
            return
        head = _POSITION_BYTES % self.last_seq  # the hot path: bytes formatting, no encode
        record = b"%s %08x\n" % (head, zlib.crc32(head))
        try:
            os.pwrite(self._position_fd, record, 0)
            if self._position < 0:  # the first write: drop whatever followed the record
                os.ftruncate(self._position_fd, len(record))
            if self._fsync:  # the record's length never changes: its data is what to sync
                getattr(os, "fdatasync", os.fsync)(self._position_fd)
        except OSError as e:
            msg = f"writing the position file {self.position_path} failed: {e}"
            raise StoreError(msg) from None
        self._position = self.last_seq

    # --- writing ----------------------------------------------------------------------------

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn a failed write into :class:`StoreError`, rolling back everything uncommitted.

        SQLite may already have rolled the transaction back by itself (it does on a full disk),
        so the connection's own ``in_transaction`` is asked, never a flag of ours."""
        try:
            yield
        except sqlite3.Error as e:
            self._drop_pending()
            if self._in_txn:
                if self.db.in_transaction:
                    with suppress(sqlite3.Error):  # the original error is the one to report
                        self.db.execute("ROLLBACK")
                self._release()
            raise StoreError(f"{what} {self.path} failed: {e}") from None

    def _drop_pending(self) -> None:
        """After a failed write: forget what was queued and not written (nothing of it was
        acknowledged), and give its seqs out again, so the log stays without gaps (which
        :meth:`_read_log` takes for lost work). The input log's rows stay: they were
        acknowledged, and the next transaction that commits writes them."""
        self._pending_inputs.clear()
        self._pending_keyed.clear()
        self._unsaved.clear()
        self._unsaved_since.clear()
        self._forget_all_prefetched()
        self._logged_written = False
        self.last_seq = self._committed_seq

    def _begin(self) -> None:
        """Open the event loop's write transaction, if it is not open: once the loader thread
        is done with the part it writes, if it writes one (``_txn``)."""
        if not self._in_txn:
            self._take_txn()
            self._in_txn = True
            self.db.execute("BEGIN IMMEDIATE")

    def _take_txn(self) -> None:
        """Take ``_txn`` for the event loop: once the loader thread's part, if any, is done."""
        if not self._txn.acquire(timeout=LOOP_WAIT):
            raise sqlite3.OperationalError(
                f"the store stayed busy with a module's part for {LOOP_WAIT} s"
            )

    def _commit(self) -> None:
        """Commit the event loop's write transaction and let the loader thread write; with
        the inputs of the input log SQLite does not hold yet, which is then cut back."""
        self._write_logged()
        self.db.execute("COMMIT")
        self._release()
        if self._logged_written:  # only now: a transaction rolled back writes them again
            self._logged_inputs, self._logged_keyed = [], []
            self._logged_written = False
        if self._log is not None and self._log.size > len(INPUT_LOG_HEADER):
            self._log.clear()

    def _write_logged(self) -> None:
        """Insert the input log's rows that SQLite does not hold, in the open transaction
        (once: :meth:`_commit` forgets them when the transaction commits)."""
        if self._logged_written or not (self._logged_inputs or self._logged_keyed):
            return
        if self._logged_inputs:
            _INSERT_INPUTS.run(self.db, self._logged_inputs)
        if self._logged_keyed:
            _INSERT_KEYED.run(self.db, self._logged_keyed)
        self._logged_written = True

    def _release(self) -> None:
        self._in_txn = False
        self._txn.release()

    def _next_seq(self, machine: str) -> int:
        self.last_seq += 1
        self._machine_seq[machine] = self.last_seq
        return self.last_seq

    def _add_module(self, code: LoadedModule) -> None:
        """Keep ``code`` under its identity. Code of one identity differs only in its custom
        sections (its names); the latest given wins, so a machine that renamed its types keeps
        its new names (the registry refuses two machines that would disagree).

        A module of more than :data:`PART_BYTES` is kept in parts, and its row references
        them: staged for its request (:meth:`stage`), only that small row is written here; if
        not (an in-memory node, a machine started by ``--machine``), its parts too, in this
        transaction. The parts of bytes it replaces go at the next collection."""
        data = code.data
        if len(data) > PART_BYTES:
            digest = self._staged_digest(data)
            if digest is None:
                digest = _digest(data)
                rows = self._parts(digest, data)
                self.db.executemany(_PUT_PART, rows)
            data = _reference(digest)
        # the lengths first: a whole module of a schema 4 store is not read to be compared
        self.db.execute(
            "INSERT INTO modules VALUES (?, ?) ON CONFLICT (identity) DO UPDATE "
            "SET data = excluded.data "
            "WHERE length(data) != length(excluded.data) OR data != excluded.data",
            (code.identity, data),
        )

    @staticmethod
    def _parts(digest: str, data: bytes) -> Iterator[tuple[str, int, memoryview]]:
        """The rows of ``module_parts`` for ``data``: at most :data:`PART_BYTES` each."""
        view = memoryview(data)
        for number, start in enumerate(range(0, len(data), PART_BYTES)):
            yield digest, number, view[start : start + PART_BYTES]

    # --- staging: large modules written off the event loop ----------------------------------

    def stage(
        self, data: bytes, loaded: bytes | None = None, room: int = 0, known: str | None = None
    ) -> bool:
        """Write module ``data``, of more than :data:`PART_BYTES`, into ``module_parts`` now,
        from the thread that loaded it for a held request (never the event loop's): one part
        per short transaction (:meth:`_part_transaction`), so the loop waits at most one
        part's write to begin one of its own. Applying the request then writes only the module's
        small row (:meth:`_add_module`, which knows the module
        by ``loaded``, the loaded module's bytes: ``data`` or equal bytes the module cache
        held). Bytes whose parts a row references already are not written again.

        ``room``: the bytes of this module and the request's modules staged after it, which
        the disk must have room for (:meth:`_no_room_for`) before a part is written;
        ``known``: the digest of ``data`` if it was worked out already (to check a signature).

        Until :meth:`unstage`, the parts are in flight: neither collection nor
        :meth:`discard` deletes them. Whether staging succeeded: a failure (a full disk, the
        store closing) is kept for the request's reply (:meth:`staging_error`), and costs
        nothing acknowledged: the loop's transactions are not involved."""
        if len(data) <= PART_BYTES:
            return True  # kept whole: its row is all there is to write
        digest = known or _digest(data)  # hashed outside any lock: 10 ms for 16 MiB
        with self._lock:
            entry = self._staged.get(id(data))
            if entry is not None and entry.data is data:  # twice in one request
                entry.holders += 1
                return entry.error is None
            entry = self._staged[id(data)] = _Staged(
                data, data if loaded is None else loaded, digest
            )
        error = self._no_room_for(max(room, len(data)))  # room: this and the request's rest
        with self._stage_lock:
            try:
                if error is None:
                    self._write_parts(digest, data)
            except sqlite3.Error as e:
                error = f"writing a module of {len(data):,} bytes to {self.path} failed: {e}"
            except StoreError as e:
                error = str(e)
        with self._lock:
            entry.done, entry.error = error is None, error
        return error is None

    def _no_room_for(self, size: int) -> str | None:
        """Why the store's disk cannot take a module of ``size`` bytes now, if it cannot: its
        parts, their copy in the write-ahead log, and :data:`STAGING_RESERVE` left for the
        inputs and commits that go on meanwhile. Checked before a part is written, so a
        module too large for the disk is refused whole, and never fills it for the rest."""
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError as e:
            return f"cannot tell the free space of {self.path.parent}: {e}"
        needed = 2 * size + STAGING_RESERVE
        if free >= needed:
            return None
        return (
            f"the disk of {self.path} has {free / 2**20:,.0f} MiB free; storing modules of "
            f"{size / 2**20:,.1f} MiB needs {needed / 2**20:,.0f} MiB (twice its size, and "
            f"{STAGING_RESERVE // 2**20} MiB left for inputs): free some space, then try again"
        )

    def _write_parts(self, digest: str, data: bytes) -> None:
        reference = _reference(digest)
        for row in self._parts(digest, data):
            with self._part_transaction("staging a module") as db:
                if row[1] == 0 and db.execute(_REFERENCED, (len(reference), reference)).fetchone():
                    return  # the same bytes are stored: every part is there
                db.execute(_PUT_PART, row)
        # Copy what staging added to the write-ahead log into the database now, here, rather
        # than in one of the loop's next commits (the first past WAL_CHECKPOINT_PAGES).
        with self._txn, suppress(sqlite3.Error):
            if not self._closing:
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextmanager
    def _part_transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One short write transaction of the loader thread's on the shared connection (the
        loop's transactions wait meanwhile, and it waits for theirs); rolled back on error."""
        if not self._txn.acquire(timeout=STAGING_WAIT):
            raise StoreError(f"{what}: the store {self.path} stayed busy for {STAGING_WAIT} s")
        try:
            if self._closing:
                raise StoreError(f"the store {self.path} closed while {what}")
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    with suppress(sqlite3.Error):  # the original error is the one to report
                        db.execute("ROLLBACK")
        finally:
            self._txn.release()

    def _staged_digest(self, data: bytes) -> str | None:
        """The digest of these very bytes if they are staged, every part committed."""
        with self._lock:
            for entry in self._staged.values():
                if entry.done and (entry.code is data or entry.data is data):
                    return entry.digest
        return None

    def staging_error(self, modules: Iterable[bytes]) -> str | None:
        """Why staging one of ``modules`` failed, if it did (the request is then refused)."""
        with self._lock:
            for data in modules:
                entry = self._staged.get(id(data))
                if entry is not None and entry.data is data and entry.error is not None:
                    return entry.error
        return None

    def unstage(self, modules: Iterable[bytes]) -> bool:
        """The request ``modules`` were staged for is answered (applied, refused, or dropped
        with its connection): they are no longer in flight, and their parts are left for
        :meth:`discard`, which keeps those a row references. Whether a discard is due (for
        these or for what collection found): the caller runs one off the event loop."""
        with self._lock:
            for data in modules:
                entry = self._staged.get(id(data))
                if entry is None or entry.data is not data:
                    continue
                entry.holders -= 1
                if entry.holders <= 0:
                    del self._staged[id(data)]
                    self._to_discard.add(entry.digest)
            return bool(self._to_discard)

    def _in_flight(self) -> set[str]:
        """The digests staged for requests in flight (``_lock`` held)."""
        return {entry.digest for entry in self._staged.values()}

    def discard(self) -> int:
        """Delete the parts left for discarding (by :meth:`unstage` and by collection) that no
        row references and no request in flight holds, one part per short transaction:
        deleting a module of 16 MiB takes about as long as writing it, so it is done off the
        event loop too (the node runs this on its loader thread, and once at start). How many
        parts; a failure leaves the rest for the next collection."""
        deleted = 0
        with self._stage_lock:
            while True:
                with self._lock:
                    if self._closing or not self._to_discard:
                        break
                    digest = self._to_discard.pop()
                try:
                    deleted += self._discard(digest)
                except (sqlite3.Error, StoreError):
                    break  # collection finds them again
        self.discarded += deleted
        return deleted

    def _discard(self, digest: str) -> int:
        reference = _reference(digest)
        deleted = 0
        while True:
            with self._part_transaction("deleting a module's parts") as db:
                with self._lock:  # the loop's commits are all in: up to date
                    held = digest in self._in_flight()
                if held or db.execute(_REFERENCED, (len(reference), reference)).fetchone():
                    return deleted
                (last,) = db.execute(
                    "SELECT MAX(part) FROM module_parts WHERE digest = ?", (digest,)
                ).fetchone()
                if last is None:
                    return deleted
                db.execute("DELETE FROM module_parts WHERE digest = ? AND part = ?", (digest, last))
            deleted += 1

    def log_start(self, machine: Machine) -> None:
        """Log a new machine and snapshot its initial state (commit follows)."""
        with self._writing("logging a start to"):
            self._begin()
            self._add_module(machine.code)
            change = machine.history[-1]
            seq = self._next_seq(machine.name)
            self.db.execute(
                f"INSERT INTO log {_CHANGE} "
                "VALUES (?, ?, 'start', ?, NULL, NULL, 0, ?, NULL, NULL, ?, ?)",
                (seq, machine.name, machine.identity, change.time, change.by, change.signer),
            )
            self._snapshot(machine)

    def log_input(
        self,
        machine: Machine,
        payload: bytes,
        identity: str,
        key: str | None = None,
        generation: int | None = None,
    ) -> int:
        """Queue an applied input (of the keyed instance ``key`` on ``generation``, or of the
        default instance); it is durable after the next :meth:`commit`. Returns its seq."""
        seq = self._next_seq(machine.name)
        if key is None:
            self._unsnapped.setdefault(machine.name, seq)
            self._pending_inputs.append(
                (seq, machine.name, identity, payload, machine.inputs, time.time())
            )
        else:
            self._keyed = True
            self._keyed_entries[machine.name] = self._keyed_entries.get(machine.name, 0) + 1
            self._pending_keyed.append(
                (seq, machine.name, identity, payload, time.time(), key, generation)
            )
        return seq

    def log_upgrade(self, machine: Machine, swap: Swap) -> None:
        """Log an applied upgrade with both modules (a trial upgrade, ``machine.trial`` set, as
        one). The migrated state is not snapshotted here: recovery replays the stored
        migration, and an upgrade of a large state pauses for the migration alone."""
        trial = machine.trial
        with self._writing("logging an upgrade to"):
            self._flush_inputs()
            self._begin()
            self._add_module(swap.new)
            self._add_module(swap.migration)
            if self._keyed:  # loaded already: the instances the upgrade migrates lazily run
                # these, not the stored bytes loaded again on the event loop at a first touch
                # (a store without keyed instances keeps no module loaded for them)
                self._modules[swap.new.identity] = swap.new
                self._modules[swap.migration.identity] = swap.migration
            seq = self._next_seq(machine.name)
            change = swap.change
            self._changed.add(machine.name)
            self.db.execute(
                f"INSERT INTO log {_CHANGE} VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    machine.name,
                    "upgrade" if trial is None else "trial",
                    change.identity,
                    change.migration,
                    change.seq,
                    change.time,
                    None if trial is None else trial.left,
                    None if trial is None else trial.until,
                    change.by,
                    change.signer,
                ),
            )

    def log_trial_end(
        self, machine: Machine, ended: TrialEnd, now: float, by: str | None = None
    ) -> None:
        """Log the end of a trial, after the inputs already queued, and snapshot the state it
        left (the old code's after a revert); ``by``: who ended it (None: the node, when its
        time or inputs ran out or an input trapped)."""
        kind = "revert" if ended.reverted else "confirm"
        with self._writing(f"logging a {kind} to"):
            self._flush_inputs()
            self._begin()
            seq = self._next_seq(machine.name)
            self._changed.add(machine.name)
            self.db.execute(
                f"INSERT INTO log {_CHANGE} "
                "VALUES (?, ?, ?, ?, NULL, NULL, ?, ?, NULL, NULL, ?, NULL)",
                (seq, machine.name, kind, machine.identity, machine.inputs, now, by),
            )
            self._snapshot(machine)

    def _flush_inputs(self) -> None:
        if self._logged_inputs or self._logged_keyed:
            self._begin()
            self._write_logged()  # once per transaction
        if self._pending_inputs:
            self._begin()
            _INSERT_INPUTS.run(self.db, self._pending_inputs)
            self._pending_inputs.clear()
        if self._pending_keyed:
            self._begin()
            _INSERT_KEYED.run(self.db, self._pending_keyed)
            self._pending_keyed.clear()

    def _snapshot(self, machine: Machine) -> None:
        sig = machine.code.machine
        assert sig is not None
        # the state is what verified code made (or a decoded snapshot): encoded unchecked, as a
        # reply's is, which halves the cost of snapshotting a large state
        state = value_encoder(sig.state)(machine.state)
        seq = self._machine_seq[machine.name]
        self._put_snapshot(machine.name, seq, machine.identity, state, machine.inputs)
        self._unsnapped.pop(machine.name, None)
        if machine.name in self._changed:  # its upgrades' migrations may be done with now
            self._changed.discard(machine.name)
            self._collect_due = True

    def _encode_later(self, machine: Machine) -> None:
        """Start encoding a snapshot of ``machine`` in the background, unless one is on its
        way (:data:`BACKGROUND_SNAPSHOT_BYTES`). Until its row is written the machine stays
        due, so each commit is a full one and looks whether the encoding has ended."""
        name = machine.name
        if name in self._encoding:
            return
        sig = machine.code.machine
        assert sig is not None
        if self._encoder is None:
            self._encoder = ThreadPoolExecutor(
                1,
                thread_name_prefix="hotswap-snapshot",
                initializer=stop_yielding_on,
                initargs=(self._stop_encoding,),
            )
        future = self._encoder.submit(value_encoder(sig.state, yielding=True), machine.state)
        seq = self._machine_seq[name]
        changes, keyed = len(machine.history), self._keyed_entries.get(name, 0)
        self._encoding[name] = _Encoding(
            future, seq, machine.identity, machine.inputs, changes, keyed
        )

    @property
    def snapshot_ready(self) -> bool:
        """Whether a snapshot encoded in the background waits for a commit to write it: the
        server commits once a second when one does, so an idle node writes it too."""
        return any(encoding.future.done() for encoding in self._encoding.values())

    def _write_encoded(self, machines: dict[str, Machine]) -> None:
        """Write the rows of the snapshots whose encoding has ended (in the commit's
        transaction). One is dropped when a later snapshot was taken meanwhile (a trial's end,
        a clean stop), when the machine is on trial or gone, or when its code's module is no
        longer stored: the next one is then due as before."""
        for name, encoding in list(self._encoding.items()):
            if not encoding.future.done():
                continue
            del self._encoding[name]
            state = encoding.future.result()  # a state verified code made always encodes
            machine = machines.get(name)
            if (
                machine is None
                or machine.trial is not None
                or self._snapshot_seq.get(name, -1) >= encoding.seq
                or self.db.execute(
                    "SELECT 1 FROM modules WHERE identity = ?", (encoding.identity,)
                ).fetchone()
                is None
            ):
                continue
            since = self._keyed_entries.get(name, 0) - encoding.keyed  # logged meanwhile
            self._put_snapshot(name, encoding.seq, encoding.identity, state, encoding.inputs)
            self._keyed_entries[name] = max(since, 0)  # after its seq: they count on
            if machine.inputs == encoding.inputs and self._machine_seq[name] == encoding.seq:
                self._unsnapped.pop(name, None)
            elif name in self._unsnapped:  # entries came after it: the first is after its seq
                self._unsnapped[name] = encoding.seq + 1
            if len(machine.history) == encoding.changes and name in self._changed:
                self._changed.discard(name)  # no change of code since: as :meth:`_snapshot`
                self._collect_due = True

    def _put_snapshot(self, name: str, seq: int, identity: str, state: bytes, inputs: int) -> None:
        """Write machine ``name``'s snapshot row: its state after log entry ``seq``, on code
        ``identity``, after ``inputs`` inputs (in the open transaction)."""
        self.db.execute(
            "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
            (name, seq, identity, state, inputs),
        )
        self._taken(name, inputs, len(state), seq)

    def _taken(self, name: str, inputs: int, size: int, seq: int) -> None:
        self._keyed_entries[name] = 0
        self._last_snapshot[name] = inputs
        self._snapshot_size[name] = size
        self._snapshot_seq[name] = seq

    def snapshot_interval(self, name: str) -> int:
        """How many inputs ``name`` runs between two snapshots: ``snapshot_every``, or one per
        :data:`SNAPSHOT_BYTES_PER_INPUT` bytes of its last snapshot if that is more. Encoding
        a state costs about as much per byte as applying a small input, so a large state is
        snapshotted more rarely, at the price of a longer replay after a crash."""
        size = self._snapshot_size.get(name, 0)
        return max(self.snapshot_every, size // SNAPSHOT_BYTES_PER_INPUT)

    @property
    def retain(self) -> int | None:
        return self._retain

    @retain.setter
    def retain(self, retain: int | None) -> None:
        self._retain = retain
        self._quiet_until = -1  # what :meth:`_quiet_bound` worked out no longer holds

    def commit(self, machines: dict[str, Machine]) -> None:
        """Make everything logged so far durable; snapshot machines that ran far enough (or
        that hold back the compaction of the log); compact a batch of the log; collect the
        modules nothing can use any more; then record the position.

        Most commits of a busy node hold inputs alone, and none of the rest can be due yet:
        until ``last_seq`` reaches the bound the last full commit worked out
        (:meth:`_quiet_bound`), with no checkpoint queued, no transaction open (a change of
        code, a delete) and no collection due, a commit writes the inputs and the position
        and skips the checks (a third of a lone input's commit)."""
        self._bound_prefetched()
        if (
            self.last_seq < self._quiet_until
            and machines is self._quiet_machines
            and len(machines) == self._quiet_count
            and not self._in_txn
            and not self._unsaved
            and not self._collect_due
            and (
                (held := self._held_for_instances) is None
                or time.monotonic() - held < COLLECT_EVERY
            )
        ):
            inputs, keyed = self._pending_inputs, self._pending_keyed
            if inputs or keyed:
                logged = len(inputs) + len(keyed) <= LOG_BATCH and self.logged < LOG_ROWS
                if logged:
                    self._append_log(inputs, keyed)
                else:
                    with self._writing("commit to"):
                        self._flush_inputs()
                        self._commit()
                self._committed_seq = self.last_seq
                self._record_position()
                if not logged:  # SQLite wrote: its write-ahead log may be due a copy
                    self._checkpoint_due()
            return
        self._commit_all(machines)
        self._quiet_until = self._quiet_bound(machines)
        self._quiet_machines, self._quiet_count = machines, len(machines)

    def _append_log(
        self,
        inputs: list[DefaultRow],
        keyed: list[KeyedRow],
    ) -> None:
        """Make the queued inputs durable in the input log, where SQLite takes them later
        (:meth:`settle`, or the next full commit). A failed write drops what was queued, as a
        failed commit does, and raises :class:`StoreError`."""
        assert self._log is not None
        try:
            self._log.append(inputs, keyed)
        except StoreError:
            self._drop_pending()
            raise
        if inputs:
            self._logged_inputs += inputs
            inputs.clear()
        if keyed:
            self._logged_keyed += keyed
            keyed.clear()

    @property
    def logged(self) -> int:
        """How many inputs the input log holds that SQLite does not yet (:meth:`settle`)."""
        return len(self._logged_inputs) + len(self._logged_keyed)

    def settle(self) -> None:
        """Write the inputs the input log holds into SQLite, in one transaction, and cut the
        log back (the server calls this :data:`SETTLE_AFTER` seconds after a commit left it
        some): so SQLite stays a few milliseconds behind what is acknowledged, and a restart
        reads little of the input log."""
        if (not self._logged_inputs and not self._logged_keyed) or self._in_txn:
            return  # nothing to write, or an open transaction whose commit writes it anyway
        with self._writing("writing the input log into"):
            self._begin()
            self._commit()
        self._checkpoint_due()

    @property
    def replay_window(self) -> int:
        """How far back (log entries) recovery looks for keyed inputs newer than their
        checkpoint; the write-back's batches take their share of it."""
        return self._replay_window

    @replay_window.setter
    def replay_window(self, window: int) -> None:
        self._replay_window = window
        self._write_back.entries = max(1, int(window * WRITE_BACK_SHARE))
        self._write_back.window = window

    def _quiet_bound(self, machines: dict[str, Machine]) -> int:
        """The ``last_seq`` before which no commit can find a snapshot or a compaction due,
        as long as nothing but inputs is logged (anything else opens the transaction, or
        queues a checkpoint, and the next commit is a full one that works the bound out
        again). Each entry adds 1 to ``last_seq`` and at most 1 to a machine's count since
        its snapshot (``since``), so a machine is due by its count no sooner than
        ``interval - since`` entries on; it holds compaction back (:meth:`_holds_back`) no
        sooner than its first unsnapshotted entry (the next one, if it has none) plus
        ``max(retain, interval)``. Compaction is due no sooner than ``retain`` (or the replay
        window, if larger, on a store with keyed instances) plus a batch past what it
        compacted, and never while a machine's first unsnapshotted entry keeps the horizon
        within a batch of it (only a snapshot, a full commit's, moves that). The write-back's
        next slice or seal is due by its own bound."""
        bound = self._write_back.bound()
        seq = self.last_seq
        retain = self._retain
        for name, machine in machines.items():
            if machine.trial is not None:
                continue  # never snapshotted on trial; a trial ends by a logged entry
            interval = self.snapshot_interval(name)
            since = machine.inputs - self._last_snapshot.get(name, 0)
            since += self._keyed_entries.get(name, 0)
            bound = min(bound, seq + max(interval - since, 0))
            if retain is not None:
                first = self._unsnapped.get(name, seq + 1)
                bound = min(bound, first + max(retain, interval))
        if retain is not None:
            held = min(self._unsnapped.values(), default=None)
            if held is None or held - 1 - self._compacted >= COMPACT_BATCH:
                lag = max(retain, self.replay_window) if self._keyed else retain
                bound = min(bound, self._compacted + COMPACT_BATCH + lag)
        return bound

    def _commit_all(self, machines: dict[str, Machine]) -> None:
        """:meth:`commit`, every check made."""
        with self._writing("commit to"):
            self._flush_inputs()
            self._flush_rows()
            if not self._in_txn:
                if not self._collect_due and not self.snapshot_ready:
                    return
                # nothing new, but modules to collect (the first commit) or a snapshot to write
                self._begin()
            if self._encoding:
                self._write_encoded(machines)
            for name, machine in machines.items():
                since = machine.inputs - self._last_snapshot.get(name, 0)
                since += self._keyed_entries.get(name, 0)
                due = since >= self.snapshot_interval(name) or self._holds_back(name)
                if due and machine.trial is None:
                    if self._snapshot_size.get(name, 0) >= self.background_snapshot_bytes:
                        self._encode_later(machine)
                    else:
                        self._snapshot(machine)
            self._compact()
            held = self._held_for_instances
            if self._collect_due or (held is not None and time.monotonic() - held >= COLLECT_EVERY):
                self.collect_modules()
            self._commit()
        self._committed_seq = self.last_seq
        self._record_position()
        self._checkpoint_due()

    def _checkpoint_due(self) -> None:
        """Copy the write-ahead log into the database every :data:`CHECKPOINT_COMMITS`
        commits, whatever they wrote: a light load (one input a commit, a page or two each)
        would take thousands of commits to reach :data:`WAL_CHECKPOINT_PAGES`, and keep them
        in the log alone meanwhile. A busy one reaches the pages first (SQLite checkpoints at
        the end of that commit), and this finds little left to copy. A checkpoint that fails
        loses nothing (the log keeps what it holds), nor does one put off while the loader
        thread writes a part: the next commit tries again."""
        self._commits += 1
        if self._commits < CHECKPOINT_COMMITS or not self._txn.acquire(blocking=False):
            return
        try:
            with suppress(sqlite3.Error):
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._commits = 0
        finally:
            self._txn.release()

    # --- retention: the log compacted behind snapshots (``--retain``) -----------------------

    def _holds_back(self, name: str) -> bool:
        """Whether machine ``name`` keeps the log from being compacted beyond the retention:
        its oldest input not covered by a snapshot is older than the retained entries and
        than its own snapshot interval (a machine that went quiet after a few inputs). A
        snapshot then lets compaction go on; its cost stays within the cadence's (at most one
        per ``snapshot_interval`` entries of the whole log)."""
        first = self._unsnapped.get(name)
        if self.retain is None or first is None:
            return False
        return first <= self.last_seq - max(self.retain, self.snapshot_interval(name))

    def compaction_horizon(self) -> int:
        """The last seq up to which no input or delete entry is needed any more: older than
        the retained entries, behind the snapshot of its machine (every default-instance input
        after a snapshot is needed by recovery, and a machine on trial is never snapshotted,
        so what its revert and recovery replay stays), and, on a store with keyed instances,
        outside the replay window (recovery of instances reads the window only)."""
        if self.retain is None:
            return self._compacted
        horizon = self.last_seq - self.retain
        if self._keyed:
            horizon = min(horizon, self.last_seq - self.replay_window)
        if self._unsnapped:
            horizon = min(horizon, min(self._unsnapped.values()) - 1)
        return horizon

    def _compact(self) -> None:
        """Delete one batch of the inputs and deletes that no recovery needs (in the open
        transaction): a range of the primary key, so its cost is the rows it deletes. Changes
        of code (the history) are never deleted."""
        horizon = self.compaction_horizon()
        if horizon - self._compacted < COMPACT_BATCH:
            return
        batch = max(COMPACT_BATCH, 2 * (self.last_seq - self._committed_seq))
        upto = min(horizon, self._compacted + batch)
        self.db.execute(
            "DELETE FROM log WHERE seq > ? AND seq <= ? AND kind IN ('input', 'delete')",
            (self._compacted, upto),
        )
        self._compacted = upto

    # --- module collection ------------------------------------------------------------------

    def collect_modules(self) -> int:
        """Delete the stored modules nothing can run or ask for any more (in the open
        transaction, or its own); how many.

        Kept: the code of every entry of every machine's history (a rollback may return to
        any of them, and ``get_module`` serves them; the code of a keyed instance's checkpoint
        is that of its generation's entry), the code of every snapshot, and the migrations
        still needed: those of upgrades after their machine's snapshot (recovery runs them
        again) and those of generations newer than the oldest generation a keyed instance of
        the machine is checkpointed on (lazy migration runs them). What goes: migrations of
        upgrades that every state has passed, and modules no entry or snapshot names at all
        (the store keeps only modules of logged changes, so those are left by older releases
        or by hand).

        It reads the store alone (the changes of code through their index, the snapshots, the
        oldest generation of each machine's checkpoints through theirs), never the number of
        inputs or instances.

        Parts (``module_parts``) that no row references then, and that no request in flight
        holds (:meth:`stage`), are left for :meth:`discard`, off the event loop: those of the
        modules deleted here, of bytes another module of their identity replaced, of a
        refused request, or of a staging a crash cut short. The transaction is taken first:
        what it reads, the loader thread cannot change meanwhile."""
        self._collect_due = False
        self._begin()
        self._held_for_instances = None
        keep: set[str] = set()
        snapshots = {
            name: (int(seq), identity)
            for name, seq, identity in self.db.execute(
                "SELECT machine, seq, identity FROM snapshots"
            )
        }
        keep.update(identity for _, identity in snapshots.values())
        changes = self.db.execute(
            "SELECT machine, seq, kind, identity, migration FROM log WHERE kind != 'input' "
            "ORDER BY machine, seq"
        ).fetchall()
        machine, generation, oldest, snapshot = None, -1, None, 0
        for name, seq, kind, identity, migration in changes:
            if kind in ("confirm", "delete"):
                continue
            if name != machine:
                machine, generation = name, -1
                snapshot = snapshots.get(name, (0, ""))[0]
                row = self.db.execute(
                    "SELECT MIN(generation) FROM instances WHERE machine = ?", (name,)
                ).fetchone()
                oldest = None if row[0] is None else int(row[0])
            generation += 1
            keep.add(identity)
            if migration is None or migration in keep:
                continue
            if seq > snapshot:
                keep.add(migration)
            elif oldest is not None and generation > oldest:
                keep.add(migration)
                self._held_for_instances = time.monotonic()
        stored = [identity for (identity,) in self.db.execute("SELECT identity FROM modules")]
        gone = [(identity,) for identity in stored if identity not in keep]
        if gone:
            self.db.executemany("DELETE FROM modules WHERE identity = ?", gone)
            for (identity,) in gone:
                self._modules.pop(identity, None)
            self.collected += len(gone)
        referenced = {
            digest
            for (data,) in self.db.execute(
                "SELECT data FROM modules WHERE length(data) = ?", (_REFERENCE_BYTES,)
            )
            if (digest := _referenced_digest(bytes(data))) is not None
        }
        parts = {
            digest for (digest,) in self.db.execute("SELECT DISTINCT digest FROM module_parts")
        }
        with self._lock:
            self._to_discard |= parts - referenced - self._in_flight()
        return len(gone)

    def checkpoint(self, machines: dict[str, Machine]) -> None:
        """Snapshot every machine now (on clean shutdown), so the next start replays nothing;
        a machine whose snapshot is already its latest log entry is left as it is."""
        with self._writing("checkpoint of"):
            self._flush_inputs()
            self._flush_rows(everything=True)  # the next start replays nothing
            self._begin()
            for machine in machines.values():
                seq = self._machine_seq.get(machine.name)
                current = seq is not None and self._snapshot_seq.get(machine.name) == seq
                if seq is not None and not current and machine.trial is None:
                    self._snapshot(machine)
        self.commit(machines)

    # --- reading ----------------------------------------------------------------------------

    def module(self, identity: str) -> bytes | None:
        """The stored bytes of module ``identity``, or None: its row's, or, for a module kept
        in parts, its parts joined, in order, checked against the digest they are kept under
        (10 ms for 16 MiB), so that they are the very bytes stored (:class:`StoreError` if
        not)."""
        with self._reading(f"reading module {identity[:12]} from"):
            row = self.db.execute(
                "SELECT data FROM modules WHERE identity = ?", (identity,)
            ).fetchone()
            if row is None:
                return None
            data = bytes(row[0])
            digest = _referenced_digest(data)
            if digest is None:
                return data
            rows = self.db.execute(
                "SELECT part, data FROM module_parts WHERE digest = ? ORDER BY part", (digest,)
            ).fetchall()
        if [number for number, _ in rows] != list(range(len(rows))) or not rows:
            raise StoreError(
                f"module {identity[:12]} in {self.path} lacks parts: {len(rows)} found, "
                f"numbered {[number for number, _ in rows][:8]}"
            )
        data = b"".join(part for _, part in rows)
        if _digest(data) != digest:
            raise StoreError(
                f"the parts of module {identity[:12]} in {self.path} are not the bytes stored "
                f"(their SHA-256 is not {digest[:12]})"
            )
        return data

    def _load(self, identity: str) -> LoadedModule:
        """The stored module ``identity``, loaded, and checked to be that module."""
        data = self.module(identity)
        if data is None:
            raise StoreError(f"the store lacks module {identity}")
        try:
            loaded = load_module(data)
        except BytecodeError as e:
            raise StoreError(f"stored module {identity[:12]} no longer loads: {e}") from None
        if loaded.identity != identity:
            raise StoreError(
                f"the module stored as {identity[:12]} is another: {loaded.identity[:12]}"
            )
        return loaded

    def recover(self, fuel: int = DEFAULT_FUEL) -> Recovery:
        """Rebuild every machine from its snapshot and the log entries after it (``fuel``: the
        node's budget, for the replay of a revert, the one replay that can trap).

        Python's cyclic garbage collector is paused meanwhile (:func:`bulk`): decoding and
        replaying make millions of values, which hold no cycles, and the collections they set
        off walk everything made so far (with the first vector, which the collector walked in
        full, recovery of a million map entries was 80 times slower)."""
        with bulk():
            return self._recover(fuel)

    def _recover(self, fuel: int) -> Recovery:
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
            state_size(state)  # measured now, at start, not by the first input's state check
            machine = Machine(name, code, state, inputs, [])
            replayed += self._replay(machine, seq, fuel)
            machine.history = self._history(name)
            self._machine_seq[name] = self._last_seq_of(name)
            self._taken(name, inputs, len(state_bytes), seq)
            machines.append(machine)
        return Recovery(machines, replayed, time.perf_counter() - started)

    def _history(self, name: str) -> list[Change]:
        """Every change of code: starts, upgrades, trial upgrades and reverts (a confirm keeps
        the code, so it is not one)."""
        rows = self.db.execute(
            "SELECT kind, identity, migration, inputs, time, principal, signer FROM log "
            "WHERE machine = ? AND kind NOT IN ('input', 'confirm', 'delete') ORDER BY seq",
            (name,),
        )
        return [
            Change(
                ident,
                HistoryKind.START if kind == "start" else HistoryKind.UPGRADE,
                n,
                t,
                mig,
                by,
                signer,
            )
            for kind, ident, mig, n, t, by, signer in rows
        ]

    def _last_seq_of(self, name: str) -> int:
        row = self.db.execute("SELECT MAX(seq) FROM log WHERE machine = ?", (name,)).fetchone()
        return int(row[0] or 0)

    def _replay(self, machine: Machine, after: int, fuel: int) -> int:
        """Apply the log entries after ``after`` through the registry's own functions, so a
        trial is rebuilt, confirmed and reverted exactly as it was live. Inputs and migrations
        run with :data:`REPLAY_FUEL`, a revert's replay with ``fuel``."""
        rows = self.db.execute(
            "SELECT seq, kind, identity, payload, migration, trial, until, time FROM log "
            "WHERE machine = ? AND seq > ? AND key IS NULL ORDER BY seq",
            (machine.name, after),
        )
        count = 0
        decoders: dict[str, Callable[[bytes], Value]] = {}  # by identity: one per code
        for seq, kind, identity, payload, migration, trial, until, when in rows:
            count += 1
            if kind == "input":
                self._unsnapped.setdefault(machine.name, seq)
                if identity != machine.identity:
                    raise StoreError(
                        f"log entry {seq} ran on {identity[:12]}, replay has "
                        f"{machine.identity[:12]}"
                    )
                decode = decoders.get(identity)
                if decode is None:
                    sig = machine.code.machine
                    assert sig is not None
                    decode = decoders[identity] = value_decoder(sig.input)
                try:
                    apply_input(machine, decode(bytes(payload)), REPLAY_FUEL, None)
                except (HotswapError, Trap) as e:
                    raise StoreError(f"replaying log entry {seq} failed: {e}") from None
            elif kind in ("upgrade", "trial"):
                self._changed.add(machine.name)  # its next snapshot passes this migration
                new, migrate = self._load(identity), self._load(migration)
                before = machine.state
                try:
                    machine.state = migrate.migrate(before, fuel=REPLAY_FUEL, state_limit=None)
                except Trap as e:
                    raise StoreError(f"replaying the upgrade at {seq} trapped: {e}") from None
                if kind == "trial":
                    left = None if trial is None else int(trial)
                    machine.trial = Trial(machine.code, before, machine.inputs, left, until)
                machine.code = new
                machine.recent.clear()
            elif kind in ("confirm", "revert"):
                if machine.trial is not None and kind == "revert":
                    revert_trial(machine, float(when), fuel)
                machine.trial = None
            else:
                raise StoreError(f"log entry {seq} starts {machine.name!r} a second time")
        return count

    # --- keyed instances (hotswap.node.instances.Backing) -----------------------------------

    def loaded(self, identity: str) -> LoadedModule:
        """The stored module ``identity``, loaded once (the codes keyed instances ran)."""
        code = self._modules.get(identity)
        if code is None:
            code = self._modules[identity] = self._load(identity)
        return code

    def in_use(self) -> set[int]:
        """The ``id`` of the bytes of every module kept loaded for keyed instances (the code
        and migration of each upgrade among them): bytes the module cache should keep too."""
        return {id(code.data) for code in self._modules.values()}

    def load_instance(self, machine: Machine, key: str) -> Instance | None:
        """Instance ``key`` of ``machine`` from its checkpoint (one read by primary key,
        whatever the number of instances), or the instance itself if its checkpoint is queued;
        None if there is none. A checkpoint is never behind its instance's log entries unless
        the instance is live (:data:`REPLAY_WINDOW`), so it is the instance."""
        where = (machine.name, key)
        queued = self._unsaved.get(where)
        if queued is not None:  # it left the cache in this batch: itself (still queued)
            return queued
        held = self._write_back.get(where)
        if held is not None:  # its checkpoint waits in the write-back: newer than the row
            return self._instance(machine, key, held[2], held[3], held[4], held[5])
        fetched = self._prefetched.pop(where, None)
        if fetched is not None:  # read ahead of its input: the table's row
            return self._instance(machine, key, *fetched) if fetched else None
        # The hot path of a cache miss (nearly every input with uniform keys over many more
        # instances than the cache): no context manager, no message made unless it fails.
        try:
            row = self.db.execute(_LOAD_INSTANCE, where).fetchone()
        except sqlite3.Error as e:
            msg = f"reading instance {key!r} of {machine.name!r} from {self.path} failed: {e}"
            raise StoreError(msg) from None
        if row is None:
            # Every committed instance has a row (written with its first input), and an
            # instance made in this batch is in the cache, or left it with its row queued:
            # no row, no instance (a delete removes the row).
            return None
        return self._instance(machine, key, *row)

    def prefetch(self, machine: Machine, keys: list[str]) -> None:
        """Read the checkpoints of ``keys`` in one query a few hundred keys, ahead of the
        inputs that go to them (``Instances.prefetch``); :meth:`load_instance` takes each once.
        Keys the batch queued or the write-back holds, or read ahead already, are left out:
        :meth:`load_instance` finds those first. Measured on 1,000,000 rows, a key costs
        about 3.4 us so, against 8 us for a query of its own (docs/design.md)."""
        name = machine.name
        self._bound_prefetched()
        unsaved, back, fetched = self._unsaved, self._write_back, self._prefetched
        wanted = []
        for key in dict.fromkeys(keys):
            where = (name, key)
            if where not in fetched and where not in unsaved and back.get(where) is None:
                wanted.append(key)
        largest = _PREFETCH_SIZES[-1]
        try:
            for start in range(0, len(wanted) if len(wanted) > 1 else 0, largest):
                chunk = wanted[start : start + largest]
                size = next(n for n in _PREFETCH_SIZES if n >= len(chunk))
                chunk += [chunk[-1]] * (size - len(chunk))
                rows = self.db.execute(_PREFETCH[size], (name, *chunk))
                for key, generation, data, inputs, seq in rows:
                    fetched[name, key] = (generation, data, inputs, seq)
                    self._prefetched_bytes += len(data)
                    if self._prefetched_bytes > PREFETCH_KEPT_BYTES:
                        break
                else:  # every row of the chunk read: its keys without one have none
                    for key in chunk:
                        fetched.setdefault((name, key), _ABSENT)
                    continue
                # large states: the rest, read one at a time as their inputs come (a key of
                # this chunk not read is not known to have no row: none is marked absent)
                rows.close()
                break
        except sqlite3.Error as e:
            raise StoreError(
                f"reading instances of {name!r} from {self.path} failed: {e}"
            ) from None

    def _forget_all_prefetched(self) -> None:
        self._prefetched.clear()
        self._prefetched_bytes = 0

    def _bound_prefetched(self) -> None:
        """Forget what was read ahead once past :data:`PREFETCH_KEPT` rows or
        :data:`PREFETCH_KEPT_BYTES` of states (left by inputs refused since: a stream of them
        would otherwise pile rows up until a commit)."""
        if len(self._prefetched) > PREFETCH_KEPT or self._prefetched_bytes > PREFETCH_KEPT_BYTES:
            self._forget_all_prefetched()

    def _forget_prefetched(self, *written: list[Row]) -> None:
        """Before the rows ``written`` replace theirs in the table: forget what
        :meth:`prefetch` read of them. (None should be there: a key is read ahead only while
        its newest checkpoint is the table's and its instance is not live, and only a live
        instance queues a checkpoint, which :meth:`load_instance` made it, taking the row.)"""
        fetched = self._prefetched
        for rows in written:
            for row in rows:
                fetched.pop((row[0], row[1]), None)

    def _instance(
        self, machine: Machine, key: str, generation: int, data: bytes, inputs: int, seq: int
    ) -> Instance:
        """The instance a checkpoint's row holds, on the code its generation names in the
        machine's history."""
        code = self.loaded(generation_code(machine, generation, key))
        assert code.machine is not None
        try:
            state = value_decoder(code.machine.state)(data)
        except HotswapError as e:
            msg = f"the checkpoint of instance {key!r} of {machine.name!r}: {e}"
            raise StoreError(msg) from None
        return Instance(key, code, generation, state, inputs, seq, inputs, generation, len(data))

    def recover_instances(
        self,
        machine: Machine,
        replay: Callable[[Instance | None, int, str, bytes], Instance | None],
    ) -> list[Instance]:
        """The instances of ``machine`` whose checkpoint is behind their log after a crash,
        rebuilt by ``replay`` of each input logged after their checkpoint (a delete ends one).

        Only the last :data:`REPLAY_WINDOW` log entries can be newer than their instance's
        checkpoint (the service checkpoints every live instance before its oldest unsaved entry
        leaves the window), so this reads at most that many entries, in log order, and as
        many checkpoints: the work is bounded by the window, not by the number of instances."""
        with self._reading(f"recovering the instances of {machine.name!r} from"):
            # One pass over the window's keyed entries, joined to their checkpoints by primary
            # key inside SQLite: only the keys with an entry newer than their checkpoint. A
            # key without one was deleted (every committed instance has a checkpoint).
            behind = self.db.execute(
                "SELECT l.key, i.generation, i.state, i.inputs, i.seq "
                "FROM (SELECT key, MAX(seq) AS last FROM log WHERE seq > ? AND machine = ? "
                "AND key IS NOT NULL GROUP BY key) AS l "
                "JOIN instances AS i ON i.machine = ? AND i.key = l.key "
                "WHERE l.last > i.seq",
                (self.last_seq - self.replay_window, machine.name, machine.name),
            ).fetchall()
            start = self.last_seq - self.replay_window
            rows = {key: rest for key, *rest in behind}
            logged: dict[str, list[tuple[int, str, int, bytes]]] = {key: [] for key in rows}
            entries = self.db.execute(
                "SELECT seq, key, kind, generation, payload FROM log "
                "WHERE seq > ? AND machine = ? AND key IS NOT NULL ORDER BY seq",
                (start, machine.name),
            )
            for seq, key, kind, generation, payload in entries:  # one pass over the window
                entry = logged.get(key)
                if entry is not None and seq > rows[key][3]:
                    entry.append((seq, kind, generation, payload))
        found = []
        for key, entries_of in logged.items():
            generation0, state, inputs, after = rows[key]
            instance: Instance | None = self._instance(
                machine, key, generation0, state, inputs, after
            )
            for seq, kind, generation, payload in entries_of:
                if kind == "delete":
                    instance = None
                    continue
                try:
                    instance = replay(instance, int(generation), key, bytes(payload))
                except (HotswapError, Trap) as e:
                    raise StoreError(f"replaying log entry {seq} ({key!r}) failed: {e}") from None
                assert instance is not None
                instance.seq = seq
            if instance is not None:
                found.append(instance)
        return found

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise StoreError(f"{what} {self.path} failed: {e}") from None

    def save_instance(self, machine: Machine, instance: Instance, since: int | None) -> None:
        """Queue ``instance``'s checkpoint, taken as the instance is at the next commit: that
        commit writes it, durable with the queued inputs, if it makes a row or moves one to
        another generation, or if ``since`` (the seq of its oldest input the row it was read
        from lacks) is None (not known: inputs recovery replayed, say, which may be old
        already); else it holds it in the write-back, which writes it before that input leaves
        the replay window. Until it is written :meth:`load_instance` reads it there (or,
        before the commit, returns the instance itself)."""
        where = (machine.name, instance.key)
        self._unsaved[where] = instance
        known = self._unsaved_since.get(where, since)
        self._unsaved_since[where] = None if since is None or known is None else min(since, known)

    def _flush_rows(self, *, everything: bool = False) -> None:
        """Write the queued checkpoints that make or move a row, hold the others in the
        write-back, and write the write-back's share (or, with ``everything``, all it holds),
        in the open transaction. A checkpoint on the generation its stored one has rewrites
        the state alone: setting ``generation`` too, even to the value it had, makes SQLite
        rewrite the row's entry in ``instances_by_generation``, another page written at a
        random place (a commit of 2,000 such checkpoints wrote 2,700 pages to the write-ahead
        log instead of 1,650)."""
        back = self._write_back
        moved: list[Row] = []
        stayed: list[Row] = []
        if self._unsaved:
            oldest = self._unsaved_since
            for where, instance in self._unsaved.items():
                name, key = where
                sig = instance.code.machine
                assert sig is not None
                state = value_encoder(sig.state)(instance.state)
                generation, inputs = instance.generation, instance.inputs
                row = (name, key, generation, state, inputs, instance.seq)
                if generation != instance.saved_generation:  # a new row, or a migrated one
                    back.drop(name, key)
                    moved.append(row)
                elif (since := oldest[where]) is None:
                    back.drop(name, key)
                    stayed.append(row)
                else:
                    back.put(where, row, self.last_seq, since)
                instance.saved_inputs, instance.saved_generation = inputs, generation
                instance.saved_size = len(state)
            self._unsaved.clear()
            oldest.clear()
        held = back.everything() if everything else back.take(self.last_seq)
        # A query's flush (listing, the sweeper) may start or seal a batch between full
        # commits: the commits that skip the checks must not run past its bound.
        self._quiet_until = min(self._quiet_until, back.bound())
        if not (moved or stayed or held):
            return
        if self._prefetched:
            self._forget_prefetched(moved, stayed, held)
        self._begin()
        # In key order, as the table is: consecutive rows share pages and their parents.
        if moved:
            _PUT_INSTANCES.run(self.db, key_order(moved))
        # A row is there, on this generation (else the statement inserts it whole). The
        # write-back's rows are for other keys than the direct ones (``drop``).
        if stayed:
            _PUT_STATES.run(self.db, key_order(stayed))
        if held:
            _PUT_STATES.run(self.db, held)

    def flush(self, *, everything: bool = False) -> None:
        """Write everything queued (inputs, checkpoints) into the open transaction, so that
        queries of keys and generations see it (the write-back holds only states newer than
        rows the table has, on their generation; ``everything`` writes those too)."""
        with self._writing("writing to"):
            self._flush_inputs()
            self._flush_rows(everything=everything)

    def log_delete(self, machine: Machine, instance: Instance) -> None:
        """Log the end of ``instance`` and remove its checkpoint (commit follows)."""
        self._prefetched.pop((machine.name, instance.key), None)
        self._unsaved.pop((machine.name, instance.key), None)
        self._write_back.drop(machine.name, instance.key)
        with self._writing("logging a delete to"):
            self._flush_inputs()
            self._begin()
            seq = self._next_seq(machine.name)
            self._keyed_entries[machine.name] = self._keyed_entries.get(machine.name, 0) + 1
            self.db.execute(
                "INSERT INTO log (seq, machine, kind, identity, inputs, time, key, generation) "
                "VALUES (?, ?, 'delete', ?, ?, ?, ?, ?)",
                (
                    seq,
                    machine.name,
                    instance.code.identity,
                    instance.inputs,
                    time.time(),
                    instance.key,
                    instance.generation,
                ),
            )
            self.db.execute(
                "DELETE FROM instances WHERE machine = ? AND key = ?", (machine.name, instance.key)
            )

    def instance_counts(self, name: str) -> dict[int, int]:
        """How many instances of ``name`` are checkpointed on each generation (an index scan:
        every committed instance has a checkpoint on the generation it runs)."""
        with self._reading("counting instances in"):
            rows = self.db.execute(
                "SELECT generation, COUNT(*) FROM instances WHERE machine = ? GROUP BY generation",
                (name,),
            ).fetchall()
        return {int(g): int(n) for g, n in rows}

    def instance_keys(
        self, name: str, prefix: str | None, after: str | None, limit: int
    ) -> list[str]:
        """Up to ``limit`` keys of ``name`` in order, starting with ``prefix``, after ``after``
        (an index range: bounded work whatever the number of instances)."""
        low = max(prefix or "", after or "")
        sql = "SELECT key FROM instances WHERE machine = ? AND key >= ?"
        args: list[object] = [name, low]
        if after is not None:
            sql += " AND key > ?"
            args.append(after)
        end = None if prefix is None else prefix_end(prefix)
        if end is not None:
            sql += " AND key < ?"
            args.append(end)
        if prefix is not None and end is None:  # only U+10FFFF: check the prefix itself
            sql += " AND substr(key, 1, ?) = ?"
            args += [len(prefix), prefix]
        self.flush()
        with self._reading("listing instances in"):
            rows = self.db.execute(sql + " ORDER BY key LIMIT ?", (*args, limit)).fetchall()
        return [row[0] for row in rows]

    def keys_on(self, name: str, generation: int, after: str, limit: int) -> list[str]:
        """Up to ``limit`` keys of ``name`` checkpointed on ``generation``, after ``after``."""
        self.flush()
        with self._reading("sweeping instances in"):
            rows = self.db.execute(
                "SELECT key FROM instances WHERE machine = ? AND generation = ? AND key > ? "
                "ORDER BY key LIMIT ?",
                (name, generation, after, limit),
            ).fetchall()
        return [row[0] for row in rows]

    def stored_instances(self, name: str) -> Iterator[tuple[str, int, bytes]]:
        """Every checkpoint of ``name``: key, generation, state (on the code of that generation
        of the machine's history; a live instance may be ahead of its checkpoint: the caller
        prefers it)."""
        self.flush(everything=True)
        with self._reading("reading instances from"):
            rows = self.db.execute(
                "SELECT key, generation, state FROM instances WHERE machine = ? ORDER BY key",
                (name,),
            )
            for key, generation, state in rows:  # a cursor: rows as read
                yield key, int(generation), bytes(state)
