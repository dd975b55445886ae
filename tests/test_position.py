"""A damaged store is detected at start: the node keeps the seq of the last committed log entry
in ``DATA/node.position`` (written after each commit), and refuses a store that is behind it,
as after its write-ahead log was truncated or removed, until told ``--accept-loss``."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hotswap.cam.loaded import load
from hotswap.client import Client
from hotswap.errors import StoreError
from hotswap.examples import handbuilt
from hotswap.examples.counter import Incr
from hotswap.node.registry import Registry
from hotswap.node.store import Store
from nodeproc import NodeProcess

INCR = b"\x00"
COUNTER = "hotswap.examples.counter:counter_sm"


def _inputs(path: Path, count: int) -> int:
    """Open the store at ``path``, start or recover the counter, give it ``count`` inputs
    (committed, and written into SQLite), close it without a checkpoint; the last seq."""
    store = Store(path)
    registry = Registry()
    recovered = store.recover().machines
    if recovered:
        machine = recovered[0]
        registry.restore(machine)
    else:
        machine = registry.start("counter", load(handbuilt.counter_module()))
        store.log_start(machine)
    for _ in range(count):
        store.log_input(machine, INCR, registry.step("counter", INCR).identity)
        store.commit(registry.machines)
    store.commit(registry.machines)
    store.settle()  # the database holds every input, as after a clean stop
    last = store.last_seq
    store.close()
    return last


def test_the_position_follows_every_commit(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    last = _inputs(path, 5)
    record = (tmp_path / "node.position").read_text()
    assert record.startswith(f"hotswap-position 1 {last:020d} ") and record.endswith("\n")
    assert _inputs(path, 3) == last + 3
    assert (
        (tmp_path / "node.position").read_text().startswith(f"hotswap-position 1 {last + 3:020d}")
    )


def test_a_store_behind_its_position_is_refused_until_the_loss_is_accepted(
    tmp_path: Path,
) -> None:
    """An older copy of the database put in the place of the store (what a removed
    write-ahead log amounts to) is refused with both positions and the way out; with
    ``accept_loss`` it opens on what it holds, and the position follows it from then on."""
    path = tmp_path / "node.sqlite3"
    _inputs(path, 10)
    shutil.copyfile(path, tmp_path / "old.sqlite3")  # closed, so the database file is whole
    last = _inputs(path, 10)
    shutil.copyfile(tmp_path / "old.sqlite3", path)
    with pytest.raises(StoreError) as refused:
        Store(path)
    message = str(refused.value)
    assert f"its log ends at entry {last - 10:,}" in message
    assert f"records that entry {last:,} was committed" in message
    assert "--accept-loss" in message and "node.sqlite3-wal" in message
    with pytest.raises(StoreError, match="is damaged"):  # refusing changed nothing
        Store(path)
    store = Store(path, accept_loss=True)
    try:
        assert store.lost == (last - 10, last)
        (machine,) = store.recover().machines
        assert machine.inputs == 10
    finally:
        store.close()
    assert _inputs(path, 2) == last - 8  # the position is the store's again: no refusal


def test_an_unreadable_position_file_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    last = _inputs(path, 3)
    position = tmp_path / "node.position"
    position.write_text(position.read_text().replace(f"{last:020d}", f"{last + 1:020d}"))
    with pytest.raises(StoreError, match=r"position file .* is unreadable"):
        Store(path)
    store = Store(path, accept_loss=True)
    assert store.lost == (last, None)
    store.close()
    reopened = Store(path)  # the file was rewritten: readable again
    assert reopened.last_seq == last
    reopened.close()


def test_a_store_without_a_position_file_opens_and_gets_one(tmp_path: Path) -> None:
    """A store written before position files (or whose file was removed) cannot be checked:
    it opens, and the position is written from then on."""
    path = tmp_path / "node.sqlite3"
    last = _inputs(path, 4)
    (tmp_path / "node.position").unlink()
    store = Store(path)
    try:
        assert store.lost is None
    finally:
        store.close()
    assert (tmp_path / "node.position").read_text().startswith(f"hotswap-position 1 {last:020d}")


def _start(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """A node that is expected not to start: its exit and what it printed."""
    args = [sys.executable, "-m", "hotswap", "node", "--listen", "127.0.0.1:0", "--data"]
    return subprocess.run(
        [*args, str(data), "--machine", f"counter={COUNTER}", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.long
@pytest.mark.parametrize("damage", ["remove", "truncate"])
def test_a_node_refuses_a_store_whose_wal_was_lost_after_a_crash(
    tmp_path: Path, damage: str
) -> None:
    """3,000 acknowledged inputs, the last 1,500 after a restart, SIGKILL, then the -wal file
    removed or cut in half: the node refuses to start, naming both positions; with
    --accept-loss it starts on what the store holds and says so. (The clean stop copies the
    first 1,500 into the database file, which a lone client's settled inputs, a few commits a
    second, would otherwise leave in the write-ahead log alone.)"""
    data = tmp_path / "data"
    with NodeProcess(data, {"counter": COUNTER}) as node:
        with Client(node.address) as c:
            for _ in range(1500):
                c.send("counter", Incr())
        assert node.stop() == 0
    with NodeProcess(data, {"counter": COUNTER}) as node:
        with Client(node.address) as c:
            for _ in range(1500):
                c.send("counter", Incr())
            assert c.status("counter").inputs == 3000
        node.kill()
    wal = data / "node.sqlite3-wal"
    assert wal.stat().st_size > 0
    if damage == "remove":
        wal.unlink()
    else:  # what a crash of the machine can leave: its header and first frame only
        with wal.open("r+b") as f:
            f.truncate(32 + 24 + 4096)
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    db = sqlite3.connect(copy / "node.sqlite3")
    (held_seq,) = db.execute("SELECT MAX(seq) FROM log").fetchone()
    db.close()
    if held_seq == 3001:  # the last commit checkpointed everything: nothing is lost
        pytest.skip("the database file held every entry: the WAL lost nothing")
    refused = _start(data)
    assert refused.returncode == 1
    assert f"is damaged: its log ends at entry {held_seq:,}, but" in refused.stderr
    # the position names entry 3,001 (the start, 3,000 inputs); the input log may name it
    # first, holding the last inputs, which the killed node had not yet written into SQLite
    assert "records that entry 3,001 was committed" in refused.stderr or (
        "holds entries from" in refused.stderr and "to 3,001, committed" in refused.stderr
    )
    assert "--accept-loss" in refused.stderr
    assert "Listening" not in refused.stdout
    again = _start(data)  # refusing changed nothing: refused again
    assert again.returncode == 1 and "is damaged" in again.stderr
    with NodeProcess(data, {"counter": COUNTER}, "--accept-loss") as node:
        lines = node.lines()
        accepted = [line for line in lines if line.startswith("Accepted loss")]
        assert accepted and "entry 3,001 was recorded as committed" in accepted[0]
        with Client(node.address) as c:
            held = c.status("counter").inputs
            assert held == held_seq - 1 < 3000
            c.send("counter", Incr())
        assert node.stop() == 0
    with NodeProcess(data, {"counter": COUNTER}) as node:  # consistent again: starts as usual
        with Client(node.address) as c:
            assert c.status("counter").inputs == held + 1
        node.stop()
