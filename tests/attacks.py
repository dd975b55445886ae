"""Attacks on a real node process, and what the node does meanwhile (issue 11, item 5).

:class:`Watch` runs beside an attack: a second client asks for a machine's status every few
milliseconds and records how long each answer takes, and the node's resident memory is read
from ``/proc/PID/status`` (``VmRSS`` as it goes, and ``VmHWM``, the peak, at the end, so that a
spike between two samples is not missed). :class:`RawClient` speaks the protocol over a bare
socket, for attacks the client library would refuse to send.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from hotswap.client import Client
from hotswap.protocol import ClientConnection
from hotswap.protocol.codec import decode_message
from hotswap.protocol.events import NEED_DATA, ConnectionClosed, Hello, Message, Request, Welcome
from hotswap.protocol.framing import FrameReader
from nodeproc import NodeProcess

#: The issue's goal for the longest a probe waits while an attack runs: printed with each
#: attack's figures (``pytest -s``), not asserted, since a test never fails on a timing that
#: a busy machine can miss.
PROBE_BOUND = 0.1
#: What a test does assert: no probe waits this long. The attacks stalled the node for 2.6 to
#: 25 s before they were fixed, so this still fails on each of them; a loaded CI machine
#: stays well inside it.
STALL = 2.0
#: The machine probes read: the seed's counter, by its Python names.
PROBED = "counter"
COUNTER = "hotswap.examples.counter:counter_sm"
#: A second machine, of the handbuilt counter, for attacks that change code.
VICTIM = "abacus"  # before "counter": a release handles it first
HANDBUILT = "hotswap.examples.handbuilt:counter_module"
MIB = 1024 * 1024


def memory(pid: int, what: str = "VmRSS") -> int:
    """``VmRSS`` (or ``VmHWM``, the peak) of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(what + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {what} for process {pid}")


@dataclass
class Watched:
    """What a :class:`Watch` saw: every probe's latency, failures, and memory in bytes."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rss_before: int = 0
    rss_max: int = 0
    rss_after: int = 0
    peak: int = 0

    @property
    def slowest(self) -> float:
        return max(self.latencies, default=0.0)

    @property
    def grew(self) -> int:
        """How much the peak memory rose above what the node held before the attack."""
        return max(self.peak, self.rss_max) - self.rss_before

    def __str__(self) -> str:
        return (
            f"{len(self.latencies)} probes, slowest {self.slowest * 1000:.1f} ms "
            f"(then {', '.join(f'{t * 1000:.0f}' for t in sorted(self.latencies)[-5:-1])}), "
            f"RSS {self.rss_before / MIB:.0f} MiB before, max {self.rss_max / MIB:.0f}, "
            f"peak {self.peak / MIB:.0f}, after {self.rss_after / MIB:.0f}; "
            f"failures {self.failures[:3]}"
        )

    def check(self, grow_at_most: int, bound: float = PROBE_BOUND) -> None:
        """The node answered every probe, none after a stall (:data:`STALL`; the figures say
        how the goal ``bound`` was met), and its memory grew by at most ``grow_at_most``
        bytes."""
        verdict = "within" if self.slowest < bound else "OVER"
        print(f"  {self} ({verdict} the {bound * 1000:.0f} ms goal)")
        assert not self.failures, str(self)
        assert len(self.latencies) >= 10, str(self)
        assert self.slowest < STALL, str(self)
        assert self.grew <= grow_at_most, str(self)


def within(attack: Callable[[], Watched], grow_at_most: int, bound: float = PROBE_BOUND) -> Watched:
    """Run ``attack`` (which returns what its :class:`Watch` saw), print its figures against
    the goal ``bound`` for the slowest probe, and check it (:meth:`Watched.check`)."""
    seen = attack()
    seen.check(grow_at_most, bound)
    return seen


class Watch:
    """Probe ``node`` (a status of ``machine`` every ``interval`` seconds, from a client of its
    own) and sample its memory, from entering the ``with`` block to leaving it."""

    def __init__(
        self,
        node: NodeProcess,
        machine: str = PROBED,
        *,
        token: str | None = None,
        interval: float = 0.005,
    ) -> None:
        self.node = node
        self.pid = node.proc.pid
        self.machine = machine
        self.token = token
        self.interval = interval
        self.seen = Watched()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._threads = [
            threading.Thread(target=self._probe, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]

    def __enter__(self) -> Watched:
        self.seen.rss_before = memory(self.pid)
        with Client(self.node.address, token=self.token) as warm:  # its first answer is warm-up
            warm.status_raw(self.machine)
        for thread in self._threads:
            thread.start()
        assert self._connected.wait(10), "the probe could not connect"
        time.sleep(0.05)
        return self.seen

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        time.sleep(0.05)
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        if self.node.proc.poll() is None:
            self.seen.rss_after = memory(self.pid)
            self.seen.peak = memory(self.pid, "VmHWM")
        else:
            self.seen.failures.append(f"the node died: exit {self.node.proc.returncode}")

    def _probe(self) -> None:
        seen = self.seen
        client: Client | None = None
        while not self._stop.is_set():
            try:
                if client is None:
                    client = Client(self.node.address, timeout=10, token=self.token)
                    self._connected.set()
                started = time.perf_counter()
                client.status_raw(self.machine)
                seen.latencies.append(time.perf_counter() - started)
            except Exception as e:  # noqa: BLE001 - every failure of a probe is reported
                seen.failures.append(f"{type(e).__name__}: {e}")
                client = None
                time.sleep(0.05)
            self._stop.wait(self.interval)
        if client is not None:
            client.close()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.seen.rss_max = max(self.seen.rss_max, memory(self.pid))
            except (OSError, AssertionError):
                return
            self._stop.wait(0.01)  # VmHWM, read at the end, has any peak in between


class Refused(Exception):
    """The node answered the hello with something other than a welcome (a goodbye)."""

    def __init__(self, answer: object) -> None:
        super().__init__(repr(answer))
        self.answer = answer


class RawClient:
    """The protocol over a bare socket: the hello, then any frames, and the replies read back
    one event at a time."""

    def __init__(self, address: str, *, token: str | None = None, rcvbuf: int = 0) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect((host, int(port)))
        self.conn = ClientConnection()
        try:
            self.sock.sendall(self.conn.send(Hello(token=token)))
            welcome = self.next()
        except BaseException:
            self.sock.close()
            raise
        if not isinstance(welcome, Welcome):
            self.sock.close()
            raise Refused(welcome)
        self._frames = FrameReader(2**32 - 1)

    def encode(self, events: Sequence[Request]) -> bytes:
        """The frames of ``events``, to write later with :meth:`write` (encoding 32 MiB holds
        this process's GIL, and so its probe, for a while: do it before the watch begins)."""
        return b"".join(self.conn.send(e) for e in events)

    def write(self, data: bytes | bytearray) -> None:
        self.sock.sendall(data)

    def send(self, events: Sequence[Request]) -> None:
        self.write(self.encode(events))

    def next(self) -> Message | object:
        while True:
            event = self.conn.next_event()
            if event is not NEED_DATA:
                return event
            data = self.sock.recv(1 << 20)
            self.conn.receive_data(data)

    def reply(self) -> object:
        """The next message from the node, read without the connection's bookkeeping (for
        frames written with :meth:`write` more than once)."""
        while True:
            payload = self._frames.next_frame()
            if payload is not None:
                return decode_message(payload, from_client=False, version=3)
            data = self.sock.recv(1 << 20)
            if not data:
                return ConnectionClosed()
            self._frames.feed(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
