"""A real node process killed (SIGKILL) while snapshots are encoded in the
background, and while their rows wait for the next commit: recovery is every acknowledged
input, once (no loss, no doubling), with the log compacted behind the snapshots meanwhile.

The node runs with every snapshot after the first taken in the background
(``BACKGROUND_SNAPSHOT_BYTES = 0``) and its encoder slowed down (a pause of 5 ms every 256
elements), so that at any moment an encoding is likely to be running or its row pending;
both are set by a ``sitecustomize`` on the node's ``PYTHONPATH``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hotswap.client import connect
from hotswap.errors import NodeError
from hotswap.node.store import Store
from hotswap.protocol.events import Output, Send
from nodeproc import NodeProcess

TALLY = "background_machines:tally"
THREE = b"\x03"

MACHINES = """
from hotswap.dsl import machine


@machine(init={})
def tally(n: int, entries: dict[int, int]) -> tuple[dict[int, int], int]:
    grown = dict(entries)
    k = len(grown)
    grown[k] = k * n
    return grown, k
"""

SITECUSTOMIZE = """
import os
import hotswap.cam.values as values
import hotswap.node.store as store
store.BACKGROUND_SNAPSHOT_BYTES = 0
values._PAUSE_SECONDS = 0.005
_compact = store.Store._compact


def _marked(self):  # the test learns that the log was compacted (in the open transaction)
    before = self._compacted
    _compact(self)
    if self._compacted > before:
        open(os.environ["HOTSWAP_TEST_COMPACTED"], "w").close()


store.Store._compact = _marked
"""


def _stream_until_killed(address: str) -> int:
    """Pipelined batches of 50 inputs until the node dies: how many were acknowledged."""
    acked = 0
    try:
        with connect(address) as client:
            while True:
                batch = [
                    Send(client.session.request_id(), "tally", THREE, False) for _ in range(50)
                ]
                replies = client.pipeline(batch)
                assert all(isinstance(r, Output) for r in replies), replies
                acked += len(replies)
    except NodeError:
        return acked


@pytest.mark.parametrize("kill_after", [9000])
def test_sigkill_while_encoding_in_the_background_recovers_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill_after: int
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (site / "background_machines.py").write_text(MACHINES)
    monkeypatch.setenv("PYTHONPATH", str(site))
    compacted = tmp_path / "compacted"
    monkeypatch.setenv("HOTSWAP_TEST_COMPACTED", str(compacted))
    data = tmp_path / "data"
    args = ("--trace", "off", "--snapshot-every", "100", "--retain", "200")
    node = NodeProcess(data, {"tally": TALLY}, *args)
    result: list[int] = []
    streamer = threading.Thread(target=lambda: result.append(_stream_until_killed(node.address)))
    streamer.start()
    # the kill comes once the node has taken kill_after inputs and compacted the log behind
    # the snapshots (over 4,096 entries due, behind a snapshot written in the background: a
    # loaded machine's snapshots had once not got that far at 9,000 inputs), and then 1,000
    # more inputs, so that the compacting transaction has been committed; that can take many
    # seconds
    deadline, after = time.monotonic() + 90, None
    while time.monotonic() < deadline:
        time.sleep(0.1)
        with connect(node.address) as probe:
            inputs = probe.status("tally").inputs
        if after is None and inputs > kill_after and compacted.exists():
            after = inputs + 1000
        if after is not None and inputs > after:
            break
    node.kill()
    streamer.join(10)
    (acked,) = result
    assert acked > kill_after // 2

    store = Store(data / "node.sqlite3")
    try:
        (snapshot_inputs,) = store.db.execute("SELECT inputs FROM snapshots").fetchone()
        (oldest,) = store.db.execute("SELECT MIN(seq) FROM log WHERE kind = 'input'").fetchone()
        (machine,) = store.recover().machines
    finally:
        store.close()
    assert snapshot_inputs > 0  # background snapshots were written before the kill
    assert after is not None, "the node did not compact its log within 90 s"
    assert oldest > 2  # and the log compacted behind them
    assert machine.inputs >= acked  # inputs applied but not yet answered may be there too
    state = dict(machine.state.items())
    assert state == {i: 3 * i for i in range(machine.inputs)}  # each input once, in order

    with NodeProcess(data, {"tally": TALLY}, *args) as again:
        assert any("Recovered machine 'tally'" in line for line in again.lines())
        with connect(again.address) as client:
            assert client.status("tally").inputs == machine.inputs
