"""A node started with ``--auth``: a connection presents a token in its hello, and each
request needs a role (read < send < upgrade < admin). Without a token, or with an unknown one,
the node says goodbye ``unauthorized``; a request beyond the token's roles is refused
``forbidden`` and changes nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hotswap.auth import Credentials
from hotswap.client import Client, Upgrade
from hotswap.errors import NodeError
from hotswap.examples.counter import Incr, counter_sm, counter_sm2, upgrade_state
from hotswap.node.memory import MemoryNode
from hotswap.node.service import NodeConfig
from served import Served, run_cli


def test_tokens_and_roles_decide_what_a_connection_may_do() -> None:
    credentials = Credentials()
    reader = credentials.add("dashboard", ["read"])
    sender = credentials.add("app", ["send"])
    deployer = credentials.add("ci", ["upgrade"])
    config = NodeConfig(credentials=credentials)
    with MemoryNode({"counter": counter_sm}, config=config) as node:
        for token, why in ((None, "connect with a token"), ("hst_nope", "not one this node knows")):
            with pytest.raises(NodeError, match=why) as refused:
                Client(transport=node.connection(), token=token)
            assert refused.value.code == "unauthorized"
        with Client(transport=node.connection(), token=reader) as c:
            assert c.status("counter").inputs == 0
            with pytest.raises(NodeError, match=r"dashboard \(roles: read\).*needs the send role"):
                c.send("counter", Incr())
        with Client(transport=node.connection(), token=sender) as c:
            c.send("counter", Incr())
            assert c.status("counter").inputs == 1  # send includes read
            with pytest.raises(NodeError, match="needs the upgrade role") as e:
                c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            assert e.value.code == "forbidden"
        with Client(transport=node.connection(), token=deployer) as c:
            c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            assert c.status("counter").identity == counter_sm2.identity


def test_the_first_start_with_auth_writes_a_local_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients on the node's machine find the token in its data directory; the CLI adds
    principals for others."""
    data = tmp_path / "hotswap-data"
    served = Served(data, {"counter": counter_sm}, auth=True)
    try:
        local = data / "client.token"
        assert stat.S_IMODE(os.stat(local).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(data / "credentials.json").st_mode) == 0o600
        monkeypatch.chdir(tmp_path)  # where a client looks: ./hotswap-data/client.token
        monkeypatch.delenv("HOTSWAP_TOKEN", raising=False)
        with Client(served.address) as c:
            c.send("counter", Incr())
        monkeypatch.setenv("HOTSWAP_DATA", str(tmp_path / "elsewhere"))
        with pytest.raises(NodeError, match=r"connect with a token"):
            Client(served.address)
        monkeypatch.setenv("HOTSWAP_TOKEN", local.read_text(encoding="utf-8").strip())
        with Client(served.address) as c:
            assert c.status("counter").inputs == 1
    finally:
        served.stop()
    added = run_cli("token", "add", "app", "--roles", "send", "--data", str(data))
    assert added.returncode == 0 and "hst_" in added.stdout
    listed = run_cli("token", "list", "--data", str(data))
    assert listed.stdout.split("\n")[:2] == ["app: send", "local: admin"]
    bad = run_cli("token", "add", "x", "--roles", "root", "--data", str(data))
    assert bad.returncode == 1 and "unknown role 'root'" in bad.stderr
