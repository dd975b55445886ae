"""A client of this release, whose hello is of version 4, reaches a node of the previous
release (versions 1 to 3) by saying hello again with version 3 on a new connection."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import cbor2
import pytest

from hotswap.client import AsyncClient, Client
from hotswap.errors import NodeError
from hotswap.examples.counter import Incr, counter_sm
from hotswap.protocol.codec import encode_message
from hotswap.protocol.events import ErrorCode, Goodbye
from hotswap.protocol.framing import LENGTH, frame
from served import Served


class OlderNode:
    """A node of the previous release in front of a real one: a hello of version 4 gets the
    goodbye ``unsupported_version`` an older node sends; other connections are relayed."""

    def __init__(self, behind: str, refuse: int = 4) -> None:
        self.behind = behind
        self.refuse = refuse
        self.hellos: list[int] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        head = _exactly(conn, LENGTH.size)
        payload = _exactly(conn, LENGTH.unpack(head)[0])
        version = cbor2.loads(payload)["version"]
        self.hellos.append(version)
        if version >= self.refuse:
            goodbye = Goodbye(ErrorCode.UNSUPPORTED_VERSION, "this side speaks 1, 2, 3")
            conn.sendall(frame(encode_message(goodbye, 1)))
            conn.close()
            return
        host, port = self.behind.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        upstream.sendall(head + payload)
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        sink.close()


def test_clients_fall_back_to_version_3_for_an_older_node(tmp_path: Path) -> None:
    with Served(tmp_path / "data", {"counter": counter_sm}) as node:
        older = OlderNode(node.address)
        try:
            with Client(older.address) as c:
                assert c.send("counter", Incr()) is None
                assert c.status("counter").inputs == 1
            assert older.hellos == [4, 3]

            async def talk() -> int:
                client = await AsyncClient.connect(older.address)
                try:
                    return (await client.status("counter")).inputs
                finally:
                    await client.close()

            assert asyncio.run(talk()) == 1
            assert older.hellos == [4, 3, 4, 3]
        finally:
            older.close()


def test_a_node_that_refuses_version_3_too_is_reported(tmp_path: Path) -> None:
    with Served(tmp_path / "data", {"counter": counter_sm}) as node:
        older = OlderNode(node.address, refuse=3)
        try:
            with pytest.raises(NodeError) as refused:
                Client(older.address)
            assert refused.value.code == "unsupported_version"
            assert older.hellos == [4, 3]  # one fallback, no more
        finally:
            older.close()
