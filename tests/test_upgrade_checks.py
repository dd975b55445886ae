"""Upgrades that look right but are not: replays, migrations for other machines, and what a
refusal tells a program (protocol version 2), against the registry and an in-memory node."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cbor2
import pytest

from hotswap.cam.build import migration_module
from hotswap.cam.loaded import load_module
from hotswap.cam.module import encode_module
from hotswap.client import Client, Upgrade
from hotswap.dsl import machine, migration
from hotswap.errors import HotswapError, NodeError, StepTrapped, Trap, UpgradeRejected
from hotswap.examples import handbuilt
from hotswap.examples.counter import Incr, counter_sm, counter_sm2, downgrade_state, upgrade_state
from hotswap.lang.terms import ID
from hotswap.node.memory import MemoryNode
from hotswap.node.registry import Registry
from hotswap.node.service import Conversation
from hotswap.protocol import ClientConnection, Hello
from hotswap.protocol.codec import decode_message
from hotswap.protocol.events import (
    NEED_DATA,
    Error,
    ErrorCode,
    Send,
    Status,
    StatusReply,
    Welcome,
)


@dataclass(frozen=True)
class Use:
    amount: int


@dataclass(frozen=True)
class Quota:
    used: int
    limit: int


@dataclass(frozen=True)
class QuotaV2:
    used: int
    limit: int
    warned: int


@machine(init=Quota(0, 10))
def quota_v1(inp: Use, state: Quota) -> tuple[Quota, int]:
    return Quota(state.used + inp.amount, state.limit), state.limit - state.used


@machine(init=QuotaV2(0, 10, 0))
def quota_v2(inp: Use, state: QuotaV2) -> tuple[QuotaV2, int]:
    return QuotaV2(state.used + inp.amount, state.limit, state.warned), state.limit - state.used


@migration(quota_v1, quota_v2)
def quota_up(old: Quota) -> QuotaV2:
    return QuotaV2(old.used, old.limit, 0)


@dataclass(frozen=True)
class Reading:
    celsius: int


@dataclass(frozen=True)
class Temp:
    last: int
    peak: int


@dataclass(frozen=True)
class TempV2:
    last: int
    peak: int
    count: int


@machine(init=Temp(0, 0))
def temp_v1(inp: Reading, state: Temp) -> tuple[Temp, int]:
    return Temp(inp.celsius, max(state.peak, inp.celsius)), state.peak


@machine(init=TempV2(0, 0, 0))
def temp_v2(inp: Reading, state: TempV2) -> tuple[TempV2, int]:
    peak = max(state.peak, inp.celsius)
    return TempV2(inp.celsius, peak, state.count + 1), state.peak


def _registry(module: bytes) -> Registry:
    registry = Registry()
    registry.start("m", load_module(module))
    return registry


def test_the_same_layout_under_other_names_is_refused_by_the_node() -> None:
    """A migration written for quota machines fits a thermometer's layout exactly; before,
    the node accepted it and turned readings into quotas."""
    registry = _registry(temp_v1.module)
    with pytest.raises(UpgradeRejected, match="names do not match") as info:
        registry.upgrade("m", temp_v1.identity, temp_v2.module, quota_up.module)
    assert info.value.code == "ill_typed_upgrade"
    assert "Quota" in info.value.reason and "Temp" in info.value.reason
    assert registry.get("m").identity == temp_v1.identity  # nothing changed


def test_a_rename_is_accepted_when_it_says_so_and_noted() -> None:
    registry = _registry(temp_v1.module)
    swap = registry.upgrade("m", temp_v1.identity, temp_v2.module, quota_up.module, rename=True)
    assert any(note.startswith("renamed: ") for note in swap.notes)
    assert registry.get("m").identity == temp_v2.identity


def test_the_client_refuses_a_migration_declared_for_other_machines() -> None:
    with MemoryNode({"t": temp_v1}) as node, Client(transport=node.connection()) as client:
        with pytest.raises(UpgradeRejected, match=r"declared @migration\(quota_v1, quota_v2\)"):
            client.upgrade("t", Upgrade(temp_v1, temp_v2, quota_up))
        assert client.status("t").identity == temp_v1.identity


def test_an_old_upgrade_replayed_after_the_code_came_back_is_refused() -> None:
    """v1 -> v2 -> v1 (generation 2): the first upgrade, made at generation 0, applied again
    before; now the node refuses it and says where the machine is."""
    with MemoryNode({"c": counter_sm}) as node, Client(transport=node.connection()) as client:
        first = Upgrade(counter_sm, counter_sm2, upgrade_state, generation=0)
        assert client.upgrade("c", first).generation == 1
        client.upgrade("c", Upgrade(counter_sm2, counter_sm, downgrade_state, generation=1))
        with pytest.raises(UpgradeRejected) as info:
            client.upgrade("c", first)
        assert info.value.code == "wrong_version"
        assert (info.value.running, info.value.generation) == (counter_sm.identity, 2)
        assert client.status("c").identity == counter_sm.identity


def test_wrong_version_says_what_runs_as_fields() -> None:
    with MemoryNode({"c": counter_sm}) as node, Client(transport=node.connection()) as client:
        with pytest.raises(UpgradeRejected) as info:
            client.upgrade("c", Upgrade(counter_sm2, counter_sm2, upgrade_state.module))
        assert (info.value.running, info.value.generation) == (counter_sm.identity, 0)


def test_a_trapped_step_is_a_trap_with_its_kind() -> None:
    with MemoryNode({"c": counter_sm}) as node:
        node.service.registry.get("c").state = 2**63 - 1  # the next Incr overflows
        with Client(transport=node.connection()) as client, pytest.raises(StepTrapped) as info:
            client.send("c", Incr())
    assert isinstance(info.value, Trap) and isinstance(info.value, NodeError)
    assert info.value.kind == "overflow" and info.value.code == "trap"


def _v1_exchange(node: MemoryNode, *requests: object) -> list[object]:
    """Requests from a version 1 client, replies decoded as version 1 decodes them."""
    conversation, client = Conversation(node.service), ClientConnection()
    client.receive_data(b"".join(conversation.receive(client.send(Hello(version=1))).replies))
    welcome = client.next_event()
    assert isinstance(welcome, Welcome) and welcome.version == 1
    fed = conversation.receive(b"".join(client.send(r) for r in requests))  # type: ignore[arg-type]
    client.receive_data(b"".join(fed.replies))
    events: list[object] = []
    while (event := client.next_event()) is not NEED_DATA:
        events.append(event)
    assert client.version == 1
    return events


def test_a_version_1_client_gets_version_1_replies() -> None:
    """No version 2 field reaches a version 1 client: its strict decoder would refuse it."""
    with MemoryNode({"c": handbuilt.counter_module}) as node:
        node.service.registry.get("c").state = 2**63 - 1
        status, trapped = _v1_exchange(node, Status(1, "c"), Send(2, "c", b"\x00"))
    assert isinstance(status, StatusReply) and status.generation is None
    assert isinstance(trapped, Error) and trapped.code == ErrorCode.TRAP
    assert trapped.trap is None


def test_version_2_fields_are_refused_on_a_version_1_connection() -> None:
    payload = bytes.fromhex("a5") + b"".join(
        cbor2.dumps(x)
        for x in ("id", 8, "code", "trap", "trap", "overflow", "type", "error", "message", "m")
    )
    with pytest.raises(HotswapError, match="unknown field"):
        decode_message(payload, from_client=False, version=1)
    assert decode_message(payload, from_client=False, version=2) == Error(
        8, ErrorCode.TRAP, "m", trap="overflow"
    )


def test_a_default_value_must_be_left_out() -> None:
    item = {"id": 1, "new": "a" * 64, "old": "b" * 64, "type": "upgraded", "notes": []}
    with pytest.raises(HotswapError, match="default value"):
        decode_message(cbor2.dumps(item), from_client=False)


def test_handbuilt_modules_without_names_are_not_name_checked() -> None:
    registry = _registry(encode_module(handbuilt.counter_module()))
    v2 = encode_module(handbuilt.counter2_module())
    mig = encode_module(handbuilt.upgrade_state_module())
    swap = registry.upgrade("m", registry.get("m").identity, v2, mig)
    assert swap.notes == ()


@dataclass(frozen=True)
class Tally:
    used: int


@dataclass(frozen=True)
class Item:
    sku: int
    qty: int


@dataclass(frozen=True)
class TallyV2:
    used: int
    cap: int = 100
    last: Item | None = None


@machine(init=Tally(0))
def tally_v1(inp: Use, state: Tally) -> tuple[Tally, int]:
    return Tally(state.used + inp.amount), state.used


@machine(init=TallyV2(0))
def tally_v2(inp: Use, state: TallyV2) -> tuple[TallyV2, int]:
    return TallyV2(state.used + inp.amount, state.cap, state.last), state.cap - state.used


def test_a_derived_migration_uses_the_new_types_defaults_and_says_so() -> None:
    """`cap: int = 100` came out as 0 and `last: Item | None = None` as a phantom Item(0, 0)."""
    with MemoryNode({"t": tally_v1}) as node, Client(transport=node.connection()) as client:
        client.send("t", Use(7))
        reply = client.upgrade("t", Upgrade(tally_v1, tally_v2))
        assert client.status("t").state == TallyV2(7, 100, None)
    assert "derived: TallyV2.cap: new field, set to 100 (its default)" in reply.notes


@dataclass(frozen=True)
class Gauge:
    low: int
    high: int


@dataclass(frozen=True)
class Span:
    start: int
    end: int


@machine(init=Gauge(0, 0))
def gauge(inp: Use, state: Gauge) -> tuple[Gauge, int]:
    return Gauge(state.low, state.high + inp.amount), state.low


@machine(init=Span(0, 0))
def span(inp: Use, state: Span) -> tuple[Span, int]:
    return Span(state.start, state.end + inp.amount), state.start


def test_two_machines_of_one_code_under_other_names_are_refused(tmp_path: Path) -> None:
    """An identity covers code, not names, and the node keeps one module per identity: a
    `span` next to a `gauge` of the same code was shown (and name-checked) as a Gauge."""
    assert gauge.identity == span.identity and gauge.module != span.module
    with pytest.raises(NodeError, match="same code as machine 'g' runs, with other names"):
        MemoryNode({"g": gauge, "s": span}, data=tmp_path / "a")
    same = load_module(gauge.module).machine
    assert same is not None
    keep = encode_module(migration_module(same.state, same.state, ID))
    with MemoryNode({"g": gauge, "h": gauge}, data=tmp_path / "b") as node:
        node.reopen()  # and from the store, after a restart
        with Client(transport=node.connection()) as client:
            with pytest.raises(UpgradeRejected, match="other names") as info:
                client.upgrade("g", Upgrade(gauge, span, keep, rename=True))
            assert info.value.code == "bad_module"
            assert client.code(gauge.identity).data == gauge.module


def test_a_machine_that_renames_its_types_keeps_the_new_names(tmp_path: Path) -> None:
    """Same code, other names, one machine: the node keeps the names it was last given, also
    for clients that fetch the module and after a restart."""
    same = load_module(gauge.module).machine
    assert same is not None
    keep = encode_module(migration_module(same.state, same.state, ID))
    with MemoryNode({"g": gauge}, data=tmp_path) as node:
        with Client(transport=node.connection()) as client:
            client.upgrade("g", Upgrade(gauge, span, keep, rename=True))
        node.reopen()
        with Client(transport=node.connection()) as client:
            assert client.code(gauge.identity).data == span.module
            assert client.status("g").state == Span(0, 0)


def test_an_upgrade_for_other_code_is_refused_before_its_modules_are_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two modules at the size limits with the wrong expected identity froze every client
    while the node decoded, verified and compiled them, only to refuse the upgrade."""
    import hotswap.node.registry as registry_module  # noqa: PLC0415

    loaded: list[int] = []
    real = load_module

    def counting(data: bytes) -> object:
        loaded.append(len(data))
        return real(data)

    registry = _registry(counter_sm.module)
    monkeypatch.setattr(registry_module, "load_module", counting)
    with pytest.raises(UpgradeRejected) as info:
        registry.upgrade("m", counter_sm2.identity, b"\x00" * 100_000, b"\x00" * 100_000)
    assert info.value.code == "wrong_version" and loaded == []
    registry.upgrade("m", counter_sm.identity, counter_sm2.module, upgrade_state.module)
    assert loaded  # an upgrade for the running code does load them
