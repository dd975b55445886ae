"""TLS between clients and nodes, mutual TLS as a way to authenticate, and the refusal to
listen beyond this machine unprotected: against the real server on loopback (asyncio, in a
thread) and a real node process (uvloop)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hotswap.auth import Credentials
from hotswap.client import AsyncClient, Client, Upgrade
from hotswap.errors import HotswapError, NodeError
from hotswap.examples.counter import Incr, counter_sm, counter_sm2, upgrade_state
from hotswap.node.main import NodeOptions, check_exposure, loopback, tls_context
from hotswap.node.service import NodeConfig
from hotswap.node.trace import Trace
from hotswap.tls import (
    TlsProblem,
    Written,
    client_context,
    default_client_context,
    server_context,
    write_authority,
)
from nodeproc import NodeProcess
from served import Served, run_cli

COUNTER = "hotswap.examples.counter:counter_sm"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Written:
    return write_authority(
        tmp_path_factory.mktemp("pki"), ["127.0.0.1", "localhost"], ["deployer", "reader", "eve"]
    )


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Written:
    return write_authority(tmp_path_factory.mktemp("other"), ["127.0.0.1"], ["deployer"])


@pytest.fixture(autouse=True)
def _no_local_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tokens and TLS settings only as each test gives them."""
    for name in ("HOTSWAP_TOKEN", "HOTSWAP_TLS", "HOTSWAP_TLS_CA", "HOTSWAP_TLS_CERT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HOTSWAP_TLS_KEY", raising=False)
    monkeypatch.setenv("HOTSWAP_DATA", str(tmp_path / "no-such-data"))


def _client_of(pki: Written, name: str) -> tuple[Path, Path]:
    for client, cert, key in pki.clients:
        if client == name:
            return cert, key
    raise AssertionError(name)


def test_the_authority_writes_keys_for_their_owner_alone(pki: Written) -> None:
    assert {p.name for p in pki.ca.parent.iterdir()} >= {"ca.pem", "ca.key", "node.pem"}
    for key in pki.ca.parent.glob("*.key"):
        assert os.stat(key).st_mode & 0o077 == 0, key
    with pytest.raises(TlsProblem, match="exist"):
        write_authority(pki.ca.parent, ["127.0.0.1"], [])  # never replaces a key


def test_a_tls_node_serves_tls_clients_and_tells_plain_ones_why(
    tmp_path: Path, pki: Written, other_pki: Written
) -> None:
    tls = server_context(pki.node_cert, pki.node_key)
    with Served(tmp_path / "data", {"counter": counter_sm}, tls=tls) as node:
        assert any("(TLS)" in line for line in node.lines())
        with Client(node.address, tls=client_context(pki.ca)) as c:
            assert c.send("counter", Incr()) is None
            assert c.status("counter").inputs == 1
        with pytest.raises(NodeError, match="serves TLS closes plain connections") as plain:
            Client(node.address, tls=False, timeout=5)
        assert plain.value.code == "unreachable"
        with pytest.raises(NodeError, match="signed by the authority given as tls_ca"):
            Client(node.address, tls=client_context(other_pki.ca), timeout=5)
        # the node's certificate names 127.0.0.1 and localhost, not another name for it
        port = node.address.rpartition(":")[2]
        with pytest.raises(NodeError, match="certificate"):
            Client(f"localhost:{port}", tls=client_context(other_pki.ca), timeout=5)
        with Client(f"localhost:{port}", tls=client_context(pki.ca)) as c:
            assert c.status("counter").inputs == 1


def test_tls_files_may_be_given_as_strings(tmp_path: Path, pki: Written) -> None:
    cert, key = _client_of(pki, "deployer")
    assert isinstance(client_context(str(pki.ca), str(cert), str(key)), ssl.SSLContext)
    assert isinstance(server_context(str(pki.node_cert), str(pki.node_key)), ssl.SSLContext)


