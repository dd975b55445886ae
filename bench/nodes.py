"""Real node processes for the benches: started on a free loopback port, stopped with SIGTERM."""

from __future__ import annotations

import bisect
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

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
