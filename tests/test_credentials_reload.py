"""The node takes in changes to its credentials file while it runs: a revoked token stops
working on the connections that use it, and new principals can connect, without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hotswap.auth import Credentials
from hotswap.client import Client
from hotswap.errors import NodeError
from hotswap.examples.counter import Incr, counter_sm
from served import Served, run_cli


def _until(check: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("the node did not take the change in")


def _refused(address: str, token: str) -> bool:
    try:
        Client(address, token=token, timeout=5).close()
    except NodeError as e:
        return e.code == "unauthorized"
    return False


def test_revoking_a_token_ends_its_connections_and_new_tokens_work_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOTSWAP_TOKEN", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    credentials = Credentials()
    ci = credentials.add("ci", ["send"])
    credentials.save(data / "credentials.json")
    with Served(data, {"counter": counter_sm}, auth=True) as node:
        held = Client(node.address, token=ci)
        assert held.send("counter", Incr()) is None
        added = run_cli("token", "add", "ops", "--roles", "read", "--data", str(data))
        ops = added.stdout.strip().splitlines()[-1]
        _until(lambda: not _refused(node.address, ops))
        with Client(node.address, token=ops) as c:
            assert c.status("counter").inputs == 1
        assert run_cli("token", "revoke", "ci", "--data", str(data)).returncode == 0
        _until(lambda: _refused(node.address, ci))
        with pytest.raises(NodeError, match="credentials changed") as ended:
            held.send("counter", Incr())
        assert ended.value.code == "unauthorized"
        held.close()
        with Client(node.address, token=ops) as c:  # the other principal is unaffected
            assert c.status("counter").inputs == 1
        (data / "credentials.json").write_text("{not json", encoding="utf-8")
        _until(lambda: any("Kept the credentials in use" in line for line in node.lines()))
        with Client(node.address, token=ops) as c:  # a broken file changes nothing
            assert c.status("counter").inputs == 1
    assert sum("Kept the credentials in use" in line for line in node.lines()) == 1
