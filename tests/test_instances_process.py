"""Keyed instances end to end: the CLI against a served node, and a real node process killed
with SIGKILL while keyed inputs stream, an upgrade's lazy migrations are half done and the
sweeper runs."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from hotswap.cam.values import encode_value
from hotswap.client import Client, Upgrade, connect
from hotswap.errors import NodeError
from hotswap.names.schema import core_type
from hotswap.protocol.events import Output, Send
from instance_machines import Add, Tally, tally_v1, tally_v2, v1_to_v2
from nodeproc import NodeProcess
from served import Served, run_cli

TESTS = Path(__file__).parent
TALLY = "instance_machines:tally_v1"


def test_the_cli_sends_lists_shows_deletes_and_deploys_instances(tmp_path: Path) -> None:
    """``send --key``, ``status --key``, ``instances --prefix``, ``delete --key``, ``deploy``,
    ``upgrade --check-all`` refusing, and clear errors."""
    served = Served(tmp_path, {"tally": tally_v1})
    try:
        node = ("--node", served.address)
        for key in ("user-1", "user-2", "order-9"):
            assert run_cli("send", "tally", "Add(13)", "--key", key, *node).returncode == 0
        shown = run_cli("status", "tally", "--key", "user-1", *node)
        assert (
            shown.returncode == 0 and "tally['user-1']" in shown.stdout and "Int 13" in shown.stdout
        )
        listed = run_cli("instances", "tally", "--prefix", "user-", *node)
        assert listed.stdout.split() == ["user-1", "user-2"]
        whole = run_cli("status", "tally", *node)
        assert "instances 3 (by code: " in whole.stdout
        refused = run_cli(
            "upgrade",
            "tally",
            "--to",
            "instance_machines:tally_v2",
            "--migration",
            "instance_machines:v1_to_v2",
            "--check-all",
            *node,
        )
        assert refused.returncode == 1 and "traps on 3 instance(s)" in refused.stderr
        assert run_cli("delete", "tally", "--key", "order-9", *node).stdout.startswith("Deleted")
        assert run_cli("instances", "tally", *node).stdout.split() == ["user-1", "user-2"]
        deployed = run_cli("deploy", "tally2", "--code", "instance_machines:tally_v2", *node)
        assert deployed.returncode == 0 and "Deployed machine 'tally2'" in deployed.stdout
        bad = run_cli("send", "tally", "Add(1)", "--key", "", *node)
        assert bad.returncode == 1 and "not empty" in bad.stderr
        gone = run_cli("status", "tally", "--key", "nobody", *node)
        assert gone.returncode == 1 and "no instance 'nobody'" in gone.stderr
        assert (
            run_cli("send", "tally", "Add(1)", "--key", "two\nlines\x1b[2J", *node).returncode == 0
        )
        shown_keys = run_cli("instances", "tally", *node).stdout.splitlines()
        assert shown_keys == ["'two\\nlines\\x1b[2J'", "user-1", "user-2"]  # quoted, one line
        first = run_cli("instances", "tally", "--limit", "1", *node)
        assert first.stdout.splitlines() == ["'two\\nlines\\x1b[2J'"] and "--after" in first.stderr
    finally:
        served.stop()


def _stream(address: str, keys: list[str], acked: dict[str, int], flying: dict[str, int]) -> None:
    """Pipelines of Add(1) to random keys until the node dies; counts per key what was
    acknowledged, and what was in flight when it died."""
    add = encode_value(tally_v1.to_core_input(Add(1)), core_type(tally_v1.compiled.input))
    rng = random.Random(5)
    try:
        with connect(address) as client:
            rid = 10_000
            while True:
                batch = [rng.choice(keys) for _ in range(100)]
                flying.clear()
                for key in batch:
                    flying[key] = flying.get(key, 0) + 1
                requests = []
                for key in batch:
                    rid += 1
                    requests.append(Send(rid, "tally", add, False, key))
                replies = client.pipeline(requests)
                for key, reply in zip(batch, replies, strict=True):
                    if isinstance(reply, Output):
                        acked[key] = acked.get(key, 0) + 1
                flying.clear()
    except NodeError:
        return


def test_sigkill_with_lazy_migrations_in_flight_loses_nothing_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """500 instances, an upgrade whose migration traps on those at 13, keyed inputs streaming
    with a small cache and the sweeper on, SIGKILL: after a restart every instance holds
    exactly its acknowledged inputs (plus at most those in flight), on v2 or, if its
    migration traps, on v1 with its old state."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    args = ("--trace", "off", "--cache", "64", "--sweep-rate", "2000")
    node = NodeProcess(tmp_path, {"tally": TALLY}, *args)
    keys = [f"k{i:03}" for i in range(500)]
    traps = keys[:5]
    acked: dict[str, int] = {}
    flying: dict[str, int] = {}
    try:
        with connect(node.address, machines=[tally_v1, tally_v2]) as c:
            for key in keys:
                c.send("tally", Add(13 if key in traps else 1), key=key)
            c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2))
        before = {k: (13 if k in traps else 1) for k in keys}
        streamer = threading.Thread(target=_stream, args=(node.address, keys, acked, flying))
        streamer.start()
        time.sleep(1.0)
    finally:
        node.kill()
    streamer.join(10)
    assert sum(acked.values()) > 1000
    restarted = NodeProcess(tmp_path, {"tally": TALLY}, "--trace", "off", "--sweep-rate", "0")
    with restarted as again, Client(again.address, machines=[tally_v1, tally_v2]) as c:
        status = c.status("tally")
        assert status.instances == len(keys)
        for key in keys:
            got = c.status("tally", key=key)
            if key in traps:
                assert (got.identity, got.state) == (tally_v1.identity, 13)
                continue
            low = before[key] + acked.get(key, 0)
            assert got.identity == tally_v2.identity
            assert isinstance(got.state, Tally)
            assert low <= got.state.total <= low + flying.get(key, 0), key
            assert got.state.ratio == 1000 // (1 - 13)
        assert [t.key for t in c.status("tally").trapped] == traps
