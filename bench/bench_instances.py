"""Keyed-instance benchmark: a machine with 1,000, 500,000 and 1,000,000 instances (other
counts with ``HOTSWAP_BENCH_COUNTS=1000,100000``), on a real node process and in process.

Prints, for each count: the time to make the instances in process (step + log + group commit
through the service, as the node does), pipelined durable inputs per second over one
connection with uniform keys (the median of three rounds) and with Zipf-skewed keys, the
node's RSS with the default cache, the upgrade pause as the largest gap between answered inputs
around each of 10 upgrades (a process streaming keyed inputs one at a time meanwhile), the
node-side cost of those upgrades, restart time after a kill (recovery reads only its replay
window, never every instance), and the sweeper's migrations per second, and the pages of the
store's ``instances`` table and its index.
The upgrade pause is measured with inputs to a working set
that fits the cache (the upgrade alone) and, for larger counts, to every key (each input a
cache miss, so every gap is longer). Figures only; nothing here passes or fails.

After the counts, the node's RSS at twice the largest (2,000,000 by default; the fill and the
input rounds alone, about a minute; ``HOTSWAP_BENCH_DOUBLE=0`` leaves it out), so that the goal
"flat when the count doubles" is read at the count of the goal and at its double.

``HOTSWAP_BENCH_RATES=1`` measures the input rates and the pages alone (a before/after of a
change to the store's cache-miss path: at 200,000 instances, which miss the default cache as
1,000,000 do, a run takes about a minute): three rounds of uniform inputs, one of Zipf.

Anchors: Erlang pays per process for an upgrade (84 ms for 10,000 processes on this kind of
machine, linear); the goals of issue 9: the pause independent of the count (median < 1 ms),
RSS under 500 MB and flat as the count grows, restart under 2 s, 30,000 inputs/s uniform.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bench.nodes import READY, gaps_around, pipelined, start_node, start_streamer, stop
from hotswap.cam.build import migration_module
from hotswap.cam.module import Module, encode_module
from hotswap.client import Client
from hotswap.examples import handbuilt
from hotswap.lang.terms import ID
from hotswap.lang.types import INT
from hotswap.node.main import NodeOptions, open_service
from hotswap.node.trace import Trace
from hotswap.protocol.events import Send, UpgradeRequest

INCR = b"\x00"
#: A working set that fits the default cache (10,000 instances).
HOT = 5000
COUNTER = "hotswap.examples.handbuilt:counter_module"
COUNTER_MODULE = handbuilt.counter_module()
A = encode_module(COUNTER_MODULE)
B = encode_module(handbuilt.counter_commuted_module())
SAME_MODULE = migration_module(INT, INT, ID)
SAME = encode_module(SAME_MODULE)

_STREAMER = """
import json, random, sys, time
from hotswap.client import Client
client = Client(sys.argv[1])
count = int(sys.argv[3])
stamps = []
rng = random.Random(1)
client.send_raw("counter", b"\\x00", key="user-0", state=False)
print("@READY@", flush=True)
deadline = time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < deadline:
    client.send_raw("counter", b"\\x00", key=f"user-{rng.randrange(count)}", state=False)
    stamps.append(time.perf_counter())
