"""Checkpoints of keyed instances held back and written to SQLite in key order.

With uniform keys over many more instances than the cache, nearly every input evicts an
instance whose checkpoint is one input behind, and a commit of 2,000 such checkpoints at
random keys dirtied about 1,800 of the ``instances`` table's pages, each written to the
write-ahead log and copied into the database again: about a quarter of an input's cost at
1,000,000 instances (docs/design.md, "Keyed instances"). A checkpoint is not needed for
durability, which the log gives (recovery replays the log's window after each checkpoint):
only its age is bounded, by the replay window. So the store keeps such checkpoints here for a
while, then writes them in key order, a slice per commit: each slice covers a narrow range of
keys, and a commit's checkpoints share their pages.

A batch *fills* until its first row is ``entries`` log entries old (or it holds ``max_bytes``
of states), is then *sealed* (sorted by key), and is written over about ``entries`` more log
entries, paced by the log's growth, while the next batch fills. Those steps run at commits,
and a commit may hold thousands of entries, so the timing alone bounds nothing exactly: each
batch keeps, for each of its keys, the seq of the oldest input the row it was made from lacks
(the sealed batch's row, for a key in both batches; else the table's), and a commit writes at
once the rows of every key whose oldest such input would otherwise be within a tenth of the
``window``'s end (rare: it takes commits of several thousand entries). Each batch also keeps
a bound on the oldest of its keys' seqs, so a commit looks at the keys only when that nears
the window's end (a heap of every key's seq cost about 5% of a uniform input's time). So at
every commit each input stays in the table's row or in the window. Reads see the newest row
of a key: the filling batch's, then the sealed one's, then the table's.

Only checkpoints that rewrite a stored row on its own generation wait here (the statement
that sets the state, the input count and the seq): a new instance's row, or a migrated one's,
is written by the next commit, so the table's keys and generations (what listing, counting
and the sweeper read) are always the instances'.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from operator import itemgetter
from typing import Any, TypeVar

_T = TypeVar("_T", bound=tuple[Any, ...])


def key_order(items: Iterable[_T]) -> list[_T]:
    """``items`` (tuples of machine, key and more) in the order of the ``instances`` table:
    by machine, then key, as SQLite's BINARY collation orders them (UTF-8 bytes: code points,
    as Python orders strings). Two stable sorts by one string each: a sort of the tuples
    compares them element by element, three times slower (17 ms for 30,000 keys of one
    machine against 6)."""
    out = sorted(items, key=itemgetter(1))
    out.sort(key=itemgetter(0))
    return out


#: One checkpoint row: machine, key, generation, the encoded state, the input count, the seq of
#: the last log entry it covers (the ``instances`` table's columns, in order).
Row = tuple[str, str, int, bytes, int, int]


class WriteBack:
    """The checkpoints held back (module docstring): ``put`` queues, ``get`` reads, ``drop``
    forgets a key (a newer row written directly, or a delete), ``take`` gives the rows a
    commit writes."""

    def __init__(self, entries: int, max_bytes: int, window: int = 1 << 62) -> None:
        self.entries = max(1, entries)
        self.max_bytes = max_bytes
        #: The replay window: a key whose oldest input the table lacks is this old, less a
        #: tenth, is written by the commit that finds it so.
        self.window = window
        self._filling: dict[tuple[str, str], Row] = {}
        self._filling_from = 0  # last_seq when the filling batch took its first row
        self._filling_bytes = 0
        #: The sealed batch's rows by key, for reads, and in key order, for writing: a slice
        #: is the next run of ``_rows`` (less the keys dropped since the seal), so a written
        #: row stays in ``_sealed`` until the whole batch is written (the table's row then is
        #: the same, or newer and this one dropped). Taking each row out of the dict as it
        #: was written cost 1.3 us a row: the dict's entries, walked in key order, are all
        #: over memory.
        self._sealed: dict[tuple[str, str], Row] = {}
        self._rows: list[Row] = []
        self._at = 0  # how many of _rows have been written or skipped
        self._dropped: set[tuple[str, str]] = set()  # keys of _rows[_at:] dropped
        self._written = 0  # how many rows of _sealed are written
        self._due = 0  # the last_seq by which the sealed batch is written
        self._paced = 0  # last_seq when the sealed batch's last slice was taken
        #: For each batch, each key's oldest input that the row the batch's row was made from
        #: lacks (the sealed batch's row, for a key in both; else the table's), and a bound at
        #: or below the oldest of them (below it once that key is dropped or, in the sealed
        #: batch, written: the bound is made exact again when it next comes near the window's
        #: end, by the scan it then costs), so the keys are scanned only near that end.
        self._filling_since: dict[tuple[str, str], int] = {}
        self._filling_min = _NEVER
        self._sealed_since: dict[tuple[str, str], int] = {}
        self._sealed_min = _NEVER

    def __len__(self) -> int:
        """How many rows are held and not yet written."""
        return len(self._filling) + len(self._sealed) - self._written

    def get(self, where: tuple[str, str]) -> Row | None:
        """The newest row held for instance ``where`` (its machine and key), or None."""
        row = self._filling.get(where)
        return row if row is not None else self._sealed.get(where)

    def put(self, where: tuple[str, str], row: Row, seq: int, since: int) -> None:
        """Hold ``row`` of instance ``where`` (its machine and key; queued when the log's last
        seq is ``seq``; ``since`` the seq of its oldest input the row it was read from lacks),
        in place of any row the filling batch held for it; a row of the sealed batch stays,
        to be written first."""
        known = self._filling_since.get(where)
        if known is None:
            if not self._filling:
                self._filling_from = seq
            self._filling_since[where] = since
        else:
            self._filling_bytes -= len(self._filling[where][3])
            if since < known:
                self._filling_since[where] = since
        if since < self._filling_min:  # noqa: PLR1730 - a call per put costs more
            self._filling_min = since
        self._filling[where] = row
        self._filling_bytes += len(row[3])

    def drop(self, name: str, key: str) -> None:
        """Forget every row held for ``key``: a newer checkpoint is written directly (a
        migrated instance's), or the instance ended."""
        where = (name, key)
        old = self._filling.pop(where, None)
        if old is not None:
            self._filling_bytes -= len(old[3])
            del self._filling_since[where]
        if self._sealed.pop(where, None) is not None:
            del self._sealed_since[where]
            if bisect_left(self._rows, where, key=_where) < self._at:  # written already
                self._written -= 1
            else:  # its place in _rows is skipped
                self._dropped.add(where)

    def newest(self) -> dict[tuple[str, str], Row]:
        """The newest row held for each key (what reads see in place of the table's row)."""
        return {**self._sealed, **self._filling}

    def bound(self) -> int:
        """The ``last_seq`` at which a commit must call :meth:`take` at the latest (a commit
        that skips the checks of a full one must not pass it)."""
        if self._filling_bytes >= self.max_bytes:
            return 0
        bound = _NEVER
        if self._sealed:
            bound = self._due
        if self._filling:
            bound = min(bound, self._filling_from + self.entries)
        oldest = min(self._filling_min, self._sealed_min)
        if oldest < _NEVER:
            bound = min(bound, oldest + self.window - self.window // 10)
        return bound

    def take(self, seq: int) -> list[Row]:
        """The rows a commit at ``last_seq == seq`` writes: the newest row of each key whose
        oldest input the table lacks is near the window's end, then, in key order, the sealed
        batch's share for the entries logged since the last slice (all that is left once
        ``seq`` reaches its due). Once that batch is written, the filling batch is sealed if it
        is old or large enough (its first slice comes with a later commit)."""
        rows = self._overdue(seq)
        if self._sealed:
            left = len(self._rows) - self._at
            if seq >= self._due or self._filling_bytes >= self.max_bytes:
                count = left
            else:
                count = max(0, -(-left * (seq - self._paced) // (self._due - self._paced)))
            rows += self._slice(count)
            self._paced = seq
        if not self._sealed and self._filling:
            old = seq - self._filling_from >= self.entries
            if old or self._filling_bytes >= self.max_bytes:
                self._sealed, self._filling = self._filling, {}
                self._sealed_since, self._filling_since = self._filling_since, {}
                self._sealed_min, self._filling_min = self._filling_min, _NEVER
                self._filling_bytes = 0
                self._rows = key_order(self._sealed.values())
                self._at = self._written = 0
                self._dropped = set()  # the last batch's, if every row left was dropped
                self._due = self._paced = seq
                self._due += self.entries
        return rows

    def everything(self) -> list[Row]:
        """The newest row held for each key that the table lacks, in key order, for writing
        now (a clean stop; a read of every checkpoint); the write-back is then empty. The
        sealed batch's rows written already are the table's: not written again."""
        dropped = self._dropped
        newest = {
            where: row for row in self._rows[self._at :] if (where := _where(row)) not in dropped
        }
        newest.update(self._filling)
        self._sealed, self._rows, self._at, self._written = {}, [], 0, 0
        self._dropped = set()
        self._filling, self._filling_bytes = {}, 0
        self._filling_since, self._sealed_since = {}, {}
        self._filling_min = self._sealed_min = _NEVER
        return key_order(newest.values())

    def _overdue(self, seq: int) -> list[Row]:
        """The newest rows of the keys whose oldest input the table lacks is at most
        ``seq - window + window // 10``, taken out of the write-back. The keys (both batches',
        the sealed one's not yet written) are scanned only when the lower of the two bounds
        says one may be (rare: it takes commits of several thousand entries, or a bound left
        low by a key written or dropped), and the bounds are then made exact again."""
        limit = seq - self.window + self.window // 10
        if min(self._filling_min, self._sealed_min) > limit:
            return []
        late = [w for w, s in self._filling_since.items() if s <= limit]
        since = self._sealed_since
        unwritten = [_where(row) for row in self._rows[self._at :]]
        late += [w for w in unwritten if (s := since.get(w)) is not None and s <= limit]
        rows: list[Row] = []
        for where in late:
            row = self.get(where)
            if row is not None:  # None: in both batches, and taken already
                rows.append(row)
                self.drop(*where)
        self._filling_min = min(self._filling_since.values(), default=_NEVER)
        unwritten = [_where(row) for row in self._rows[self._at :]]
        self._sealed_min = min(
            (s for w in unwritten if (s := since.get(w)) is not None), default=_NEVER
        )
        return rows

    def _slice(self, count: int) -> list[Row]:
        """The rows of the next ``count`` keys of the sealed batch (those not dropped)."""
        end = min(len(self._rows), self._at + count)
        rows = self._rows[self._at : end]
        if self._dropped:
            dropped = self._dropped
            rows = [row for row in rows if (row[0], row[1]) not in dropped]
        self._at = end
        self._written += len(rows)
        if end == len(self._rows):  # every key written: the sealed batch is over
            self._sealed, self._sealed_since, self._rows = {}, {}, []
            self._dropped = set()
            self._at = self._written = 0
            self._sealed_min = _NEVER
        return rows


_where = itemgetter(0, 1)  # a row's machine and key

#: No seq: later than any.
_NEVER = 1 << 62
