"""End to end through the client library: over loopback sockets to the real server where the
socket matters (the transcript, garbage, timeouts), else to an in-memory node. Tests that need
a real process (signals, SIGKILL) are in test_node_process.py."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from hotswap import load_module
from hotswap.cam.build import migration_module
from hotswap.cam.module import encode_module
from hotswap.client import Client, Upgrade, connect
from hotswap.errors import NodeError, UpgradeRejected
from hotswap.examples import handbuilt
from hotswap.lang.terms import Fanout, Lit, Op, Prim, compose
from hotswap.lang.types import INT, Prod
from hotswap.node.memory import MemoryNode
from hotswap.node.service import NodeConfig
from hotswap.protocol.events import Output, Request, Send, UpgradeRequest
from served import Served

COUNTER = "hotswap.examples.handbuilt:counter_module"
INCR, COUNT = (0, ()), (1, ())


def _blocks(lines: list[str]) -> list[str]:
    """The node's trace without its own notes and blank lines."""
    notes = ("Started", "Listening", "Recovered", "Recovery")
    return [line for line in lines if line and not line.startswith(notes)]


def test_seed_transcript_with_handbuilt_machines(tmp_path: Path) -> None:
    """The seed's demo: incr, count, upgrade, incr, incr, count, upgrade again (rejected)."""
    v1 = encode_module(handbuilt.counter_module())
    v2 = encode_module(handbuilt.counter2_module())
    migrate = encode_module(handbuilt.upgrade_state_module())
    with Served(tmp_path, {"counter": COUNTER}) as node, connect(node.address) as client:
        assert client.send("counter", INCR) == (0, ())
        assert client.send("counter", COUNT) == (1, 1)
        client.upgrade("counter", Upgrade(v1, v2, migrate))
        client.send("counter", INCR)
        client.send("counter", INCR)
        assert client.send("counter", COUNT) == (1, 2)
        with pytest.raises(UpgradeRejected) as info:
            client.upgrade("counter", Upgrade(v1, v2, migrate))
        assert info.value.code == "wrong_version"
        assert _blocks(node.lines()) == [
            "Output:    L Unit",
            "New state: Int 1",
            "Output:    R (Int 1)",
            "New state: Int 1",
            "Upgrade successful!",
            "Output:    L Unit",
            "New state: Pair (Int 1) (Int 1)",
            "Output:    L Unit",
            "New state: Pair (Int 1) (Int 2)",
            "Output:    R (Int 2)",
            "New state: Pair (Int 1) (Int 2)",
            "The version running isn't the one the upgrade expects. Aborting upgrade.",
        ]


def _bad_upgrades() -> list[tuple[str, Upgrade, str]]:
    v1 = encode_module(handbuilt.counter_module())
    v2 = encode_module(handbuilt.counter2_module())
    migrate = encode_module(handbuilt.upgrade_state_module())
    wrong_types = encode_module(migration_module(INT, INT, Lit(0)))
    trapping = encode_module(
        migration_module(
            INT, Prod(INT, INT), Fanout(compose(Fanout(Lit(1), Lit(0)), Prim(Op.FLOORDIV)), Lit(0))
        )
    )
    corrupt = v2[:-3] + b"\xff\xff\xff"
    return [
        ("wrong_version", Upgrade(v2, v2, migrate), "isn't the one the upgrade expects"),
        ("ill_typed_upgrade", Upgrade(v1, v2, wrong_types), "migration is Int -> Int"),
        ("migration_trap", Upgrade(v1, v2, trapping), "division by zero"),
        ("bad_module", Upgrade(v1, corrupt, migrate), "new module rejected"),
        ("bad_module", Upgrade(v1, migrate, migrate), "not a machine"),
        ("bad_module", Upgrade(v1, v2, v2), "not a migration"),
    ]


def test_rejected_upgrades_change_nothing(tmp_path: Path) -> None:
    """Every kind of bad upgrade is refused with its reason; code, state and history stay."""
    with MemoryNode({"counter": COUNTER}) as node, Client(transport=node.connection()) as client:
        client.send("counter", INCR)
        before = client.status("counter")
        for code, upgrade, reason in _bad_upgrades():
            with pytest.raises(UpgradeRejected, match=reason) as info:
                client.upgrade("counter", upgrade)
            assert info.value.code == code
            after = client.status("counter")
            assert (after.identity, after.state, after.inputs, after.history) == (
                before.identity,
                before.state,
                before.inputs,
                before.history,
            )
        assert client.send("counter", COUNT) == (1, 1)  # still serving, same state


