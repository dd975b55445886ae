"""Limits a node applies to what a client sends, before any work is done on it."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from hotswap.cam.values import encode_value
from hotswap.client import Client
from hotswap.errors import NodeError
from hotswap.examples import cart
from hotswap.node.memory import MemoryNode
from hotswap.node.registry import DEFAULT_MAX_INPUT
from hotswap.node.service import NodeConfig
from hotswap.protocol.codec import encode_message
from hotswap.protocol.events import Hello
from hotswap.protocol.framing import frame
from served import Served


def test_an_input_longer_than_the_limit_is_refused_before_it_is_decoded() -> None:
    """Decoding costs time and memory in proportion to the input (a megabyte of empty lists
    takes seconds and a hundred times its size): past ``--max-input`` an input is refused
    unread, whatever machine it is for, keyed or not, and nothing changes."""
    config = NodeConfig(max_input=200)
    small = cart.AddItem("book-1", "A book", 1200, 2)
    big = cart.AddItem("book-2", "x" * 300, 1200, 2)
    signature = cart.cart_sm.loaded.machine
    assert signature is not None
    data = encode_value(cart.cart_sm.to_core_input(big), signature.input)
    with (
        MemoryNode({"cart": cart.cart_sm}, config=config) as node,
        Client(transport=node.connection()) as c,
    ):
        c.send("cart", small)
        for key in (None, "user-1"):
            with pytest.raises(NodeError) as refused:
                c.send_raw("cart", data, key=key)
            assert refused.value.code == "bad_input"
            assert "is more than this node takes (200; hotswap node --max-input BYTES)" in str(
                refused.value
            )
        assert c.status("cart").inputs == 1
        assert list(c.status("cart").state.lines) == ["book-1"]
    assert DEFAULT_MAX_INPUT == 1024 * 1024


def test_a_first_input_that_traps_makes_no_instance() -> None:
    """A trap changes nothing: for a key that had no instance, that means none is made (it
    would otherwise be listed, counted and stored with no input logged)."""
    with MemoryNode({"cart": cart.cart_sm}) as node, Client(transport=node.connection()) as c:
        with pytest.raises(NodeError, match="no instance made") as trapped:
            c.send("cart", cart.Checkout(), key="ghost")
        assert trapped.value.code == "trap"
        c.send("cart", cart.AddItem("pen", "A pen", 150, 1), key="real")
        assert c.instances("cart").keys == ("real",)
        assert c.status("cart").instances == 1
        node.reopen()
        with Client(transport=node.connection()) as again:
            assert again.instances("cart").keys == ("real",)


def test_connections_past_the_limit_are_refused_at_once(tmp_path: Path) -> None:
    """``--max-connections``: the next connection gets goodbye ``overloaded`` and holds
    nothing; once one closes, a new one is served again."""
    served = Served(tmp_path, {"cart": cart.cart_sm}, config=NodeConfig(max_connections=2))
    try:
        first, second = Client(served.address), Client(served.address)
        with pytest.raises(NodeError, match=r"its limit \(--max-connections\)") as refused:
            Client(served.address)
        assert refused.value.code == "overloaded"
        first.close()
        deadline = time.monotonic() + 5
        while True:  # the node notices the close on its next turn of the loop
            try:
                third = Client(served.address)
                break
            except NodeError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert third.status("cart").inputs == 0
        third.close()
        second.close()
    finally:
        served.stop()
    assert NodeConfig().idle_timeout == 600.0  # idle connections are closed by default


def test_unfinished_frames_are_held_within_one_budget_for_all_connections(tmp_path: Path) -> None:
    """A connection that sends the start of a large frame and stalls holds memory; past the
    node's budget for all connections (``--max-buffered``) the one that passed it is told
    goodbye ``overloaded`` and closed, and others are served."""
    config = NodeConfig(max_buffered=100_000)
    served = Served(tmp_path, {"cart": cart.cart_sm}, config=config)
    try:
        host, port = served.address.rsplit(":", 1)
        with Client(served.address) as honest:
            hello = frame(encode_message(Hello()))
            stalled = []
            for _ in range(3):
                sock = socket.create_connection((host, int(port)))
                sock.sendall(hello + struct.pack(">I", 1_000_000) + b"x" * 40_000)
                stalled.append(sock)
            last = stalled[-1]  # its bytes passed 100,000: told so and closed
            last.settimeout(5)
            data = b""
            while chunk := last.recv(65536):
                data += chunk
            assert b"overloaded" in data and b"--max-buffered" in data
            for sock in stalled:
                sock.close()
            assert honest.status("cart").inputs == 0
    finally:
        served.stop()
