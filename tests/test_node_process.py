"""A real ``hotswap node`` process: what only a process can show (SIGKILL, SIGTERM)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from hotswap import load_module
from hotswap.cam.module import Module, encode_module
from hotswap.client import Upgrade, connect
from hotswap.errors import NodeError, StoreError
from hotswap.examples import handbuilt
from hotswap.node.store import PART_BYTES, Store
from hotswap.protocol import ClientConnection, Hello
from hotswap.protocol.events import NEED_DATA, ConnectionClosed, Output, Send, Welcome
from nodeproc import NodeProcess

COUNTER = "hotswap.examples.handbuilt:counter_module"
INCR = (0, ())
INCR_BYTES = b"\x00"


def _recover(data: Path) -> tuple[int, object]:
    store = Store(data / "node.sqlite3")
    try:
        (machine,) = store.recover().machines
        return machine.inputs, machine.state
    finally:
        store.close()


def _stream_until_killed(address: str, v1: bytes, v2: bytes, migrate: bytes) -> tuple[int, bool]:
    """Send 1000 Incr, upgrade, then Incr forever, in pipelined batches: returns how many
    inputs were acknowledged and whether the upgrade was, when the node dies."""
    acked, upgraded = 0, False
    batch = [Send(0, "counter", b"\x00")] * 25
    try:
        with connect(address) as client:
            while True:
                if acked == 1000 and not upgraded:
                    client.upgrade("counter", Upgrade(v1, v2, migrate))
                    upgraded = True
                requests = [Send(client.session.request_id(), e.machine, e.input) for e in batch]
                replies = client.pipeline(requests)
                assert all(isinstance(r, Output) for r in replies), replies
                acked += len(replies)
    except NodeError:
        return acked, upgraded


def test_sigkill_loses_no_acknowledged_input_or_upgrade(tmp_path: Path) -> None:
    """Kill -9 mid-stream, restart: every acknowledged input and upgrade is there, once."""
    v1 = encode_module(handbuilt.counter_module())
    v2 = encode_module(handbuilt.counter2_module())
    migrate = encode_module(handbuilt.upgrade_state_module())
    node = NodeProcess(tmp_path, {"counter": COUNTER}, "--trace", "off", "--snapshot-every", "300")
    result: list[tuple[int, bool]] = []
    streamer = threading.Thread(
        target=lambda: result.append(_stream_until_killed(node.address, v1, v2, migrate))
    )
    streamer.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # let the stream pass the upgrade, then kill
        time.sleep(0.2)
        with connect(node.address) as probe:
            if probe.status("counter").inputs > 3000:
                break
    node.kill()
    streamer.join(10)
    acked, upgraded = result[0]
    assert upgraded and acked > 1000
    with NodeProcess(tmp_path, {"counter": COUNTER}, "--trace", "off") as again:
        assert any("Recovered machine 'counter'" in line for line in again.lines())
        with connect(again.address) as client:
            status = client.status("counter")
    assert status.inputs >= acked  # inputs applied but not yet answered may be there too
    assert status.identity == load_module(v2).identity
    assert [h.kind for h in status.history] == ["start", "upgrade"]
    assert status.history[1].seq == 1000
    # a fresh run over the same inputs: 1000 Incr on v1, the migration, the rest on v2
    fresh_v1, fresh_v2, fresh_mig = load_module(v1), load_module(v2), load_module(migrate)
    state = fresh_v1.init()
    for _ in range(1000):
        state, _ = fresh_v1.step(INCR, state)
    state = fresh_mig.migrate(state)
    for _ in range(status.inputs - 1000):
        state, _ = fresh_v2.step(INCR, state)
    assert status.state == state == (1000, status.inputs - 1000)


def _padded(module: Module, tag: bytes, size: int = 7 * PART_BYTES // 2) -> bytes:
    """``module`` made larger than PART_BYTES by a custom section of its own ``tag``."""
    pad = (tag * (size // len(tag) + 1))[:size]
    return encode_module(replace(module, custom=(*module.custom, ("zz-pad", pad))))


def test_sigkill_after_a_large_upgrade_recovers_its_modules_exactly(tmp_path: Path) -> None:
    """An upgrade whose modules are kept in parts (staged by the loader thread), acknowledged,
    a few inputs, SIGKILL: the restarted node runs the new code from its parts, serves both
    modules byte for byte, and holds its store against any other opener meanwhile."""
    v1 = encode_module(handbuilt.counter_module())
    v2 = _padded(handbuilt.counter2_module(), b"new code ")
    migrate = _padded(handbuilt.upgrade_state_module(), b"migration ")
    node = NodeProcess(tmp_path, {"counter": COUNTER}, "--trace", "off")
    try:
        with connect(node.address) as client:
            for _ in range(3):
                client.send_raw("counter", INCR_BYTES)
            done = client.upgrade("counter", Upgrade(v1, v2, migrate))
            for _ in range(2):
                client.send_raw("counter", INCR_BYTES)
    finally:
        node.kill()
    with NodeProcess(tmp_path, {"counter": COUNTER}, "--trace", "off") as again:
        with connect(again.address) as client:
            status = client.status_raw("counter")
            assert (status.identity, status.inputs) == (done.new, 5)
            assert client.module(done.new) == v2
            assert client.module(load_module(migrate).identity) == migrate
        with pytest.raises(StoreError, match="in use by another node"):
            Store(tmp_path / "node.sqlite3")
    store = Store(tmp_path / "node.sqlite3")
    try:
        rows = dict(store.db.execute("SELECT identity, length(data) FROM modules"))
        assert rows[done.new] == rows[load_module(migrate).identity] == 70  # references
        assert store.db.execute("SELECT COUNT(*) FROM module_parts").fetchone()[0] == 8
    finally:
        store.close()
    assert _recover(tmp_path) == (5, (3, 2))


def test_sigterm_delivers_the_replies_of_committed_inputs(tmp_path: Path) -> None:
    """On SIGTERM the node committed and exited with replies still in its buffers: a
    pipelining client lost replies of durable inputs and saw a frame cut in half.

    The client pipelines many inputs, reads until it has seen a thousand replies (the node is
    mid-stream), signals, then reads to the end: every reply is whole, the connection ends
    cleanly, the node exits 0, and what the store recovers is exactly what was acknowledged
    (at least the replies read before the signal: a node that dropped its buffers would
    fail here)."""
    total = 60_000
    with NodeProcess(tmp_path / "data", {"counter": COUNTER}, "--trace", "off") as node:
        host, port = node.address.split(":")
        sock = socket.create_connection((host, int(port)))
        sock.settimeout(30)
        conn = ClientConnection()
        sock.sendall(conn.send(Hello()))
        while not isinstance(conn.next_event(), Welcome):
            conn.receive_data(sock.recv(1 << 16))
        requests = b"".join(conn.send(Send(i, "counter", INCR_BYTES)) for i in range(total))
        threading.Thread(target=_send_quietly, args=(sock, requests), daemon=True).start()
        replies, end, signalled = 0, None, False
        while end is None:
            conn.receive_data(sock.recv(1 << 16))
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, Output):
                    replies += 1
                else:
                    end = event
                    break
            if not signalled and replies >= 1000:
                node.proc.send_signal(signal.SIGTERM)
                signalled, at_signal = True, replies
        assert signalled, f"the connection ended after {replies} replies, before the signal"
        assert isinstance(end, ConnectionClosed)
        assert node.proc.wait(20) == 0
        sock.close()
    assert 1000 <= at_signal <= replies <= total
    assert _recover(tmp_path / "data")[0] == replies


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the node stopped reading and closed
        sock.sendall(data)


def test_a_trial_survives_sigkill_and_reverts_exactly(tmp_path: Path) -> None:
    """A trial upgrade, 100 inputs on the new code, SIGKILL, restart, revert: the machine is
    exactly where a run without the upgrade would be."""
    from hotswap.examples.counter import (  # noqa: PLC0415 - DSL machines for this test only
        Count,
        Incr,
        counter_sm,
        counter_sm2,
        upgrade_state,
    )

    spec = {"counter": "hotswap.examples.counter:counter_sm"}
    node = NodeProcess(tmp_path, spec, "--trace", "off", "--snapshot-every", "7")
    try:
        with connect(node.address) as client:
            for _ in range(5):
                client.send("counter", Incr())
            client.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state), trial=500)
            for _ in range(100):
                client.send("counter", Incr())
            assert client.send("counter", Count()) == 100  # v2 counts anew
    finally:
        node.kill()
    with NodeProcess(tmp_path, spec, "--trace", "off") as again, connect(again.address) as client:
        assert client.status("counter").trial == 500 - 101
        ended = client.revert("counter")
        status = client.status("counter")
    assert (ended.replayed, ended.skipped) == (101, 0)
    assert status.identity == counter_sm.identity
    assert (status.state, status.inputs) == (105, 106)  # 105 Incr and one Count on v1


def test_a_taken_port_fails_before_anything_starts(tmp_path: Path) -> None:
    """`make run` with the port taken printed "Started machine" and wrote to its store before
    failing to listen; now it fails first, in one line, and the store is untouched."""
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    args = ["node", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "data")]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "hotswap", *args, "--machine", f"counter={COUNTER}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        taken.close()
    assert result.returncode == 1
    assert "Started machine" not in result.stdout
    assert result.stderr.count("\n") == 1 and "cannot listen on 127.0.0.1" in result.stderr
    assert "another node" in result.stderr
    assert not (tmp_path / "data").exists()
