"""The store's write-back (``hotswap.node.writeback``): checkpoints that only rewrite a stored
row are held, read from there, and written in key order within their share of the replay
window; a kill at any moment loses none of the inputs they cover."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from hotswap.cam.values import encode_value
from hotswap.client import Client, Upgrade
from hotswap.errors import NodeError, UpgradeRejected
from hotswap.names.schema import core_type
from hotswap.node import store as store_module
from hotswap.node.memory import MemoryNode
from hotswap.node.service import NodeConfig
from hotswap.node.writeback import Row, WriteBack, key_order
from hotswap.protocol.events import InstancesRequest, Send
from instance_machines import Add, tally_v1, tally_v2, tally_v3, v1_to_v2, v1_to_v2_safe

MACHINES = (tally_v1, tally_v2, tally_v3)


def _add(n: int) -> bytes:
    """The bytes of the input ``Add(n)``."""
    return encode_value(tally_v1.to_core_input(Add(n)), core_type(tally_v1.compiled.input))


def _row(key: str, inputs: int, state: bytes = b"s") -> Row:
    return ("m", key, 0, state, inputs, inputs)


def test_a_batch_fills_then_is_written_in_key_order_paced_by_the_log() -> None:
    back = WriteBack(entries=100, max_bytes=1 << 20)
    keys = [f"k{i:02d}" for i in range(50)]
    random.Random(1).shuffle(keys)
    for seq, key in enumerate(keys, start=1):
        back.put(("m", key), _row(key, seq), seq, seq)
        assert back.take(seq) == []  # filling: nothing written before its first row is old
    assert back.bound() == 1 + 100  # the commit that seals it comes by then
    assert back.take(100) == []  # not yet 100 entries old
    assert back.take(101) == []  # sealed now; its writes start with the next commit
    assert back.bound() == 101 + 100
    written: list[Row] = []
    for seq in range(111, 202, 10):  # a commit every 10 entries: a tenth of it each time
        rows = back.take(seq)
        assert 4 <= len(rows) <= 6
        written += rows
    assert [r[1] for r in written] == sorted(keys)  # all of it, in key order, by its due
    assert len(back) == 0
    assert back.bound() == 1 << 62


def test_key_order_is_the_order_of_machine_then_key() -> None:
    """The two sorts give the order of the tuples themselves (SQLite's BINARY collation on
    (machine, key)), with machines whose names prefix each other and keys beyond ASCII."""
    rng = random.Random(4)
    names = ["a", "ab", "b", "\u00e9t\u00e9"]
    keys = ["", "k", "k\u0000", "K", "\U0001f600", "z", "\u00ff", "k1", "k10", "k2"]
    rows = [(rng.choice(names), rng.choice(keys), i) for i in range(300)]
    assert [r[:2] for r in key_order(rows)] == sorted(r[:2] for r in rows)
    assert key_order([]) == []


def test_reads_see_the_newest_row_and_a_dropped_key_is_never_written() -> None:
    back = WriteBack(entries=10, max_bytes=1 << 20)
    back.put(("m", "a"), _row("a", 1), 1, 1)
    back.put(("m", "b"), _row("b", 1), 1, 1)
    back.take(11)  # sealed
    back.put(("m", "a"), _row("a", 2), 12, 12)  # newer, in the filling batch
    assert back.get(("m", "a")) == _row("a", 2)
    back.drop("m", "b")  # a migrated row written directly, or a delete
    assert back.get(("m", "b")) is None
    assert back.take(21) == [_row("a", 1)]  # the sealed batch at its due: the older row first
    assert back.everything() == [_row("a", 2)]
    assert len(back) == 0 and back.get(("m", "a")) is None


def test_a_batch_whose_every_row_was_dropped_leaves_nothing_to_the_next() -> None:
    back = WriteBack(entries=10, max_bytes=1 << 20)
    back.put(("m", "a"), _row("a", 1), 1, 1)
    back.put(("m", "b"), _row("b", 1), 1, 1)
    back.take(11)  # sealed, nothing written yet
    back.drop("m", "a")
    back.drop("m", "b")
    back.put(("m", "a"), _row("a", 12), 12, 12)  # a newer row, after the drop
    back.put(("m", "c"), _row("c", 12), 12, 12)
    assert back.take(22) == []  # the next batch sealed
    assert back.take(32) == [_row("a", 12), _row("c", 12)]  # the drop of a skips nothing here
    assert len(back) == 0


def test_a_written_row_is_read_until_its_batch_is_over_and_a_drop_then_counts() -> None:
    back = WriteBack(entries=10, max_bytes=1 << 20)
    for key in "abcd":
        back.put(("m", key), _row(key, 1), 1, 1)
    back.take(11)  # sealed
    assert back.take(16) == [_row("a", 1), _row("b", 1)]  # half the batch, half its time
    assert len(back) == 2
    assert back.get(("m", "a")) == _row("a", 1)  # what the table has now
    back.drop("m", "a")  # written: nothing to skip
    back.drop("m", "c")  # not written: skipped
    assert back.get(("m", "a")) is None and back.get(("m", "c")) is None
    assert len(back) == 1
    assert back.take(21) == [_row("d", 1)]
    assert len(back) == 0 and back.get(("m", "b")) is None


def test_everything_leaves_out_the_rows_the_table_has_already() -> None:
    back = WriteBack(entries=10, max_bytes=1 << 20)
    for key in "abcd":
        back.put(("m", key), _row(key, 1), 1, 1)
    back.take(11)  # sealed
    assert back.take(16) == [_row("a", 1), _row("b", 1)]  # written
    back.drop("m", "c")
    back.put(("m", "b"), _row("b", 17), 17, 17)  # newer than the row written
    back.put(("m", "e"), _row("e", 17), 17, 17)
    assert back.everything() == [_row("b", 17), _row("d", 1), _row("e", 17)]
    assert len(back) == 0 and back.get(("m", "a")) is None


def test_a_large_batch_is_sealed_and_written_at_once_whatever_its_age() -> None:
    back = WriteBack(entries=1000, max_bytes=100)
    back.put(("m", "a"), _row("a", 1, b"x" * 60), 1, 1)
    back.take(2)
    assert back.bound() == 1001
    back.put(("m", "b"), _row("b", 2, b"x" * 60), 2, 2)  # 120 bytes: over the bound
    assert back.bound() == 0  # the next commit must take it
    assert back.take(3) == []  # sealed (the first batch was still filling)
    back.put(("m", "c"), _row("c", 3, b"x" * 120), 3, 3)  # the next batch is over the bound too
    assert [r[1] for r in back.take(4)] == ["a", "b"]  # the sealed one written at once
    assert [r[1] for r in back.take(5)] == ["c"]  # then this one, sealed by the last commit


def test_everything_is_the_newest_row_of_each_key_in_key_order() -> None:
    back = WriteBack(entries=5, max_bytes=1 << 20)
    for seq, key in enumerate("dbca", start=1):
        back.put(("m", key), _row(key, seq), seq, seq)
    back.take(10)  # sealed
    back.put(("m", "b"), _row("b", 20), 20, 20)
    back.put(("m", "e"), _row("e", 21), 21, 21)
    assert back.everything() == [
        _row("a", 4),
        _row("b", 20),
        _row("c", 3),
        _row("d", 1),
        _row("e", 21),
    ]


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A replay window of 200 entries: the write-back fills for 60 and writes over 60."""
    monkeypatch.setattr(store_module, "REPLAY_WINDOW", 200)
    yield 200