def test_a_tls_client_of_a_plain_node_is_told_to_check_the_node(
    tmp_path: Path, pki: Written
) -> None:
    with (
        Served(tmp_path / "data", {"counter": counter_sm}) as node,
        pytest.raises(NodeError, match="does the node serve TLS"),
    ):
        Client(node.address, tls=client_context(pki.ca), timeout=5)


def test_the_async_client_speaks_tls_as_the_environment_says(
    tmp_path: Path, pki: Written, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOTSWAP_TLS_CA", str(pki.ca))
    assert isinstance(default_client_context(), ssl.SSLContext)
    tls = server_context(pki.node_cert, pki.node_key)

    async def talk(address: str) -> int:
        client = await AsyncClient.connect(address)
        try:
            await client.send("counter", Incr())
            return (await client.status("counter")).inputs
        finally:
            await client.close()

    with Served(tmp_path / "data", {"counter": counter_sm}, tls=tls) as node:
        assert asyncio.run(talk(node.address)) == 1
        with Client(node.address) as c:  # the blocking client reads the environment too
            assert c.status("counter").inputs == 1


def _certified_node(data: Path, pki: Written) -> Served:
    """A node that requires client certificates and authenticates their principals."""
    data.mkdir(parents=True)
    credentials = Credentials()
    credentials.add_certified("deployer", ["upgrade"])
    credentials.add_certified("reader", ["read"])
    credentials.save(data / "credentials.json")
    tls = server_context(pki.node_cert, pki.node_key, pki.ca)
    return Served(data, {"counter": counter_sm}, tls=tls, auth=True)


def test_mutual_tls_names_the_principal_by_its_certificate(tmp_path: Path, pki: Written) -> None:
    with _certified_node(tmp_path / "data", pki) as node:
        assert any("client certificates required" in line for line in node.lines())
        cert, key = _client_of(pki, "deployer")
        with Client(node.address, tls=client_context(pki.ca, cert, key)) as c:
            assert c.send("counter", Incr()) is None
            done = c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            assert done.new == counter_sm2.identity
        cert, key = _client_of(pki, "reader")
        with Client(node.address, tls=client_context(pki.ca, cert, key)) as c:
            assert c.status("counter").inputs == 1
            with pytest.raises(NodeError, match=r"reader .* may not send 'send") as refused:
                c.send("counter", Incr())
            assert refused.value.code == "forbidden"
            assert c.status("counter").inputs == 1
        cert, key = _client_of(pki, "eve")  # signed by the authority, but no principal
        with pytest.raises(NodeError, match="common name 'eve' is no principal") as eve:
            Client(node.address, tls=client_context(pki.ca, cert, key), timeout=5)
        assert eve.value.code == "unauthorized"
        with pytest.raises(NodeError) as anonymous:  # no certificate: no TLS session at all
            Client(node.address, tls=client_context(pki.ca), timeout=5)
        assert anonymous.value.code == "unreachable"
    lines = [line for line in node.lines() if "refused (unauthorized)" in line]
    assert lines and all(re.search(r"Connection from 127\.0\.0\.1:\d+ ", x) for x in lines)
    failed = [line for line in node.lines() if "TLS handshake from 127.0.0.1:" in line]
    assert any("the client gave no certificate" in line for line in failed), failed


def test_failed_handshakes_are_traced_with_the_peer_and_why(
    tmp_path: Path, pki: Written, other_pki: Written
) -> None:
    tls = server_context(pki.node_cert, pki.node_key, pki.ca)
    config = NodeConfig(handshake_timeout=0.5)
    with Served(tmp_path / "data", {"counter": counter_sm}, tls=tls, config=config) as node:
        with socket.create_connection(_host_port(node.address), timeout=5) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not TLS at all
            assert plain.recv(100) == b""  # closed, nothing said in plain bytes
        cert, key = _client_of(other_pki, "deployer")
        with pytest.raises(NodeError):
            Client(node.address, tls=client_context(pki.ca, cert, key), timeout=5)
        with socket.create_connection(_host_port(node.address), timeout=5) as silent:
            assert silent.recv(100) == b""  # says nothing: closed after the handshake timeout
        lines = _wait_for(node, 3, "TLS handshake from")
    assert "not a TLS client" in lines[0], lines
    assert "certificate was refused" in lines[1], lines
    assert "handshake timeout" in lines[2], lines
    assert all(re.match(r".*TLS handshake from 127\.0\.0\.1:\d+ failed: ", x) for x in lines)


def test_handshakes_in_progress_count_against_the_connection_limit(
    tmp_path: Path, pki: Written
) -> None:
    """Connections that never finish their TLS handshake hold a place among
    --max-connections, but cannot keep clients out: at the limit, the oldest connection not
    past its hello is closed to make room for the new one. Once every connection said its
    hello, the next is refused, and traced."""
    tls = server_context(pki.node_cert, pki.node_key)
    config = NodeConfig(max_connections=3, handshake_timeout=5.0)
    with Served(tmp_path / "data", {"counter": counter_sm}, tls=tls, config=config) as node:
        stalled = [socket.create_connection(_host_port(node.address)) for _ in range(3)]
        clients: list[Client] = []
        try:
            _wait_until(lambda: len(node.node.handshakes) == 3)
            for _ in range(3):  # each takes the place of a stalled handshake
                clients.append(Client(node.address, tls=client_context(pki.ca), timeout=5))
                assert clients[-1].send("counter", Incr()) is None
            assert not node.node.handshakes
            with pytest.raises(NodeError, match="--max-connections"):
                Client(node.address, tls=client_context(pki.ca), timeout=5)
        finally:
            for sock in stalled:
                sock.close()
            for client in clients:
                client.close()
    made_room = [line for line in node.lines() if "to make room for 127.0.0.1:" in line]
    assert len(made_room) == 3, node.lines()
    assert any("every one past its hello" in line for line in node.lines())


def test_connections_that_never_say_hello_make_room_for_clients(tmp_path: Path) -> None:
    """Over plain TCP too: silent connections at the limit are closed, oldest first, for new
    clients; clients past their hello are never closed for another."""
    config = NodeConfig(max_connections=2, handshake_timeout=5.0)
    with Served(tmp_path / "data", {"counter": counter_sm}, config=config) as node:
        silent = [socket.create_connection(_host_port(node.address)) for _ in range(2)]
        try:
            _wait_until(lambda: len(node.node.peers) == 2)
            with Client(node.address, timeout=5) as a, Client(node.address, timeout=5) as b:
                assert a.send("counter", Incr()) is None and b.send("counter", Incr()) is None
                assert silent[0].recv(100) == b""  # the oldest went first
                with pytest.raises(NodeError, match="--max-connections") as refused:
                    Client(node.address, timeout=5)
                assert refused.value.code == "overloaded"
                assert a.status("counter").inputs == 2  # neither client was closed
        finally:
            for sock in silent:
                sock.close()


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.01)


