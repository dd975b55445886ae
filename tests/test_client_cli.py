"""The asyncio client and the command line, against a real node process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from hotswap.cam.module import encode_module
from hotswap.client import AsyncClient, Upgrade
from hotswap.errors import NodeError, UpgradeRejected
from hotswap.examples import handbuilt
from nodeproc import NodeProcess

COUNTER = "hotswap.examples.handbuilt:counter_module"


def test_async_client_runs_the_seed_demo(tmp_path: Path) -> None:
    """The asyncio API mirrors the blocking one: send, upgrade, status, machines."""
    v1 = encode_module(handbuilt.counter_module())
    v2 = encode_module(handbuilt.counter2_module())
    migrate = encode_module(handbuilt.upgrade_state_module())

    async def demo(address: str) -> None:
        client = await AsyncClient.connect(address)
        try:
            assert await client.send("counter", (0, ())) == (0, ())
            await client.upgrade("counter", Upgrade(v1, v2, migrate))
            assert await client.send("counter", (1, ())) == (1, 0)
            status = await client.status("counter")
            assert status.state == (1, 0) and status.inputs == 2
            assert [name for name, _ in await client.machines()] == ["counter"]
            with pytest.raises(UpgradeRejected):
                await client.upgrade("counter", Upgrade(v1, v2, migrate))
            with pytest.raises(NodeError, match="no machine"):
                await client.send("nope", (0, ()))
        finally:
            await client.close()

    with NodeProcess(tmp_path, {"counter": COUNTER}) as node:
        asyncio.run(demo(node.address))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotswap", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_send_status_history_and_upgrade(tmp_path: Path) -> None:
    """The CLI speaks the seed's value syntax and reports the node's answers."""
    with NodeProcess(tmp_path, {"counter": COUNTER}) as node:
        at = ("--node", node.address)
        sent = _cli("send", *at, "counter", "L Unit")
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.splitlines() == ["Output:    L Unit", "New state: Int 1"]
        up = _cli(
            "upgrade",
            *at,
            "counter",
            "--to",
            "hotswap.examples.handbuilt:counter2_module",
            "--migration",
            "hotswap.examples.handbuilt:upgrade_state_module",
        )
        assert up.returncode == 0, up.stderr
        assert up.stdout.startswith("Upgrade successful!")
        status = _cli("status", *at, "counter")
        assert "state   Pair (Int 1) (Int 0)" in status.stdout
        history = _cli("history", *at, "counter")
        kinds = [line.split()[2] for line in history.stdout.splitlines()]
        assert kinds == ["start", "upgrade"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("send", "counter", "Int 3"), "expected 'L' or 'R'"),
        (("send", "nope", "L Unit"), "no machine 'nope'"),
        (("upgrade", "counter", "--to", "no.such:thing", "--migration", "x:y"), "cannot import"),
    ],
)
def test_cli_errors_are_one_line_and_non_zero(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    with NodeProcess(tmp_path, {"counter": COUNTER}) as node:
        result = _cli(args[0], "--node", node.address, *args[1:])
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_cli_without_a_node_says_so() -> None:
    result = _cli("status", "--node", "127.0.0.1:9")
    assert result.returncode == 1
    assert "cannot reach a node at 127.0.0.1:9" in result.stderr


def test_cli_dis_prints_a_listing(tmp_path: Path) -> None:
    path = tmp_path / "counter.hsm"
    path.write_bytes(encode_module(handbuilt.counter_module()))
    result = _cli("dis", str(path))
    assert result.returncode == 0
    assert "function 1 (step): (Bool x Int) -> (Int x (Unit + Int))" in result.stdout
    path.write_bytes(b"\x00hsm\x01garbage")
    result = _cli("dis", str(path))
    assert result.returncode == 1 and "hotswap:" in result.stderr


def test_cli_send_by_python_name(tmp_path: Path) -> None:
    """A DSL machine's inputs can be written by name; the seed syntax works too."""
    with NodeProcess(tmp_path, {"counter": "hotswap.examples.counter:counter_sm"}) as node:
        by_name = _cli("send", "--node", node.address, "counter", "Incr()")
        seed = _cli("send", "--node", node.address, "counter", "R Unit")
        wrong = _cli("send", "--node", node.address, "counter", "Decr()")
        status = _cli("status", "--node", node.address, "counter")
        named = _cli("send", "--node", node.address, "--names", "counter", "Count()")
    assert by_name.stdout.splitlines() == ["Output:    L Unit", "New state: Int 1"]
    assert seed.stdout.splitlines() == ["Output:    R (Int 1)", "New state: Int 1"]
    assert wrong.returncode == 1 and "neither a seed-syntax value" in wrong.stderr
    assert "names   input Incr | Count, state int, output None | int" in status.stdout
    assert named.stdout.splitlines() == ["Output:    1", "New state: 1"]
