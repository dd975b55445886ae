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
key also carries the seq of its oldest input the table's row lacks, and a commit writes at once
the rows of every key whose oldest such input would otherwise be within a tenth of the
``window``'s end (rare: it takes commits of several thousand entries). So at every commit each
input stays in the table's row or in the window. Reads see the newest row of a key: the
filling batch's, then the sealed one's, then the table's.

Only checkpoints that rewrite a stored row on its own generation wait here (the statement
that sets the state, the input count and the seq): a new instance's row, or a migrated one's,
is written by the next commit, so the table's keys and generations (what listing, counting
and the sweeper read) are always the instances'.
"""

from __future__ import annotations

import heapq

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
        #: (machine, key) -> the seq of its oldest input the table's row lacks, for each key
        #: held; and a heap of those (entries of keys since written or dropped are skipped).
        self._since: dict[tuple[str, str], int] = {}
        self._oldest: list[tuple[int, tuple[str, str]]] = []
        self._filling: dict[tuple[str, str], Row] = {}
        self._filling_from = 0  # last_seq when the filling batch took its first row
        self._filling_bytes = 0
        self._sealed: dict[tuple[str, str], Row] = {}
        self._order: list[tuple[str, str]] = []  # the sealed batch's keys, sorted
        self._at = 0  # how many of _order have been written or skipped
        self._due = 0  # the last_seq by which the sealed batch is written
        self._paced = 0  # last_seq when the sealed batch's last slice was taken

    def __len__(self) -> int:
        return len(self._filling) + len(self._sealed)

    def get(self, name: str, key: str) -> Row | None:
        """The newest row held for instance ``key`` of machine ``name``, or None."""
        row = self._filling.get((name, key))
        return row if row is not None else self._sealed.get((name, key))

    def put(self, where: tuple[str, str], row: Row, seq: int, since: int) -> None:
        """Hold ``row`` of instance ``where`` (its machine and key; queued when the log's last
        seq is ``seq``; ``since`` the seq of its oldest input the stored row lacks), in place of
        any row the filling batch held for it; a row of the sealed batch stays, to be written
        first."""
        known = self._since.get(where)
        if known is None or since < known:
            self._since[where] = since
            heapq.heappush(self._oldest, (since, where))
        if not self._filling:
            self._filling_from = seq
        old = self._filling.get(where)
        if old is not None:
            self._filling_bytes -= len(old[3])
        self._filling[where] = row
        self._filling_bytes += len(row[3])

    def drop(self, name: str, key: str) -> None:
        """Forget every row held for ``key``: a newer checkpoint is written directly (a
        migrated instance's), or the instance ended."""
        old = self._filling.pop((name, key), None)
        if old is not None:
            self._filling_bytes -= len(old[3])
        self._sealed.pop((name, key), None)  # its place in _order is skipped
        self._since.pop((name, key), None)  # its heap entry is skipped

    def newest(self) -> dict[tuple[str, str], Row]:
        """The newest row held for each key (what reads see in place of the table's row)."""
        return {**self._sealed, **self._filling}

    def bound(self) -> int:
        """The ``last_seq`` at which a commit must call :meth:`take` at the latest (a commit
        that skips the checks of a full one must not pass it)."""
        if self._filling_bytes >= self.max_bytes:
            return 0
        bound = 1 << 62
        if self._sealed:
            bound = self._due
        if self._filling:
            bound = min(bound, self._filling_from + self.entries)
        first = self._first()
        if first is not None:
            bound = min(bound, first + self.window - self.window // 10)
        return bound

    def _first(self) -> int | None:
        """The oldest input any held key's table row lacks (None: none held), the heap's
        entries of keys written or dropped since popped on the way."""
        oldest, since = self._oldest, self._since
        while oldest and since.get(oldest[0][1]) != oldest[0][0]:
            heapq.heappop(oldest)
        return oldest[0][0] if oldest else None

    def take(self, seq: int) -> list[Row]:
        """The rows a commit at ``last_seq == seq`` writes: the newest row of each key whose
        oldest input the table lacks is near the window's end, then, in key order, the sealed
        batch's share for the entries logged since the last slice (all that is left once
        ``seq`` reaches its due). Once that batch is written, the filling batch is sealed if it
        is old or large enough (its first slice comes with a later commit)."""
        rows = self._overdue(seq)
        if self._sealed:
            left = len(self._order) - self._at
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
                self._filling_bytes = 0
                self._order = sorted(self._sealed)
                self._at = 0
                self._due = self._paced = seq
                self._due += self.entries
        return rows

    def everything(self) -> list[Row]:
        """The newest row held for each key, in key order, for writing now (a clean stop; a
        read of every checkpoint); the write-back is then empty."""
        newest = self.newest()
        self._sealed, self._order, self._at = {}, [], 0
        self._filling, self._filling_bytes = {}, 0
        self._since, self._oldest = {}, []
        return [newest[where] for where in sorted(newest)]

    def _overdue(self, seq: int) -> list[Row]:
        """The newest rows of the keys whose oldest input the table lacks is at most
        ``seq - window + window // 10``, taken out of the write-back."""
        limit = seq - self.window + self.window // 10
        rows: list[Row] = []
        while (first := self._first()) is not None and first <= limit:
            _, where = heapq.heappop(self._oldest)
            row = self.get(*where)
            assert row is not None
            rows.append(row)
            self.drop(*where)
        if len(self._oldest) > 4 * len(self._since) + 1024:  # mostly skipped entries: rebuilt
            self._oldest = [(first, where) for where, first in self._since.items()]
            heapq.heapify(self._oldest)
        return rows

    def _slice(self, count: int) -> list[Row]:
        """The next ``count`` keys of the sealed batch (those not dropped), taken out of it."""
        order, sealed = self._order, self._sealed
        end = min(len(order), self._at + count)
        rows = [row for where in order[self._at : end] if (row := sealed.pop(where, None))]
        for row in rows:  # the table has these inputs now (a newer row may still be filling)
            if (row[0], row[1]) not in self._filling:
                self._since.pop((row[0], row[1]), None)
        self._at = end
        if end == len(order):  # every key popped: the sealed batch is empty
            self._order = []
            self._at = 0
        return rows