def _client(node: MemoryNode) -> Client:
    return Client(transport=node.connection(), machines=MACHINES)


def _seen(node: MemoryNode, keys: list[str]) -> dict[str, tuple[object, int, str] | None]:
    c = _client(node)
    out: dict[str, tuple[object, int, str] | None] = {}
    for key in keys:
        try:
            status = c.status("tally", key=key)
        except NodeError:
            out[key] = None  # deleted, or never made
            continue
        out[key] = (status.state, status.inputs, status.identity)
    return out


def test_kills_at_any_moment_lose_nothing_the_write_back_held(small_window: int) -> None:
    """A node whose cache holds 6 of 80 instances (nearly every input to a key but the first,
    which takes every other input and so never leaves the cache, evicts one, whose checkpoint
    the write-back holds) and one that keeps every instance live take the same inputs, an
    upgrade with a migration and deletes, with a retention that compacts the log behind the
    window. The first is killed now and then, after stretches of up to 800 requests, four
    times the window (the write-back's rows lost, recovery reading the window alone: a held
    row written too late, or not at all, loses inputs). After every kill, and at the end,
    every instance of the two is the same; after every input, the rows and the window hold
    every input of every instance (what a kill then would recover); and the kills did lose
    held rows, which recovery made again."""
    keys = [f"user-{i}" for i in range(80)]
    rng = random.Random(9)
    held_at_kills = []
    counts: dict[str, int] = {}  # each instance's inputs
    with (
        MemoryNode({"tally": tally_v1}, config=NodeConfig(cache=6), retain=0) as small,
        MemoryNode({"tally": tally_v1}, retain=0) as large,
    ):
        cs, cl = _client(small), _client(large)
        for i in range(3000):
            if i == 1500:
                for c in (cs, cl):
                    c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe))
                continue
            key = keys[rng.randrange(len(keys))] if i % 2 else keys[0]  # never leaves the cache
            if i % 211 == 100:
                outcome = [_delete(c, key) for c in (cs, cl)]
                assert outcome[0] == outcome[1]
                counts.pop(key, None)
                continue
            n = rng.randrange(1, 5)
            assert cs.send("tally", Add(n), key=key) == cl.send("tally", Add(n), key=key)
            counts[key] = counts.get(key, 0) + 1
            assert _recoverable(small.service.store, small_window) == counts, f"at {i}"
            if i in KILLS:
                held_at_kills.append(len(small.service.store._write_back))
                small.reopen()
                cs = _client(small)
                assert _seen(small, keys) == _seen(large, keys), f"after a kill at {i}"
        assert _seen(small, keys) == _seen(large, keys)
        small.reopen()
        assert _seen(small, keys) == _seen(large, keys)
    assert max(held_at_kills) > 0


