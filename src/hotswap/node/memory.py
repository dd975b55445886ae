"""An in-memory node: the real service and store, with no socket and no event loop.

    with MemoryNode({"counter": counter_sm}) as node, Client(transport=node.connection()) as c:
        c.send("counter", Incr())

Requests go through the same bytes, protocol connection, service, registry and SQLite store as
on a served node; only the transport differs. Each :meth:`MemoryNode.connection` is an
in-memory pipe whose ``send`` runs the node until it has committed and queued the replies, so
a blocking or asyncio client needs no thread. The store lives in a temporary directory unless
``data`` is given; :meth:`MemoryNode.reopen` closes it without a checkpoint and recovers, as a
node restarted after being killed would. Use it to test machines and upgrades, and in tests
of clients; what needs a real process (signals, a killed node) needs ``hotswap node``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from hotswap.cam.limits import DEFAULT_FUEL
from hotswap.errors import HotswapError, StoreError
from hotswap.node.main import NodeOptions, open_service
from hotswap.node.service import Conversation, NodeConfig, Service
from hotswap.node.store import DEFAULT_RETAIN, SNAPSHOT_EVERY
from hotswap.node.trace import Trace


class MemoryNode:
    """A node without a network, hosting ``machines`` (name -> code, as ``--machine`` takes),
    running each step, init and migration with ``fuel`` (as ``--fuel``)."""

    def __init__(
        self,
        machines: Mapping[str, object] | None = None,
        *,
        data: Path | None = None,
        trace: Trace | None = None,
        config: NodeConfig | None = None,
        snapshot_every: int = SNAPSHOT_EVERY,
        fuel: int = DEFAULT_FUEL,
        retain: int | None = DEFAULT_RETAIN,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hotswap-")
            data = Path(self._tmp.name)
        self.data = data
        self.trace = trace if trace is not None else Trace("off")
        self._options = NodeOptions(
            data=self.data,
            machines=tuple((machines or {}).items()),
            snapshot_every=snapshot_every,
            config=config or NodeConfig(),
            fuel=fuel,
            retain=retain,
        )
        self.service: Service = open_service(self._options, self.trace)
        #: The error that stopped the node (a failed commit, a bug in a handler), if one did.
        self.failure: HotswapError | None = None
        self._connections: list[MemoryConnection] = []

    def connection(self) -> MemoryConnection:
        """A new client connection (a ``Transport`` for :class:`hotswap.client.Client`)."""
        self._check_running()
        conn = MemoryConnection(self)
        self._connections.append(conn)
        return conn

    def async_connection(self) -> AsyncMemoryConnection:
        """A new connection for :class:`hotswap.client.AsyncClient` (``AsyncClient.over``)."""
        return AsyncMemoryConnection(self.connection())

    def _check_running(self) -> None:
        if self.failure is not None:
            raise HotswapError(f"the in-memory node has stopped: {self.failure}")

    def fail(self, error: HotswapError) -> None:
        """Stop as a served node does when its store refuses a write: acknowledge nothing
        more, and close every connection."""
        if self.failure is None:
            self.failure = error
            self.trace.note(f"Stopping, acknowledging nothing more: {error}")
        for conn in self._connections:
            conn.closed = True
            conn.pending.clear()
        self._connections.clear()

    def sweep(self, budget: int, seconds: float | None = None) -> int:
        """Let the sweeper migrate up to ``budget`` instances now, for at most about
        ``seconds``, and commit (a served node does this in the background, ``--sweep-rate`` a
        second, 5 ms at a time); how many it looked at."""
        looked = self.service.sweep(budget, seconds)
        self.service.commit()
        return looked

    def reopen(self) -> None:
        """Close the store without a checkpoint, as a killed node would leave it, and start
        again from it: the machines are what recovery makes of the durable log."""
        self.service.store.close()
        for conn in self._connections:
            conn.closed = True
        self._connections.clear()
        self.failure = None
        self.service = open_service(self._options, self.trace)

    def close(self) -> None:
        """Checkpoint (unless the node failed) and close the store; remove a temporary one."""
        try:
            if self.failure is None:
                self.service.checkpoint()
        finally:
            self.service.store.close()
            if self._tmp is not None:
                self._tmp.cleanup()

    def __enter__(self) -> MemoryNode:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class MemoryConnection:
    """One client's connection to a :class:`MemoryNode`: ``send`` delivers bytes and leaves
    the committed replies for ``recv``."""

    def __init__(self, node: MemoryNode) -> None:
        self.node = node
        self.service = node.service
        self.address = "memory"
        self.conversation = Conversation(node.service)
        self.pending = bytearray()
        self.closed = False

    def send(self, data: bytes) -> None:
        if self.closed:
            raise BrokenPipeError("the in-memory connection is closed")
        fed = self.conversation.receive(data)  # ends timed trials that are due, first
        if fed.failure is not None:
            self.node.fail(fed.failure)
            return
        if fed.replies:
            try:
                self.service.commit()
            except StoreError as e:
                self.node.fail(e)
                return
            self.pending += b"".join(fed.replies)
        if fed.close:
            self.closed = True

    def recv(self) -> bytes:
        """The replies committed so far; ``b""`` once closed; :class:`TimeoutError` if there
        are none (nothing runs in the background, so none would ever come)."""
        if self.pending:
            data = bytes(self.pending)
            self.pending.clear()
            return data
        if self.closed:
            return b""
        raise TimeoutError("the in-memory node has no reply pending")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conversation.receive(b"")


class AsyncMemoryConnection:
    """A :class:`MemoryConnection` for asyncio clients."""

    def __init__(self, conn: MemoryConnection) -> None:
        self.conn = conn
        self.address = conn.address

    def send(self, data: bytes) -> None:
        self.conn.send(data)

    async def recv(self) -> bytes:
        return self.conn.recv()

    def close(self) -> None:
        self.conn.close()

    async def wait_closed(self) -> None:
        return None
