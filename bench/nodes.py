"""Real node processes for the benches: started on a free loopback port, stopped with SIGTERM."""

from __future__ import annotations

import bisect
import importlib.util
import os
import re
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hotswap.client import Client
from hotswap.client.blocking import SocketTransport
from hotswap.protocol.codec import decode_message
from hotswap.protocol.events import Output, Send

#: The event loop the node runs on (``--loop auto`` would pick the same), given explicitly to
#: the node and to the echo server so that the two are measured on the same kind of loop.
LOOP = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def start_node(data: Path, *extra: str) -> tuple[subprocess.Popen[str], str, float]:
    """``hotswap node`` on ``data`` (trace off, :data:`LOOP`, then ``extra``): the process,
    the address it listens on, and the seconds it took to start listening."""
    started = time.perf_counter()
    command = ["node", "--listen", "127.0.0.1:0", "--data", str(data), "--trace", "off"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotswap", *command, "--loop", LOOP, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        m = re.search(r"Listening on ([0-9.]+:[0-9]+)", line)
        if m:
            return proc, m.group(1), time.perf_counter() - started
    raise RuntimeError(f"node did not start: {''.join(seen)}")


def stop(proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """SIGTERM, then wait for the node's shutdown (which snapshots every machine)."""
    proc.terminate()
    proc.wait(timeout)
    if proc.stdout is not None:
        proc.stdout.close()


#: What a streamer process (a ``python -c`` script) prints once it is connected and its first
#: input was answered; :func:`start_streamer` waits for it before anything is measured.
READY = "streaming"


def start_streamer(script: str, *args: str) -> subprocess.Popen[str]:
    """Start ``script`` (which prints :data:`READY` on a line of its own once it streams, and
    its results as JSON on the next) and wait until it streams: on a loaded machine a new
    process takes a second or more to import and connect, and a fixed sleep may end first."""
    command = [sys.executable, "-c", script, *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != READY:
        proc.kill()
        raise RuntimeError(f"the streamer did not start: {line!r}")
    return proc


def gaps_around(
    stamps: list[float], windows: list[tuple[float, float]]
) -> tuple[list[float], float, set[int]]:
    """For each ``(start, end)`` window, the largest gap between two consecutive answers
    (``stamps``, sorted) that overlaps it, including one that spans the whole window (no
    answer came during it); the median of the other gaps (the stream's usual cadence); and the
    indices ``j`` of the gaps ``stamps[j]..stamps[j + 1]`` counted in a window."""
    gaps: list[float] = []
    counted: set[int] = set()
    for start, end in windows:
        # gaps j with stamps[j] <= end and stamps[j + 1] >= start
        first = bisect.bisect_left(stamps, start) - 1
        last = bisect.bisect_right(stamps, end)
        js = [j for j in range(max(first, 0), min(last, len(stamps) - 1))]
        if js:
            counted.update(js)
            gaps.append(max(stamps[j + 1] - stamps[j] for j in js))
    usual = [stamps[j + 1] - stamps[j] for j in range(len(stamps) - 1) if j not in counted]
    return gaps, statistics.median(usual) if usual else 0.0, counted


def pipelined(address: str, send: Callable[[int, int], Send], total: int, window: int) -> float:
    """Inputs/s of ``total`` requests (``send(i, request_id)`` the ``i``-th) in windows of
    ``window`` on one connection, one to two windows in flight: the next window is sent once
    the first reply of the one before arrives, so the node never waits for this client to read
    the replies of a window before it has the next. The requests are encoded before the clock
    starts and replies are counted by their frames (the last one is decoded after the clock
    stops: an error raises), so the figure is the node's, not this client's."""
    if total < 1:
        raise ValueError("a pipelined run needs one request at least")
    with Client(address) as client:
        conn = client.wire.conn
        requests = [send(i, client.session.request_id()) for i in range(total)]
        batches = [
            b"".join(conn.send(r) for r in requests[at : at + window])
            for at in range(0, total, window)
        ]
        assert isinstance(client.transport, SocketTransport)
        sock = client.transport.sock
        sock.settimeout(60)  # plain blocking reads and writes, not the client's polling
        started = time.perf_counter()
        sent, answered = 1, 0  # windows sent; replies counted
        sock.sendall(batches[0])
        buffer, at, last = bytearray(), 0, b""  # replies are counted where they start
        while answered < total:
            received = sock.recv(1 << 20)
            if not received:
                raise RuntimeError(f"the node closed the connection after {answered} replies")
            buffer += received
            while len(buffer) - at >= 4:
                size = struct.unpack_from(">I", buffer, at)[0]
                if len(buffer) - at < 4 + size:
                    break
                answered += 1
                if answered == total:
                    last = bytes(buffer[at : at + 4 + size])
                at += 4 + size
            if sent < len(batches) and answered > (sent - 1) * window:
                sock.sendall(batches[sent])  # the one before is being answered
                sent += 1
            if at > 1 << 20:  # keep the buffer short
                del buffer[:at]
                at = 0
        elapsed = time.perf_counter() - started
        reply = decode_message(last[4:], from_client=False, version=conn.version or 1)
        if not isinstance(reply, Output) or reply.id != requests[-1].id:
            raise RuntimeError(f"the node answered the last input with {reply!r}, not its output")
        return total / elapsed
