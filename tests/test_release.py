"""Releases: several machines upgraded together, between the same two inputs, or not at all."""

from __future__ import annotations

import io
from pathlib import Path

import cbor2
import pytest

from hotswap.cam.loaded import load
from hotswap.cam.module import encode_module
from hotswap.client import Client, Upgrade
from hotswap.errors import LocalProtocolError, RemoteProtocolError, UpgradeRejected
from hotswap.examples import handbuilt
from hotswap.examples.breaker import Call, breaker_sm, breaker_sm2, upgrade_breaker
from hotswap.examples.counter import Incr, counter_sm, counter_sm2
from hotswap.node.memory import MemoryNode
from hotswap.node.registry import Registry
from hotswap.node.trace import Trace
from hotswap.protocol import Release, Released, ReleasedEntry, ReleaseItem
from hotswap.protocol.codec import decode_message, encode_message
from served import Served, run_cli

A, B = "a" * 64, "b" * 64
V2 = encode_module(handbuilt.counter2_module())
MIGRATE = encode_module(handbuilt.upgrade_state_module())


def test_release_messages_round_trip() -> None:
    """release and released travel like every other message, items sorted by machine."""
    release = Release(3, (ReleaseItem("a", A, b"m", b"g"), ReleaseItem("b", B, b"n", b"h")))
    assert decode_message(encode_message(release), from_client=True) == release
    released = Released(3, (ReleasedEntry("a", A, B), ReleasedEntry("b", B, A)))
    assert decode_message(encode_message(released), from_client=False) == released


def test_release_items_must_be_sorted_and_distinct() -> None:
    """Two items for one machine cannot even be sent, nor received."""
    twice = Release(1, (ReleaseItem("a", A, b"", b""), ReleaseItem("a", A, b"", b"")))
    with pytest.raises(LocalProtocolError, match="does not follow"):
        encode_message(twice)
    item = {"machine": "a", "expected": A, "module": b"", "migration": b""}
    raw = cbor2.dumps({"id": 1, "type": "release", "items": [item, item]}, canonical=True)
    with pytest.raises(RemoteProtocolError, match="machine 'a' at index 1 does not follow 'a'"):
        decode_message(raw, from_client=True)


def _registry() -> Registry:
    registry = Registry()
    for name in ("left", "right"):
        registry.start(name, load(handbuilt.counter_module()), now=0.0)
        registry.step(name, b"\x00")
    return registry


def test_a_release_changes_all_or_nothing() -> None:
    """If any item fails a check, no machine changes, and the error names the machine."""
    registry = _registry()
    running = registry.get("left").identity
    with pytest.raises(UpgradeRejected, match=r"right: .*isn.t the one") as info:
        registry.release([("left", running, V2, MIGRATE), ("right", "0" * 64, V2, MIGRATE)])
    assert info.value.code == "wrong_version"
    for name in ("left", "right"):
        machine = registry.get(name)
        assert (machine.identity, machine.state, len(machine.history)) == (running, 1, 1)
    done = registry.release([("left", running, V2, MIGRATE), ("right", running, V2, MIGRATE)])
    assert [u.machine for u in done] == ["left", "right"]
    assert registry.get("left").state == registry.get("right").state == (1, 0)


def test_release_duplicates_and_empty_are_refused() -> None:
    registry = _registry()
    running = registry.get("left").identity
    for items in ([], [("left", running, V2, MIGRATE)] * 2):
        with pytest.raises(UpgradeRejected, match="each once") as info:
            registry.release(items)
        assert info.value.code == "bad_request"


def test_a_release_of_two_machines_on_a_node_survives_a_restart(tmp_path: Path) -> None:
    """counter (migration derived) and breaker (migration written) swap together."""
    machines = {
        "counter": "hotswap.examples.counter:counter_sm",
        "breaker": "hotswap.examples.breaker:breaker_sm",
    }
    out = io.StringIO()
    node = MemoryNode(machines, data=tmp_path, trace=Trace("seed", out))
    with node, Client(transport=node.connection()) as client:
        client.send("counter", Incr())
        client.send("breaker", Call(now=5))
        with pytest.raises(UpgradeRejected, match="breaker: "):
            client.release(
                {
                    "counter": Upgrade(counter_sm, counter_sm2),
                    "breaker": Upgrade(counter_sm, breaker_sm2, upgrade_breaker),
                }
            )
        assert client.status("counter").identity == counter_sm.identity  # nothing changed
        reply = client.release(
            {
                "counter": Upgrade(counter_sm, counter_sm2),
                "breaker": Upgrade(breaker_sm, breaker_sm2, upgrade_breaker),
            }
        )
        assert [(e.machine, e.new) for e in reply.machines] == [
            ("breaker", breaker_sm2.identity),
            ("counter", counter_sm2.identity),
        ]
        lines = out.getvalue().splitlines()
        assert any(line.startswith("Release successful! breaker, counter") for line in lines)
        node.reopen()  # as after a crash: no checkpoint, recovery from the log
        with Client(transport=node.connection()) as again:
            assert again.status("counter").state == (1, 0)
            assert again.status("breaker").identity == breaker_sm2.identity


def test_cli_release(tmp_path: Path) -> None:
    machines = {
        "counter": "hotswap.examples.counter:counter_sm",
        "breaker": "hotswap.examples.breaker:breaker_sm",
    }
    with Served(tmp_path, machines) as node:
        result = run_cli(
            "release",
            "--node",
            node.address,
            "counter=hotswap.examples.counter:counter_sm2",
            "breaker=hotswap.examples.breaker:breaker_sm2",
            "--migration",
            "breaker=hotswap.examples.breaker:upgrade_breaker",
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Release successful! 2 machines swapped together:")