def _wait_for(node: Served, count: int, text: str) -> list[str]:
    """The first ``count`` trace lines holding ``text``, waiting for them to appear."""
    _wait_until(lambda: sum(text in line for line in node.lines()) >= count)
    return [line for line in node.lines() if text in line][:count]


def test_a_token_still_works_over_mutual_tls(tmp_path: Path, pki: Written) -> None:
    data = tmp_path / "data"
    data.mkdir()
    credentials = Credentials()
    token = credentials.add("ci", ["send"])
    credentials.save(data / "credentials.json")
    tls = server_context(pki.node_cert, pki.node_key, pki.ca)
    with Served(data, {"counter": counter_sm}, tls=tls, auth=True) as node:
        cert, key = _client_of(pki, "eve")  # its certificate lets it connect; its token decides
        with Client(node.address, tls=client_context(pki.ca, cert, key), token=token) as c:
            assert c.send("counter", Incr()) is None


def test_a_node_process_serves_mutual_tls_on_uvloop(tmp_path: Path, pki: Written) -> None:
    data = tmp_path / "data"
    data.mkdir()
    credentials = Credentials()
    credentials.add_certified("deployer", ["send"])
    credentials.save(data / "credentials.json")
    tls = ["--tls-cert", str(pki.node_cert), "--tls-key", str(pki.node_key)]
    # asyncio's loop is the default over TLS: uvloop's TLS is asked for, and must work too
    node = NodeProcess(
        data, {"counter": COUNTER}, *tls, "--tls-ca", str(pki.ca), "--auth", "--loop", "uvloop"
    )
    try:
        cert, key = _client_of(pki, "deployer")
        given = ["--node", node.address, "--tls-ca", str(pki.ca)]
        sent = run_cli(
            "send", "counter", "L Unit", *given, "--tls-cert", str(cert), "--tls-key", str(key)
        )
        assert sent.returncode == 0, (sent.stderr, node.lines())
        shown = run_cli("status", "counter", *given, "--tls-cert", str(cert), "--tls-key", str(key))
        assert "inputs  1\n" in shown.stdout, shown.stdout
        cert, key = _client_of(pki, "eve")
        refused = run_cli(
            "send", "counter", "L Unit", *given, "--tls-cert", str(cert), "--tls-key", str(key)
        )
        assert refused.returncode != 0 and "no principal" in refused.stderr, refused.stderr
    finally:
        node.stop()


