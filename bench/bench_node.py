"""Node benchmark: a real node process on loopback, driven from this process.

Prints, in one run: round trips per second for one client sending one input at a time (against
a bare asyncio echo server with the same framing, measured here too); pipelined inputs per
second over one connection with durable group commit; the pause of an upgrade under load, as
the largest gap between two answered inputs around it; inputs lost or duplicated across 100
upgrades under load; restart time after 1,000,000 logged inputs.

Anchors (DESIGN.md section 7, same kind of machine): Erlang gen_server call over loopback 14.7k/s
(1 client), 45.2k/s (16 clients); Haskell original one-way 57-93k inputs/s; Erlang
suspend-to-resume 291 us.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hotswap.cam.build import migration_module
from hotswap.cam.loaded import load
from hotswap.cam.module import encode_module
from hotswap.client import Client, Upgrade
from hotswap.examples import handbuilt
from hotswap.lang.terms import ID
from hotswap.lang.types import INT
from hotswap.node.registry import Registry
from hotswap.node.store import Store
from hotswap.protocol.events import Output, Send

INCR = b"\x00"
COUNTER = "hotswap.examples.handbuilt:counter_module"


def _start_node(data: Path, *extra: str) -> tuple[subprocess.Popen[str], str, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hotswap",
            "node",
            "--listen",
            "127.0.0.1:0",
            "--data",
            str(data),
            "--trace",
            "off",
            "--machine",
            f"counter={COUNTER}",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"Listening on ([0-9.]+:[0-9]+)", line)
        if m:
            return proc, m.group(1), time.perf_counter() - started
    raise RuntimeError("node did not start")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(30)
    if proc.stdout is not None:
        proc.stdout.close()


_ECHO_SERVER = """
import asyncio, sys
try:
    import uvloop
except ImportError:
    uvloop = None
class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)
async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(60)
(uvloop.run if uvloop else asyncio.run)(main())
"""


def _echo_baseline(seconds: float = 2.0) -> float:
    """Round trips/s against a bare echo server on the node's event loop, in its own process,
    speaking 4-byte length-prefixed frames: the floor under any request/reply server here."""
    proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    try:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = struct.pack(">I", 12) + b"x" * 12
        count, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            sock.sendall(frame)
            got = 0
            while got < len(frame):
                got += len(sock.recv(4096))
            count += 1
        sock.close()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return count / seconds


def _round_trips(address: str, seconds: float = 2.0) -> float:
    with Client(address) as client:
        count, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            client.send_raw("counter", INCR)
            count += 1
    return count / seconds


def _pipelined(address: str, total: int = 200_000, window: int = 4000) -> float:
    """Inputs/s with ``window`` requests in flight on one connection. The requests are encoded
    before the clock starts and replies are counted by their frames (the last one of each
    window is decoded and checked), so the figure is the node's, not this client's."""
    with Client(address) as client:
        conn = client.session.conn
        batches = []
        for _ in range(total // window):
            requests = [Send(client.session.request_id(), "counter", INCR) for _ in range(window)]
            batches.append((b"".join(conn.send(r) for r in requests), len(requests)))
        sock = client.sock
        started = time.perf_counter()
        for data, count in batches:
            sock.sendall(data)
            buffer = b""
            while count:
                buffer += sock.recv(1 << 20)
                while len(buffer) >= 4:
                    size = struct.unpack_from(">I", buffer)[0]
                    if len(buffer) < 4 + size:
                        break
                    last, buffer = buffer[: 4 + size], buffer[4 + size :]
                    count -= 1
            conn.receive_data(last)  # keep the connection's bookkeeping honest for this one
        elapsed = time.perf_counter() - started
        return total / elapsed


def _upgrades_under_load(address: str, upgrades: int = 100) -> tuple[list[float], int, int]:
    """Stream inputs on one connection while another upgrades ``upgrades`` times.

    Returns the largest reply gap around each upgrade (seconds), inputs acknowledged, and the
    node's count of inputs processed during the run."""
    a = encode_module(handbuilt.counter_module())
    b = encode_module(handbuilt.counter_commuted_module())
    same = encode_module(migration_module(INT, INT, ID))
    stamps: list[float] = []
    done = threading.Event()
    with Client(address) as probe:
        before = probe.status_raw("counter").inputs
        running = probe.status_raw("counter").identity

    def stream() -> None:
        with Client(address) as client:
            while not done.is_set():
                requests = [Send(client.session.request_id(), "counter", INCR) for _ in range(50)]
                for reply in client.pipeline(requests):
                    assert isinstance(reply, Output)
                    stamps.append(time.perf_counter())

    streamer = threading.Thread(target=stream)
    streamer.start()
    windows: list[tuple[float, float]] = []
    with Client(address) as upgrader:
        expected = running
        for i in range(upgrades):
            time.sleep(0.01)
            new = b if i % 2 == 0 else a
            sent = time.perf_counter()
            reply = upgrader.upgrade("counter", Upgrade(expected, new, same))
            windows.append((sent, time.perf_counter()))
            expected = reply.new
    time.sleep(0.05)
    done.set()
    streamer.join()
    with Client(address) as probe:
        after = probe.status_raw("counter").inputs
    gaps = []
    for start, end in windows:
        inside = [t for t in stamps if start - 0.002 <= t <= end + 0.002]
        gaps.append(max((y - x for x, y in itertools.pairwise(inside)), default=0.0))
    return gaps, len(stamps), after - before


