"""Nodes for tests, from the cheapest that does the job to a real process.

- :class:`hotswap.node.memory.MemoryNode`: no socket at all (most client and upgrade tests);
- :class:`Served`: the real asyncio server on a loopback port, in a thread of the test process
  (the CLI, sockets, timeouts, garbage on the wire);
- ``nodeproc.NodeProcess``: a real ``hotswap node`` process (signals, SIGKILL, the transcript).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from hotswap.node.main import NodeOptions, open_service
from hotswap.node.server import Node
from hotswap.node.service import NodeConfig
from hotswap.node.trace import Trace, TraceMode


class Served:
    """A node serving on ``127.0.0.1`` from a thread; ``address`` once started."""

    def __init__(
        self,
        data: Path,
        machines: Mapping[str, object],
        *,
        trace: TraceMode = "seed",
        config: NodeConfig | None = None,
        auth: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.out = io.StringIO()
        options = NodeOptions(
            data=data, machines=tuple(machines.items()), config=config or NodeConfig(), auth=auth
        )
        self.node = Node(open_service(options, Trace(trace, self.out)), tls)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._address: str | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._address is None:
            raise AssertionError(f"node did not start: {self.error!r} {self.out.getvalue()!r}")
        self.address: str = self._address

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as e:  # noqa: BLE001 - reported by stop() and the test
            self.error = e
        finally:
            self._ready.set()
            self.loop.close()

    async def _serve(self) -> None:
        task = asyncio.create_task(self.node.serve("127.0.0.1", 0))
        while not task.done():
            for line in self.out.getvalue().splitlines():
                if line.startswith("Listening on "):
                    self._address = line.removeprefix("Listening on ").split(" ")[0]
                    self._ready.set()
                    await task
                    return
            await asyncio.sleep(0.005)
        await task

    def lines(self) -> list[str]:
        """What the node's trace printed so far."""
        return self.out.getvalue().splitlines()

    def stop(self) -> None:
        """Stop as on SIGTERM: commit, let clients take their replies, snapshot."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.node.stopped.set)
            self._thread.join(30)
        self.node.service.store.close()

    def __enter__(self) -> Served:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class CliResult:
    """What one ``hotswap`` command printed, and its exit status."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def run_cli(*args: str) -> CliResult:
    """Run ``hotswap ARGS`` in this process (the program's ``main``), capturing its output."""
    from hotswap.__main__ import main  # noqa: PLC0415 - only the CLI tests need it

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return CliResult(code, out.getvalue(), err.getvalue())