def _recoverable(store: store_module.Store, window: int) -> dict[str, int]:
    """How many inputs of each instance recovery would find after a kill now: its row's
    count, and its inputs in the replay window after the row."""
    store.settle()  # the input log's entries into SQLite, as opening the store does
    db = store.db
    logged = db.execute(
        "SELECT key, seq FROM log WHERE kind = 'input' AND key IS NOT NULL AND seq > ?",
        (store.last_seq - window,),
    ).fetchall()
    seqs: dict[str, list[int]] = {}
    for key, seq in logged:
        seqs.setdefault(key, []).append(seq)
    found = {}
    for key, inputs, seq in db.execute("SELECT key, inputs, seq FROM instances"):
        found[key] = inputs + sum(1 for s in seqs.get(key, ()) if s > seq)
    return found


#: The requests after which the first node is killed.
KILLS = {150, 160, 900, 1000, 1800, 2600, 2990}


def _delete(c: Client, key: str) -> object:
    try:
        return c.delete("tally", key).inputs
    except NodeError as e:
        return e.code


def test_a_clean_stop_writes_every_held_row_and_the_next_start_replays_nothing(
    small_window: int,
) -> None:
    with MemoryNode({"tally": tally_v1}, config=NodeConfig(cache=2)) as node:
        c = _client(node)
        for i in range(40):
            c.send("tally", Add(i), key=f"k{i % 10}")
        store = node.service.store
        assert len(store._write_back) > 0
        node.service.checkpoint()
        assert len(store._write_back) == 0
        rows = dict(store.db.execute("SELECT key, inputs FROM instances WHERE machine = 'tally'"))
        assert rows == {f"k{i}": 4 for i in range(10)}
        node.reopen()
        assert node.service.store.db.execute("SELECT COUNT(*) FROM instances").fetchone() == (10,)
        assert _seen(node, [f"k{i}" for i in range(10)]) == {
            f"k{i}": (sum(range(i, 40, 10)), 4, tally_v1.identity) for i in range(10)
        }