def _fill_store(data: Path, inputs: int) -> None:
    """Log ``inputs`` inputs through the registry and store, as the node would."""
    data.mkdir(parents=True, exist_ok=True)
    store = Store(data / "node.sqlite3")
    registry = Registry()
    machine = registry.start("counter", load(handbuilt.counter_module()))
    store.log_start(machine)
    value = (0, ())
    for i in range(inputs):
        stepped = registry.step_value(machine, value)
        store.log_input(machine, INCR, stepped.identity)
        if i % 10_000 == 9_999:
            store.commit(registry.machines)
    store.commit(registry.machines)
    store.close()


def main() -> None:
    print("node: a real node process on loopback (trace off, default durability)")
    with tempfile.TemporaryDirectory() as tmp:
        proc, address, _ = _start_node(Path(tmp) / "a")
        try:
            echo = _echo_baseline()
            rt = _round_trips(address)
            print(
                f"  round trips, 1 client, 1 input at a time: {rt:8.0f}/s   bare asyncio echo "
                f"{echo:8.0f}/s (node/echo {rt / echo:4.2f})   goal >= 15000, Erlang 14700"
            )
            pipe = _pipelined(address)
            print(
                f"  pipelined inputs, 1 connection, group commit: {pipe:8.0f}/s   goal >= 50000, "
                "Erlang 16 clients 45200, Haskell one-way 57000-93000"
            )
            gaps, acked, processed = _upgrades_under_load(address)
            ms = sorted(g * 1000 for g in gaps)
            print(
                f"  upgrade pause under load (largest reply gap around each of {len(gaps)}): "
                f"median {statistics.median(ms):.2f} ms, max {ms[-1]:.2f} ms   goal median < 1 ms,"
                " Erlang 0.29 ms"
            )
            print(
                f"  across {len(gaps)} upgrades under load: {acked} inputs acknowledged, "
                f"{processed} processed: lost {max(acked - processed, 0)}, "
                f"duplicated {max(processed - acked, 0)}   goal 0"
            )
        finally:
            _stop(proc)
        big = Path(tmp) / "big"
        started = time.perf_counter()
        _fill_store(big, 1_000_000)
        fill = time.perf_counter() - started
        proc, _, restart = _start_node(big)
        _stop(proc)
        print(
            f"  restart after 1,000,000 logged inputs: {restart:.2f} s to listening "
            f"(store filled in {fill:.1f} s)   goal < 2 s"
        )


if __name__ == "__main__":
    main()