def test_loopback_addresses_are_told_apart() -> None:
    assert loopback("127.0.0.1") and loopback("127.8.9.1") and loopback("::1")
    assert loopback("localhost") and loopback("[::1]")
    assert not loopback("0.0.0.0") and not loopback("::") and not loopback("10.1.2.3")
    assert not loopback("")


def test_listening_beyond_this_machine_needs_tls_and_authentication(
    tmp_path: Path, pki: Written
) -> None:
    trace = Trace("off")
    exposed = NodeOptions(host="0.0.0.0", port=7000)
    with pytest.raises(HotswapError, match=r"without TLS .* and authentication") as refused:
        check_exposure(exposed, trace)
    assert "--insecure" in str(refused.value)
    tls = {"tls_cert": pki.node_cert, "tls_key": pki.node_key}
    with pytest.raises(HotswapError, match="without authentication"):
        check_exposure(NodeOptions(host="0.0.0.0", **tls), trace)  # type: ignore[arg-type]
    with pytest.raises(HotswapError, match="without TLS"):
        check_exposure(NodeOptions(host="0.0.0.0", auth=True), trace)
    check_exposure(NodeOptions(host="0.0.0.0", auth=True, **tls), trace)  # type: ignore[arg-type]
    check_exposure(NodeOptions(host="0.0.0.0", tls_ca=pki.ca, **tls), trace)  # type: ignore[arg-type]
    check_exposure(NodeOptions(host="127.0.0.1"), trace)
    refused_cli = run_cli("node", "--listen", "0.0.0.0:0", "--data", str(tmp_path / "d"))
    assert refused_cli.returncode != 0 and "refusing to listen" in refused_cli.stderr
    assert not (tmp_path / "d").exists()  # refused before the store is opened


def test_insecure_listens_anyway_and_says_so_loudly(tmp_path: Path) -> None:
    node = NodeProcess(
        tmp_path / "data", {"counter": COUNTER}, "--listen", "0.0.0.0:0", "--insecure"
    )
    try:
        assert any(line.startswith("WARNING: --insecure") for line in node.lines())
        port = node.address.split(":")[1]
        with Client(f"127.0.0.1:{port}") as c:
            assert c.send("counter", Incr()) is None
    finally:
        node.stop()


