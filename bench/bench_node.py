"""Node benchmark: a real node process on loopback, driven from this process.

Prints, in one run, each figure next to a baseline measured in the same run: round trips per
second for one client sending one input at a time, against a bare asyncio echo server with the
same framing on the node's event loop (uvloop when installed, as the node); ``Client.send``
round trips with 1 and with 16 clients (16 threads with a ``Client`` each, 16
``AsyncClient`` on one event loop, and 16 tasks sharing one ``AsyncClient``), against a
distributed Erlang ``gen_server:call`` counter on loopback with 1 and 16 client processes
(``bench.bench_erlang``, when ``erl`` is installed); pipelined inputs per second over one
connection with durable group commit; the pause of an upgrade under load, as the largest gap
between two answered inputs around it; inputs lost or duplicated across 100 upgrades under
load; restart time after 1,000,000 logged inputs. Then ``bench.bench_state``: the cost of an
input that updates one entry of a map of 100, 10,000 and 1,000,000 entries, and the node's
memory per map entry.

Fixed anchors for the figures with no baseline here (docs/design.md, "Measurements"): Haskell
original one-way 57-93k inputs/s; Erlang suspend-to-resume 291 us.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import bench_erlang, bench_state
from bench.nodes import LOOP, READY, gaps_around, pipelined, start_node, start_streamer, stop
from hotswap.cam.build import migration_module
from hotswap.cam.loaded import load, preload, release
from hotswap.cam.module import encode_module
from hotswap.client import Client, Upgrade
from hotswap.client.aio import AsyncClient
from hotswap.examples import handbuilt
from hotswap.lang.terms import ID
from hotswap.lang.types import INT
from hotswap.node.registry import Registry
from hotswap.node.store import Store
from hotswap.protocol.events import Send

INCR = b"\x00"
COUNTER = "hotswap.examples.handbuilt:counter_module"
_ECHO_SERVER = """
import asyncio, sys
class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)
async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(60)
if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def _echo_baseline(seconds: float = 2.0) -> float:
    """Round trips/s against a bare asyncio echo server on the node's kind of event loop
    (``LOOP``), in its own process, speaking 4-byte length-prefixed frames: the floor under any
    request/reply server here."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _ECHO_SERVER, LOOP], stdout=subprocess.PIPE, text=True
    )
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


def _round_trips(address: str, seconds: float = 2.0, values: bool = False) -> tuple[float, float]:
    """One input at a time: encoded bytes (``send_raw``), or a value through ``Client.send``
    (conversion, ``send_checked``, decoding the output). Returns the rate and this process's
    CPU per round trip in microseconds (user and system, ``os.times``: the client's own cost,
    its system calls included, apart from the time it waits for the node)."""
    with Client(address) as client:
        client.send("counter", (0, ()))  # connected, handshake done, code fetched
        count, deadline = 0, time.perf_counter() + seconds
        before = os.times()
        while time.perf_counter() < deadline:
            if values:
                client.send("counter", (0, ()))
            else:
                client.send_raw("counter", INCR)
            count += 1
        after = os.times()
    cpu = after.user + after.system - before.user - before.system
    return count / seconds, cpu / max(count, 1) * 1e6


def _concurrent_sends(address: str, clients: int, seconds: float = 2.0) -> tuple[float, float]:
    """``Client.send`` round trips/s with ``clients`` threads, each with its own ``Client`` and
    connection, one input at a time each, all timed over the same ``seconds``. Returns the rate
    and the CPU this process used meanwhile, in cores.

    Threads rather than processes: the node is a separate process either way, and a client
    thread holds the GIL only to encode and decode, releasing it while it waits for its reply,
    so the clients are not the limit while this process stays under one core (the figure
    printed next to the rate). It is also the Erlang driver's shape: one client OS process
    with many callers. Sixteen more interpreters would compete with the node for the CPU on a
    small machine instead, and measured no better here."""
    counts = [0] * clients
    deadline = [0.0]

    def start_clock() -> None:  # once every client is connected, before any is released
        deadline[0] = time.perf_counter() + seconds

    ready = threading.Barrier(clients + 1, action=start_clock)

    def run(i: int) -> None:
        with Client(address) as client:
            client.send("counter", (0, ()))  # connected, handshake done, code fetched
            ready.wait()
            n, end = 0, deadline[0]
            while time.perf_counter() < end:
                client.send("counter", (0, ()))
                n += 1
        counts[i] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    cpu = time.process_time()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds, (time.process_time() - cpu) / seconds


def _concurrent_async(
    address: str, clients: int, shared: bool = False, seconds: float = 2.0
) -> tuple[float, float]:
    """``AsyncClient.send`` round trips/s with ``clients`` tasks on one event loop (of
    :data:`LOOP`'s kind), one input at a time each: the shape of Erlang's clients, many light
    processes in one OS process. Each task has a client and connection of its own, or, if
    ``shared``, all share one client, whose connection pipelines what they send (as Erlang's
    processes share the one connection between two nodes). Returns the rate and the CPU this
    process used meanwhile, in cores."""

    async def run() -> tuple[float, float]:
        if shared:
            connected = [await AsyncClient.connect(address)] * clients
        else:
            connected = [await AsyncClient.connect(address) for _ in range(clients)]
        for client in connected:
            await client.send("counter", (0, ()))  # handshake done, code fetched
        counts = [0] * clients
        end = time.perf_counter() + seconds

        async def one(i: int, client: AsyncClient) -> None:
            n = 0
            while time.perf_counter() < end:
                await client.send("counter", (0, ()))
                n += 1
            counts[i] = n

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i, c) for i, c in enumerate(connected)))
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
        for client in set(connected):
            await client.close()
        return sum(counts) / elapsed, used / elapsed

    if LOOP == "uvloop":
        import uvloop  # noqa: PLC0415 - installed: LOOP says so

        return uvloop.run(run())
    return asyncio.run(run())


def _erlang() -> dict[int, float] | str:
    """Erlang's calls/s by number of clients, or why there are none."""
    if not bench_erlang.available():
        return f"Erlang: not installed ({bench_erlang.INSTALL_HINT} to compare)"
    try:
        return bench_erlang.measure()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return f"Erlang: failed ({e})"


def _pipelined(address: str, total: int = 200_000, window: int = 4000) -> float:
    """Pipelined counter inputs to the default instance (:func:`bench.nodes.pipelined`)."""
    return pipelined(
        address, lambda i, request_id: Send(request_id, "counter", INCR), total, window
    )


_STREAMER = """
import json, sys, time
from hotswap.client import Client
from hotswap.cam.values import value_decoder
from hotswap.lang.types import INT
client = Client(sys.argv[1])
decode = value_decoder(INT)
stamps, states = [], []
reply = client.send_raw("counter", b"\\x00")
stamps.append(time.perf_counter())
states.append(decode(reply.state))
print("@READY@", flush=True)
deadline = time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < deadline:
    reply = client.send_raw("counter", b"\\x00")
    stamps.append(time.perf_counter())
    states.append(decode(reply.state))
json.dump({"stamps": stamps, "states": states}, sys.stdout)
""".replace("@READY@", READY)


def _upgrades_under_load(address: str, upgrades: int = 100) -> tuple[list[float], float, int, int]:
    """One process streams inputs one at a time while this one upgrades ``upgrades`` times
    (alternating two counters with an identity migration).

    Returns the largest reply gap around each upgrade, the median gap elsewhere (seconds), the
    inputs acknowledged, and how many of them broke the chain of states (each Incr must add
    exactly one: a lost or doubled input breaks it)."""
    a = encode_module(handbuilt.counter_module())
    b = encode_module(handbuilt.counter_commuted_module())
    same = encode_module(migration_module(INT, INT, ID))
    with Client(address) as probe:
        running = probe.status_raw("counter").identity
    seconds = upgrades * 0.02 + 1.0
    streamer = start_streamer(_STREAMER, address, str(seconds))
    time.sleep(0.2)
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
    out, _ = streamer.communicate(timeout=seconds + 30)
    result = json.loads(out)
    stamps, states = result["stamps"], result["states"]
    broken = sum(1 for x, y in itertools.pairwise(states) if y != x + 1)
    gaps, normal, _ = gaps_around(stamps, windows)
    return gaps, normal, len(stamps), broken


def _upgrade_cost_in_process(upgrades: int = 100) -> tuple[float, float, float]:
    """Node-side cost of one upgrade with new modules, in this process, as the node splits it:
    preparing the modules (decode, verify, code generation: ``preload``, which the node runs
    on its loader thread while the machine keeps taking inputs), then the pause (checks,
    migration, swap, durable log entry and commit). Returns medians (seconds): preparing, the
    pause after preparing, and the two together on the loop (as if nothing were prepared)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "node.sqlite3")
        registry = Registry()
        machine = registry.start("counter", load(handbuilt.counter_module()))
        store.log_start(machine)
        store.commit(registry.machines)
        same = encode_module(migration_module(INT, INT, ID))
        preparing: list[float] = []
        paused: list[float] = []
        unprepared: list[float] = []
        for i in range(2 * upgrades):
            # a new literal each time: a module no cache has seen
            module = encode_module(handbuilt.counter_module(start=i + 1))
            started = time.perf_counter()
            if i % 2 == 0:
                preload(module)
                preparing.append(time.perf_counter() - started)
                started = time.perf_counter()
            done = registry.upgrade("counter", machine.identity, module, same)
            store.log_upgrade(machine, done)
            store.commit(registry.machines)
            (paused if i % 2 == 0 else unprepared).append(time.perf_counter() - started)
            release(module, keep=True)
        store.close()
    return statistics.median(preparing), statistics.median(paused), statistics.median(unprepared)


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


def _erlang_column(figure: float, erlang: dict[int, float] | str, clients: int) -> str:
    if isinstance(erlang, str):
        return ""
    label = f"{clients:2d} client{'s' if clients > 1 else ' '}"
    return (
        f"Erlang gen_server:call {label} {erlang[clients]:8.0f}/s "
        f"(hotswap/Erlang {figure / erlang[clients]:4.2f}x)   goal >= 1.0x"
    )


def _erlang_again(before: dict[int, float], one: float, shared: float) -> str:
    """Erlang measured once more, after hotswap's round trips (the node idle meanwhile): a
    machine whose speed drifts between the two measurements shows here, and the ratios
    against the mean of both are the fairer ones."""
    after = _erlang()
    if isinstance(after, str):
        return f"  Erlang measured again: {after}"
    mean = {n: (before[n] + after[n]) / 2 for n in (1, 16)}
    return (
        f"  Erlang measured again after those: 1 client {after[1]:.0f}/s, 16 clients "
        f"{after[16]:.0f}/s (before: {before[1]:.0f}/s, {before[16]:.0f}/s); against the mean "
        f"of the two, Client.send 1 client {one / mean[1]:4.2f}x, 16 tasks sharing one "
        f"AsyncClient {shared / mean[16]:4.2f}x   goal >= 1.0x"
    )


def main() -> None:
    # Erlang first, before the node starts, so that the two never share the CPU
    erlang = _erlang()
    print(f"node: a real node process on loopback (trace off, default durability, {LOOP} loop)")
    with tempfile.TemporaryDirectory() as tmp:
        proc, address, _ = start_node(Path(tmp) / "a", "--machine", f"counter={COUNTER}")
        try:
            echo = _echo_baseline()
            print(f"  bare asyncio echo server on {LOOP}, same framing, 1 client: {echo:8.0f}/s")
            rt, rt_cpu = _round_trips(address)
            print(
                f"  round trips, 1 client, 1 input at a time (send_raw): {rt:8.0f}/s   "
                f"(node/echo {rt / echo:4.2f}x; client CPU {rt_cpu:.0f} us each)"
            )
            one, one_cpu = _round_trips(address, values=True)
            print(
                f"  Client.send round trips,  1 client:  {one:8.0f}/s   "
                f"(node/echo {one / echo:4.2f}x; client CPU {one_cpu:.0f} us each)   "
                f"{_erlang_column(one, erlang, 1)}"
            )
            many, cpu = _concurrent_sends(address, 16)
            print(
                f"  Client.send round trips, 16 clients: {many:8.0f}/s   (16 threads, one "
                f"connection each; this process used {cpu:.2f} cores)   "
                f"{_erlang_column(many, erlang, 16)}"
            )
            many, cpu = _concurrent_async(address, 16)
            print(
                f"  AsyncClient.send round trips, 16 clients on one {LOOP} loop: {many:8.0f}/s   "
                f"(one connection each; this process used {cpu:.2f} cores)   "
                f"{_erlang_column(many, erlang, 16)}"
            )
            shared, cpu = _concurrent_async(address, 16, shared=True)
            print(
                f"  AsyncClient.send round trips, 16 tasks sharing one AsyncClient: {shared:8.0f}/s"
                f"   (one connection; this process used {cpu:.2f} cores, "
                f"{cpu / shared * 1e6:.0f} us per input)   "
                f"{_erlang_column(shared, erlang, 16)}"
            )
            if isinstance(erlang, str):
                print(f"  {erlang}")
            else:
                print(_erlang_again(erlang, one, shared))
            runs = [_pipelined(address) for _ in range(3)]  # this machine's speed drifts
            print(
                f"  pipelined inputs, 1 connection, group commit: {statistics.median(runs):8.0f}/s"
                f" (median of {', '.join(f'{r:.0f}' for r in runs)})   goal >= 100000, "
                "Haskell one-way 57000-93000"
            )
            gaps, normal, acked, broken = _upgrades_under_load(address)
            ms = sorted(g * 1000 for g in gaps)
            print(
                f"  upgrade pause under load, client-observed (largest gap between answered "
                f"inputs around each of {len(gaps)} upgrades): median {statistics.median(ms):.2f}"
                f" ms, max {ms[-1]:.2f} ms; the usual gap is {normal * 1000:.2f} ms"
            )
            preparing, paused, unprepared = _upgrade_cost_in_process()
            print(
                f"  upgrade pause, node-side, new modules: {paused * 1000:.2f} ms (checks + "
                f"migration + swap + durable log; goal median < 0.3 ms, Erlang 0.29 ms), after "
                f"preparing them off the loop in {preparing * 1000:.2f} ms while the machine "
                f"runs on; {unprepared * 1000:.2f} ms if nothing were prepared"
            )
            print(
                f"  across {len(gaps)} upgrades under load: {acked} inputs answered, "
                f"{broken} breaks in the chain of states (lost or duplicated)   goal 0"
            )
        finally:
            stop(proc)
        big = Path(tmp) / "big"
        started = time.perf_counter()
        _fill_store(big, 1_000_000)
        fill = time.perf_counter() - started
        proc, _, restart = start_node(big, "--machine", f"counter={COUNTER}")
        stop(proc)
        print(
            f"  restart after 1,000,000 logged inputs: {restart:.2f} s to listening "
            f"(store filled in {fill:.1f} s)   goal < 2 s"
        )
    print()
    bench_state.main()


if __name__ == "__main__":
    main()