def test_check_all_reads_the_held_states_not_the_table_s_older_rows(small_window: int) -> None:
    """An upgrade ``--check-all`` runs its migration on every stored instance: on the state the
    write-back holds for it, newer than its row (here 13, on which the migration traps, where
    the row holds 1)."""
    with MemoryNode({"tally": tally_v1}, config=NodeConfig(cache=1)) as node:
        c = _client(node)
        c.send("tally", Add(1), key="a")
        c.send("tally", Add(1), key="b")  # a leaves the cache: its row made, holding 1
        c.send("tally", Add(12), key="a")  # b leaves; a is read back: 13
        c.send("tally", Add(1), key="b")  # a leaves again, its 13 held in the write-back
        store = node.service.store
        assert store._write_back.get(("tally", "a")) is not None
        row = store.db.execute("SELECT inputs FROM instances WHERE key = 'a'").fetchone()
        assert row == (1,)
        with pytest.raises(UpgradeRejected) as refused:
            c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2), check_all=True)
        assert "'a'" in str(refused.value)
        assert c.status("tally", key="a").state == 13  # nothing changed


def test_listings_between_inputs_keep_every_input_recoverable(small_window: int) -> None:
    """A listing writes the queued checkpoints first (so a live instance's checkpoint, due by
    the replay window, can reach the write-back in the listing rather than in the commit).
    One hot instance that never leaves the cache, with no snapshot or compaction due, an input
    and a listing in each batch: after each commit its row and the window hold all of its
    inputs."""
    with MemoryNode({"tally": tally_v1}, snapshot_every=100_000, retain=None) as node:
        service = node.service
        for i in range(1500):
            service.handle(Send(2 * i, "tally", _add(1), False, "hot"))
            service.handle(InstancesRequest(2 * i + 1, "tally", 10))
            service.commit()
            assert _recoverable(service.store, small_window) == {"hot": i + 1}, f"at {i}"


def _commit_of(node: MemoryNode, requests: list[tuple[str | None, int]], rid: int) -> int:
    """``requests`` (key, n: an input of ``Add(n)``; key None: the default instance) applied
    as one batch, then one commit (as a turn of a served node that read them all)."""
    service = node.service
    for key, n in requests:
        rid += 1
        service.handle(Send(rid, "tally", _add(n), False, key))
    service.commit()
    return rid


def test_commits_of_a_fifth_of_the_window_keep_every_input_recoverable(
    small_window: int,
) -> None:
    """Each step of the write-back (the quarter-window checkpoint, the seal, the due) runs at a
    commit, so with commits of 41 entries each can come up to 41 entries late: a key that is
    first in time and last in key order would be written after its oldest input left the
    window. The key's oldest input is tracked, and the commit that finds it near the window's
    end writes it."""
    keys = ["zz"] + [f"a{i:02d}" for i in range(40)]
    with MemoryNode({"tally": tally_v1}) as node:  # a cache that holds every instance
        rid = _commit_of(node, [(key, 1) for key in keys] + [(None, 1)] * 9, 0)
        requests: list[tuple[str | None, int]] = [(key, 1) for key in keys]
        for _ in range(20):
            requests += [(None, 1)] * (41 - len(requests))
            rid = _commit_of(node, requests, rid)
            requests = []
            assert _recoverable(node.service.store, small_window) == dict.fromkeys(keys, 2)
        node.reopen()
        assert _seen(node, keys) == {key: (2, 2, tally_v1.identity) for key in keys}


def test_commits_of_any_size_keep_every_input_recoverable(small_window: int) -> None:
    """Commits of 1 to 150 entries (three quarters of the window) of inputs to 60 keys, some
    hot, a cache of 10: after every commit each instance's row and the window hold all of its
    inputs, and a kill at the end loses none."""
    rng = random.Random(4)
    keys = [f"k{i:02d}" for i in range(60)]
    counts: dict[str, int] = {}
    with MemoryNode({"tally": tally_v1}, config=NodeConfig(cache=10), retain=0) as node:
        rid = 0
        for _ in range(120):
            batch = [
                (keys[rng.randrange(60) if rng.random() < 0.5 else rng.randrange(4)], 1)
                for _ in range(rng.choice((1, 5, 40, 150)))
            ]
            for key, _ in batch:
                counts[key] = counts.get(key, 0) + 1
            rid = _commit_of(node, list(batch), rid)
            assert _recoverable(node.service.store, small_window) == counts
        node.reopen()
        assert {k: v[1] for k, v in _seen(node, sorted(counts)).items() if v} == counts