def _raw(address: str) -> socket.socket:
    host, port = address.split(":")
    return socket.create_connection((host, int(port)), timeout=5)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        struct.pack(">I", 2**31) + b"x",  # oversized length prefix
        struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff",  # not CBOR
        struct.pack(">I", 10) + b"abc",  # truncated, then the connection closes
    ],
)
def test_garbage_gets_closed_and_others_keep_being_served(tmp_path: Path, garbage: bytes) -> None:
    """A bad peer is disconnected; another client's state and service are untouched."""
    with Served(tmp_path, {"counter": COUNTER}) as node, connect(node.address) as client:
        client.send("counter", INCR)
        bad = _raw(node.address)
        bad.sendall(garbage)
        bad.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := bad.recv(4096):
            received += chunk
        bad.close()  # the node closed its side: recv returned b""
        assert client.send("counter", COUNT) == (1, 1)
        assert client.status("counter").inputs == 2


def test_wrong_typed_input_is_refused(tmp_path: Path) -> None:
    """Input bytes that are not a value of the input type get bad_input; nothing changes."""
    with MemoryNode({"counter": COUNTER}) as node, Client(transport=node.connection()) as client:
        for data in (b"", b"\x02", b"\x00\x00"):
            with pytest.raises(NodeError, match="input type") as info:
                client.send_raw("counter", data)
            assert info.value.code == "bad_input"
        assert client.status("counter").inputs == 0


def test_silent_and_idle_clients_are_disconnected(tmp_path: Path) -> None:
    """No hello within the handshake timeout, or nothing within the idle timeout: closed."""
    config = NodeConfig(handshake_timeout=0.3, idle_timeout=0.6)
    with Served(tmp_path, {"counter": COUNTER}, config=config) as node:
        silent = _raw(node.address)
        started = time.monotonic()
        assert silent.recv(100) == b""  # closed by the node, not by the 5 s socket timeout
        assert time.monotonic() - started < 3
        silent.close()
        with connect(node.address) as client:
            client.send("counter", INCR)
            time.sleep(1.2)
            with pytest.raises(NodeError):
                client.send("counter", INCR)


def test_a_client_active_within_the_idle_timeout_stays_connected(tmp_path: Path) -> None:
    """The idle clock restarts at each request: a client sending every 0.12 s outlives
    several idle timeouts of 0.3 s, and is closed once it goes quiet for longer than one."""
    config = NodeConfig(idle_timeout=0.3)
    with Served(tmp_path, {"counter": COUNTER}, config=config) as node, connect(node.address) as c:
        for _ in range(8):
            c.send("counter", INCR)
            time.sleep(0.12)
        assert c.status("counter").inputs == 8
        time.sleep(0.7)
        with pytest.raises(NodeError):
            c.send("counter", INCR)


def test_inputs_pipelined_around_an_upgrade_are_served_in_order(tmp_path: Path) -> None:
    """Inputs sent before and after an upgrade in one burst: each answered once, in order,
    the later ones by the new code."""
    v1 = encode_module(handbuilt.counter_module())
    v2 = encode_module(handbuilt.counter2_module())
    migrate = encode_module(handbuilt.upgrade_state_module())
    with MemoryNode({"counter": COUNTER}) as node, Client(transport=node.connection()) as client:
        rid = client.session.request_id
        burst: list[Request] = [
            Send(rid(), "counter", b"\x00"),
            Send(rid(), "counter", b"\x00"),
            UpgradeRequest(rid(), "counter", load_module(v1).identity, v2, migrate),
            Send(rid(), "counter", b"\x00"),
            Send(rid(), "counter", b"\x01"),
        ]
        replies = client.pipeline(burst)
    assert [type(r).__name__ for r in replies] == ["Output"] * 2 + ["Upgraded"] + ["Output"] * 2
    states = [r.state for r in replies if isinstance(r, Output)]
    assert states == [b"\x01", b"\x02", b"\x02\x01", b"\x02\x01"]
