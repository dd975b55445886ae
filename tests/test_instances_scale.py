"""Keyed instances at scale, against a real node process: 6,000 instances made by their
inputs (100,000 in CI, after `make test`: ``HOTSWAP_SCALE_COUNT``, a multiple of 2,000), two
upgrades with migrations (one that traps on some), inputs to half of them between the
upgrades, a SIGKILL in the middle; then every instance reads back exactly what its own
inputs give through the plain Python functions: v1, the migrations, v2 and v3. Instances that
slept through both upgrades migrate through both; those whose migration traps stay on v1 with
their state, and are counted so."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hotswap.cam.values import decode_value, encode_value
from hotswap.client import Client, Upgrade, connect
from hotswap.protocol.events import Error, Output, Send, Status, StatusReply
from instance_machines import (
    Add,
    Tally3,
    tally_v1,
    tally_v2,
    tally_v3,
    v1_to_v2,
    v2_to_v3,
)
from nodeproc import NodeProcess

TESTS = Path(__file__).parent
#: 6,000 keeps `make test` within its three minutes; `.ci/run` runs it again with 100,000.
COUNT = int(os.environ.get("HOTSWAP_SCALE_COUNT", "6000"))
BATCH = 2_000
assert COUNT % BATCH == 0, "HOTSWAP_SCALE_COUNT is a multiple of 2,000"


def _amount(i: int) -> int:
    """Each instance's first input; 13 (its v1 -> v2 migration traps) for one in a thousand."""
    return 13 if i % 1000 == 0 else 14 + i % 50


def _batches(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _send_all(c: Client, inputs: list[tuple[str, Add]]) -> list[object]:
    signature = tally_v1.loaded.machine
    assert signature is not None
    encode = {n: encode_value(tally_v1.to_core_input(Add(n)), signature.input) for n in range(80)}
    replies: list[object] = []
    rid = 1_000_000
    for batch in _batches(inputs):
        events = []
        for key, add in batch:
            rid += 1
            events.append(Send(rid, "tally", encode[add.n], False, key))
        replies += c.pipeline(events)
    return replies


@pytest.mark.long
def test_many_instances_migrate_lazily_through_two_upgrades(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    machines = {"tally": "instance_machines:tally_v1"}
    keys = [f"user-{i:06}" for i in range(COUNT)]
    node = NodeProcess(tmp_path, machines, "--trace", "off", "--sweep-rate", "0")
    try:
        with connect(node.address, machines=[tally_v1, tally_v2, tally_v3]) as c:
            made = _send_all(c, [(k, Add(_amount(i))) for i, k in enumerate(keys)])
            assert all(isinstance(r, Output) for r in made)
            c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2))
            # half the instances get an input on v2: they migrate now (or trap, on v1 at 13)
            half = _send_all(c, [(k, Add(1)) for i, k in enumerate(keys) if i % 2 == 0])
            trapped = [r for r in half if isinstance(r, Error)]
            assert len(trapped) == COUNT // 1000 and all(
                r.code == "migration_trap" for r in trapped
            )
    finally:
        node.kill()  # SIGKILL: every acknowledged input must be back
    again = NodeProcess(tmp_path, machines, "--trace", "off", "--sweep-rate", "0")
    with again, connect(again.address, machines=[tally_v1, tally_v2, tally_v3]) as c:
        c.upgrade("tally", Upgrade(tally_v2, tally_v3, v2_to_v3))
        status = c.status("tally")
        assert status.instances == COUNT
        v1_state = tally_v1.loaded.machine
        v3_state = tally_v3.loaded.machine
        assert v1_state is not None and v3_state is not None
        expected: dict[tuple[int, bool], tuple[str, bytes]] = {}

        def want(i: int) -> tuple[str, bytes]:
            """The identity and state bytes instance ``i`` must have (one computation per
            distinct case, through the plain Python functions)."""
            case = (_amount(i), i % 2 == 0)
            if case not in expected:
                amount, touched = case
                if amount == 13:  # its migration traps: on v1, with its v1 state
                    core = tally_v1.to_core_state(13)
                    expected[case] = (tally_v1.identity, encode_value(core, v1_state.state))
                else:
                    v2 = v1_to_v2(amount)
                    if touched:  # one more input, on v2
                        v2, _ = tally_v2(Add(1), v2)
                    core = tally_v3.to_core_state(v2_to_v3(v2))
                    expected[case] = (tally_v3.identity, encode_value(core, v3_state.state))
            return expected[case]

        wrong = []
        for start in range(0, COUNT, BATCH):
            events = [Status(start + j, "tally", keys[start + j]) for j in range(BATCH)]
            for j, reply in enumerate(c.pipeline(events)):
                assert isinstance(reply, StatusReply), reply
                if (reply.identity, reply.state) != want(start + j):
                    wrong.append(keys[start + j])
        assert wrong == []
        counts = {x.identity: x.instances for x in c.status("tally").codes}
        assert counts == {
            tally_v3.identity: COUNT - COUNT // 1000,
            tally_v1.identity: COUNT // 1000,
        }
        some = decode_value(want(3)[1], v3_state.state)
        assert tally_v3.from_core_state(some) == Tally3(17, 1000 // 4, 3)  # the oracle is sane
