"""A real node process for end-to-end tests: started on a free loopback port, read line by line."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

LISTENING = re.compile(r"Listening on ([0-9.]+):([0-9]+)")


class NodeProcess:
    """``hotswap node`` in a subprocess; ``lines()`` returns what it has printed so far."""

    def __init__(self, data: Path, machines: dict[str, str], *extra: str) -> None:
        args = [sys.executable, "-m", "hotswap", "node", "--listen", "127.0.0.1:0"]
        args += ["--data", str(data), *extra]
        for name, ref in machines.items():
            args += ["--machine", f"{name}={ref}"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.address = self._wait_listening()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def _wait_listening(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self._seen.append(line)
            m = LISTENING.search(line)
            if m:
                return f"{m.group(1)}:{m.group(2)}"
        self.kill()
        raise AssertionError(f"node did not start; it printed: {self._seen}")

    def lines(self, settle: float = 0.2) -> list[str]:
        """Everything printed so far (waiting ``settle`` seconds for stragglers)."""
        deadline = time.monotonic() + settle
        while True:
            try:
                self._seen.append(self._lines.get(timeout=max(deadline - time.monotonic(), 0)))
            except queue.Empty:
                return list(self._seen)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or snapshot."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)  # the pipe reaches end of file once the process is gone
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> int:
        """SIGTERM: a clean shutdown."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        self.kill()
        return code

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