def test_bad_tls_files_are_named(tmp_path: Path, pki: Written) -> None:
    with pytest.raises(TlsProblem, match="no such file"):
        server_context(tmp_path / "missing.pem", pki.node_key)
    with pytest.raises(TlsProblem, match="not a PEM certificate and its private key"):
        server_context(pki.node_cert, pki.ca.with_suffix(".key"))  # another certificate's key
    with pytest.raises(TlsProblem, match="holds no PEM certificate of an authority"):
        client_context(pki.node_key)
    with pytest.raises(TlsProblem, match="needs its key"):
        client_context(pki.ca, pki.node_cert)
    with pytest.raises(HotswapError, match="--tls-ca needs --tls-cert and --tls-key"):
        tls_context(NodeOptions(tls_ca=pki.ca))
    with pytest.raises(HotswapError, match="both --tls-cert FILE and --tls-key FILE"):
        tls_context(NodeOptions(tls_cert=pki.node_cert))


def test_certificate_principals_are_managed_with_the_token_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    added = run_cli(
        "token", "add", "deployer", "--roles", "upgrade", "--certificate", "--data", str(data)
    )
    assert added.returncode == 0 and "client certificate" in added.stdout
    assert "hst_" not in added.stdout  # no token is made for it
    run_cli("token", "add", "ci", "--roles", "send", "--data", str(data))
    listed = run_cli("token", "list", "--data", str(data)).stdout
    assert "deployer: upgrade (client certificate)" in listed and "ci: send\n" in listed
    doc = json.loads((data / "credentials.json").read_text(encoding="utf-8"))
    assert {"name": "deployer", "roles": ["upgrade"], "certificate": True} in doc["principals"]
    loaded = Credentials.load(data / "credentials.json")
    assert loaded.certified("deployer") is not None and loaded.certified("ci") is None
    assert loaded.authenticate("deployer") is None  # a name is not a token
    assert run_cli("token", "revoke", "deployer", "--data", str(data)).returncode == 0
    assert Credentials.load(data / "credentials.json").certified("deployer") is None


def test_tls_init_prints_how_to_use_what_it_wrote(tmp_path: Path) -> None:
    made = run_cli(
        "tls-init", "--out", str(tmp_path / "pki"), "--host", "127.0.0.1", "--client", "ops"
    )
    assert made.returncode == 0, made.stderr
    assert "--tls-cert" in made.stdout and "ops.pem" in made.stdout
    again = run_cli("tls-init", "--out", str(tmp_path / "pki"), "--host", "127.0.0.1")
    assert again.returncode != 0 and "exist" in again.stderr


def test_a_certificate_rejected_by_mutual_tls_is_told_what_to_give(
    tmp_path: Path, pki: Written, other_pki: Written
) -> None:
    tls = server_context(pki.node_cert, pki.node_key, pki.ca)
    with Served(tmp_path / "data", {"counter": counter_sm}, tls=tls) as node:
        cert, key = _client_of(other_pki, "deployer")  # signed by another authority
        with pytest.raises(NodeError, match="requires client certificates") as refused:
            Client(node.address, tls=client_context(pki.ca, cert, key), timeout=5)
        assert "connect with TLS" not in str(refused.value)


def test_mutual_tls_without_auth_names_each_change_by_its_certificate(
    tmp_path: Path, pki: Written
) -> None:
    tls = server_context(pki.node_cert, pki.node_key, pki.ca)
    with Served(tmp_path / "data", {"counter": counter_sm}, tls=tls) as node:
        cert, key = _client_of(pki, "eve")  # no --auth: any certificate of the authority
        with Client(node.address, tls=client_context(pki.ca, cert, key)) as c:
            c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            history = c.status_raw("counter").history
        assert history[-1].by == "eve"


def test_token_add_makes_the_data_directory_of_a_node_not_started_yet(tmp_path: Path) -> None:
    data = tmp_path / "not-yet"
    added = run_cli("token", "add", "ops", "--roles", "admin", "--certificate", "--data", str(data))
    assert added.returncode == 0, added.stderr
    assert os.stat(data).st_mode & 0o077 == 0
    assert Credentials.load(data / "credentials.json").certified("ops") is not None