json.dump(stamps, sys.stdout)
""".replace("@READY@", READY)


def _key(i: int) -> str:
    return f"user-{i}"


def _fill(data: Path, count: int, *, kill: bool) -> float:
    """Make ``count`` instances in process, one input each (commit every 2,000), as the node
    does; leave the store as a kill would (``kill``) or checkpointed. Returns inputs/s."""
    service = open_service(NodeOptions(data=data, machines=(("counter", COUNTER),)), Trace("off"))
    started = time.perf_counter()
    for i in range(count):
        service.handle(Send(i, "counter", INCR, False, _key(i)))
        if i % 2000 == 1999:
            service.commit()
    service.commit()
    rate = count / (time.perf_counter() - started)
    if not kill:
        service.checkpoint()
    service.store.close()
    return rate


def _zipf_keys(count: int, n: int, rng: random.Random, s: float = 1.1) -> list[int]:
    """``n`` draws from a Zipf(s) distribution over ``count`` ranks (rank 0 the hottest)."""
    weights = [1.0 / (r + 1) ** s for r in range(count)]
    return rng.choices(range(count), weights=weights, k=n)


def _pipelined(address: str, keys: list[int], window: int = 2000) -> float:
    """Pipelined keyed inputs, one to each of ``keys`` in turn (:func:`bench.nodes.pipelined`):
    inputs/s."""

    def send(i: int, request_id: int) -> Send:
        return Send(request_id, "counter", INCR, False, _key(keys[i]))

    return pipelined(address, send, len(keys), window)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _unseen(module: Module, i: int) -> bytes:
    """``module``'s bytes with a custom section of its own: the same code (and identity), new
    bytes to the node, which loads them as it would new code (decode, verify, compile)."""
    return encode_module(dataclasses.replace(module, custom=(("x-bench", b"%d" % i),)))


def _upgrade_pauses(
    address: str, count: int, upgrades: int = 10, *, baseline: bool = False, unseen: bool = False
) -> tuple[list[float], float]:
    """Largest gap between answered inputs of a streaming process around each upgrade, and
    the median gap elsewhere (seconds). The streamer sends to ``count`` keys: pass a working
    set that fits the cache to see the upgrade alone, all keys to see it among cache misses.
    With ``baseline``, each upgrade is replaced by an input of the upgrader's own (to a key of
    its own): the gaps then are what any request from a second client costs the stream on
    this machine, the floor under the upgrade's figure. With ``unseen``, every upgrade's
    modules are new to the node (as new code is), so it loads them first, on its loader
    thread; otherwise they alternate between two versions it keeps loaded after the first."""
    seconds = upgrades * 0.15 + 1.0
    streamer = start_streamer(_STREAMER, address, str(seconds), str(count))
    time.sleep(0.2)
    windows = []
    with Client(address) as upgrader:
        expected = upgrader.status_raw("counter").identity
        for i in range(upgrades):
            time.sleep(0.1)
            new = B if i % 2 == 0 else A
            migration = SAME
            if unseen:
                code = handbuilt.counter_commuted_module() if i % 2 == 0 else COUNTER_MODULE
                new, migration = _unseen(code, i), _unseen(SAME_MODULE, i)
            sent = time.perf_counter()
            if baseline:
                upgrader.send_raw("counter", INCR, key="bench-baseline", state=False)
            else:
                request = UpgradeRequest(1000 + i, "counter", expected, new, migration)
                reply = upgrader.request(request)
                expected = reply.new  # type: ignore[attr-defined]
            windows.append((sent, time.perf_counter()))
    out, _ = streamer.communicate(timeout=seconds + 30)
    stamps: list[float] = json.loads(out)
    gaps, usual, _ = gaps_around(stamps, windows)
    return gaps, usual


def _in_process(data: Path, count: int) -> tuple[float, float, float]:
    """Node-side upgrade cost (checks, swap, log, commit; modules loaded before) with
    ``count`` instances, median of 10; keyed input cost on a cached instance; sweeper
    migrations a second. On a copy of the store in ``data``."""
    options = NodeOptions(data=data, machines=(("counter", COUNTER),))
    service = open_service(options, Trace("off"))
    expected = service.registry.machines["counter"].identity
    times = []
    for i in range(10):
        new = B if i % 2 == 0 else A
        started = time.perf_counter()
        reply = service.handle(UpgradeRequest(i, "counter", expected, new, SAME))
        service.commit()
        times.append(time.perf_counter() - started)
        expected = reply.new  # type: ignore[union-attr]
    upgrade = statistics.median(times)
    hot = 1000
    started = time.perf_counter()
    for i in range(hot * 10):
        service.handle(Send(i, "counter", INCR, False, _key(i % hot)))
        if i % 1000 == 999:
            service.commit()
    step = (time.perf_counter() - started) / (hot * 10)
    service.handle(UpgradeRequest(99, "counter", expected, B, SAME))  # after 10: on A again
    service.commit()
    started = time.perf_counter()
    swept = 0
    while time.perf_counter() - started < 2.0:
        looked = service.sweep(1000)
        service.commit()
        if not looked:
            break
        swept += looked
    sweep_rate = swept / (time.perf_counter() - started)
    service.store.close()
    return upgrade, step, sweep_rate


def _pages(data: Path) -> dict[str, int]:
    """The pages of the ``instances`` table and of its index in the store in ``data`` (a
    stopped node's), by SQLite's ``dbstat``."""
    db = sqlite3.connect(data / "node.sqlite3")
    try:
        rows = db.execute(
            "SELECT name, COUNT(*) FROM dbstat WHERE name IN "
            "('instances', 'instances_by_generation') GROUP BY name"
        ).fetchall()
    finally:
        db.close()
    return dict(rows)


#: Rounds of uniform inputs measured (this machine's speed drifts: the median is printed).
ROUNDS = 3


def _input_rates(address: str, count: int) -> str:
    """:data:`ROUNDS` runs of pipelined inputs at uniform keys over ``count`` instances, then
    one at Zipf keys: the line that prints them."""
    rng = random.Random(2)
    total = min(200_000, max(20_000, count))
    uniform = [
        _pipelined(address, [rng.randrange(count) for _ in range(total // 2)])
        for _ in range(ROUNDS)
    ]
    skewed = _pipelined(address, _zipf_keys(count, total, rng))
    return (
        f"    pipelined durable inputs over 1 connection, {total // 2:,} a round: uniform "
        f"{statistics.median(uniform):,.0f}/s (median of "
        f"{', '.join(f'{r:,.0f}' for r in uniform)}), Zipf(1.1) {skewed:,.0f}/s"
    )


def _rates(count: int) -> None:
    """``HOTSWAP_BENCH_RATES``: the fill, the input rates (:func:`_input_rates`) on a node
    process, and the pages of the instances' table after it stopped."""
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-") as tmp:
        data = Path(tmp)
        fill = _fill(data, count, kill=True)
        proc, address, _ = start_node(data, "--sweep-rate", "0")
        try:
            line = _input_rates(address, count)
        finally:
            stop(proc)
        pages = _pages(data)
    print(f"  {count:>9,} instances: made in process at {fill:,.0f} inputs/s")
    print(line)
    print(
        f"    pages (4 KiB) after a clean stop: table {pages.get('instances', 0):,}, index "
        f"{pages.get('instances_by_generation', 0):,}"
    )


def rss_only(count: int) -> int:
    """The node's RSS (bytes) with ``count`` instances after the same rounds of inputs as
    :func:`measure` runs (the figures that take longest left out): the count past the
    largest measured, to see whether RSS stays flat once it doubles."""
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-") as tmp:
        data = Path(tmp)
        _fill(data, count, kill=True)
        proc, address, _ = start_node(data, "--sweep-rate", "0")
        try:
            line = _input_rates(address, count)
            rss = _rss(proc.pid)
        finally:
            stop(proc)
    print(f"  {count:>9,} instances, RSS only:")
    print(line)
    print(f"    node RSS after that, default cache (10,000): {rss / 2**20:,.0f} MiB   goal < 500")
    return rss


def measure(count: int) -> int:
    """Measure and print the figures for ``count`` instances; the node's RSS (bytes)."""
    with tempfile.TemporaryDirectory(prefix="hotswap-bench-") as tmp:
        data = Path(tmp)
        fill = _fill(data, count, kill=True)
        proc, address, ready = start_node(data, "--sweep-rate", "0")
        try:
            line = _input_rates(address, count)
            rss = _rss(proc.pid)
            gaps, usual = _upgrade_pauses(address, min(count, HOT))
            floor, _ = _upgrade_pauses(address, min(count, HOT), baseline=True)
            fresh, _ = _upgrade_pauses(address, min(count, HOT), unseen=True)
            cold_gaps, cold_usual = _upgrade_pauses(address, count) if count > HOT else ([], 0.0)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        proc, address, restart = start_node(data, "--sweep-rate", "0")
        stop(proc)
        upgrade, step, sweep = _in_process(data, count)
    gap_ms = sorted(g * 1000 for g in gaps)
    print(f"  {count:>9,} instances: made in process at {fill:,.0f} inputs/s")
    print(f"{line}   goal >= 30,000/s uniform")
    print(f"    node RSS after that, default cache (10,000): {rss / 2**20:,.0f} MiB   goal < 500")
    print(
        f"    upgrade pause under load (largest gap between answered inputs, 10 upgrades; "
        f"inputs to {min(count, HOT):,} keys): median {statistics.median(gap_ms):.2f} ms, max "
        f"{gap_ms[-1]:.2f} ms; usual gap {usual * 1000:.2f} ms   goal median < 1 ms; Erlang 84 "
        "ms for 10,000 processes"
    )
    fresh_ms = sorted(g * 1000 for g in fresh)
    print(
        f"      the same with modules new to the node at each upgrade (loaded first, on its "
        f"loader thread): median {statistics.median(fresh_ms):.2f} ms, max {fresh_ms[-1]:.2f} ms"
    )
    floor_ms = sorted(g * 1000 for g in floor)
    print(
        f"      the same windows with an input from the upgrader in place of each upgrade (the "
        f"floor): median {statistics.median(floor_ms):.2f} ms, max {floor_ms[-1]:.2f} ms"
    )
    if cold_gaps:
        cold = sorted(g * 1000 for g in cold_gaps)
        print(
            f"      the same with inputs to all {count:,} keys (mostly cache misses): median "
            f"{statistics.median(cold):.2f} ms, max {cold[-1]:.2f} ms; usual gap "
            f"{cold_usual * 1000:.2f} ms"
        )
    print(f"    upgrade node-side (checks + swap + log + commit): {upgrade * 1000:.2f} ms")
    print(f"    keyed input on a cached instance, in process: {step * 1e6:.1f} us")
    print(
        f"    restart to listening: {ready:.2f} s after the fill (left as by a kill), "
        f"{restart:.2f} s after a SIGKILL under load   goal < 2 s"
    )
    print(f"    sweeper: {sweep:,.0f} migrations/s in process")
    return rss


def main() -> None:
    print("instances: one machine, N keyed instances (Int counter), trace off, default durability")
    given = os.environ.get("HOTSWAP_BENCH_COUNTS", "1000,500000,1000000")
    counts = [int(c) for c in given.split(",")]
    if os.environ.get("HOTSWAP_BENCH_RATES"):
        for count in counts:
            _rates(count)
        return
    rss: dict[int, int] = {}
    for count in counts:
        # the largest counts take minutes: say what is being made
        print(f"  ({count:,} instances: making them, then measuring...)", flush=True)
        rss[count] = measure(count)
    double = 2 * max(counts)
    if os.environ.get("HOTSWAP_BENCH_DOUBLE", "1") != "0" and double not in rss:
        print(f"  ({double:,} instances, for RSS: making them, then the inputs...)", flush=True)
        rss[double] = rss_only(double)
    for count in counts:
        if 2 * count in rss:
            print(
                f"  RSS with {2 * count:,} instances / with {count:,}: "
                f"{rss[2 * count] / rss[count]:.2f}x   goal: flat (1.0x) when the count doubles"
            )


if __name__ == "__main__":
    main()
