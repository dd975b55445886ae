"""The registry's pure rules: inputs, traps, and upgrades that change everything or nothing."""

from __future__ import annotations

import pytest

from hotswap.cam.build import machine_module, migration_module
from hotswap.cam.loaded import load
from hotswap.cam.module import encode_module
from hotswap.errors import NodeError, UpgradeRejected
from hotswap.examples import handbuilt
from hotswap.lang.terms import FST, ID, SND, Fanout, Lit, Op, Prim, compose
from hotswap.lang.types import INT, Prod
from hotswap.node.registry import Registry

INCR, COUNT = b"\x00", b"\x01"
V2 = encode_module(handbuilt.counter2_module())
MIGRATE = encode_module(handbuilt.upgrade_state_module())


def _registry() -> Registry:
    registry = Registry()
    registry.start("counter", load(handbuilt.counter_module()), now=0.0)
    return registry


def _snapshot(registry: Registry) -> tuple[object, ...]:
    m = registry.get("counter")
    return (m.identity, m.state, m.inputs, tuple(m.history))


def test_inputs_step_the_state_and_count() -> None:
    """Each input moves the state; outputs are the machine's."""
    registry = _registry()
    assert registry.step("counter", INCR).output == (0, ())
    assert registry.step("counter", COUNT).output == (1, 1)
    assert registry.get("counter").inputs == 2


def test_a_trap_leaves_the_state_unchanged() -> None:
    """Overflow in a step is refused with code trap; state and count stay."""
    registry = _registry()
    machine = registry.get("counter")
    machine.state = 2**63 - 1
    with pytest.raises(NodeError, match="overflow") as info:
        registry.step("counter", INCR)
    assert info.value.code == "trap"
    assert machine.state == 2**63 - 1 and machine.inputs == 0


@pytest.mark.parametrize("data", [b"", b"\x02", b"\x00\x00", b"\xff"])
def test_undecodable_input_is_bad_input(data: bytes) -> None:
    registry = _registry()
    with pytest.raises(NodeError) as info:
        registry.step("counter", data)
    assert info.value.code == "bad_input"


def test_unknown_machine_names_the_known_ones() -> None:
    with pytest.raises(NodeError, match=r"no machine 'nope' \(known: counter\)"):
        _registry().step("nope", INCR)


def test_upgrade_migrates_then_swaps() -> None:
    """The seed's upgrade: state n becomes (n, 0); the history records it."""
    registry = _registry()
    registry.step("counter", INCR)
    done = registry.upgrade("counter", load(handbuilt.counter_module()).identity, V2, MIGRATE)
    machine = registry.get("counter")
    assert machine.state == (1, 0) and done.old != done.new.identity
    assert [c.kind for c in machine.history] == ["start", "upgrade"]
    assert machine.history[-1].seq == 1
    assert registry.step("counter", INCR).state == (1, 1)


def _trapping_migration() -> bytes:
    divide = compose(Fanout(ID, Lit(0)), Prim(Op.FLOORDIV))
    return encode_module(migration_module(INT, Prod(INT, INT), Fanout(divide, Lit(0))))


def _other_machine() -> bytes:
    step = Fanout(SND, compose(FST, FST))
    return encode_module(machine_module(Prod(INT, INT), INT, INT, Lit(0), step))


@pytest.mark.parametrize(
    ("expected", "module", "migration", "code"),
    [
        ("0" * 64, V2, MIGRATE, "wrong_version"),
        (None, V2, encode_module(migration_module(INT, INT, ID)), "ill_typed_upgrade"),
        (None, _other_machine(), MIGRATE, "ill_typed_upgrade"),
        (None, V2, _trapping_migration(), "migration_trap"),
        (None, V2[:-1], MIGRATE, "bad_module"),
        (None, b"", MIGRATE, "bad_module"),
        (None, V2, MIGRATE[:-1], "bad_module"),
        (None, MIGRATE, MIGRATE, "bad_module"),
        (None, V2, V2, "bad_module"),
    ],
)
def test_rejected_upgrade_changes_nothing(
    expected: str | None, module: bytes, migration: bytes, code: str
) -> None:
    """Every failed check leaves code, state, count and history exactly as they were."""
    registry = _registry()
    registry.step("counter", INCR)
    before = _snapshot(registry)
    running = registry.get("counter").identity
    with pytest.raises(UpgradeRejected) as info:
        registry.upgrade("counter", expected or running, module, migration)
    assert info.value.code == code
    assert _snapshot(registry) == before


def test_wrong_version_message_is_the_seeds() -> None:
    registry = _registry()
    with pytest.raises(UpgradeRejected, match="The version running isn't the one the upgrade"):
        registry.upgrade("counter", "0" * 64, V2, MIGRATE)


def test_an_input_encoded_for_other_code_is_refused() -> None:
    """With the identity it was encoded for, a stale input is refused, not misread."""
    registry = _registry()
    running = registry.get("counter").identity
    assert registry.step("counter", INCR, running).state == 1
    with pytest.raises(NodeError, match="re-encode it for the running code") as info:
        registry.step("counter", INCR, "0" * 64)
    assert info.value.code == "wrong_version"
    assert registry.get("counter").inputs == 1
