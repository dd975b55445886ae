"""Real node processes for the benches: started on a free loopback port, stopped with SIGTERM."""

from __future__ import annotations

import importlib.util
import os
import re
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
