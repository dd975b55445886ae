"""Inputs stay compatible across versions: encoded by name for the code that runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hotswap.cam.build import machine_module
from hotswap.cam.module import encode_module
from hotswap.client import Client, Upgrade
from hotswap.dsl import Machine, RecordSchema, UnionSchema, compile_source
from hotswap.errors import NodeError, ValueTypeError
from hotswap.examples import handbuilt
from hotswap.examples.counter import Count, Incr, counter_sm
from hotswap.lang.terms import DISTL, FST, SND, Case, Fanout, Lit, compose
from hotswap.lang.types import INT
from hotswap.node.memory import MemoryNode
from hotswap.protocol import Error, Output, SendChecked
from hotswap.protocol.codec import decode_message, encode_message

#: The counter with its inputs declared the other way round: Count | Incr, plus a Reset.
_COMPILED = compile_source(
    """
@dataclass(frozen=True)
class Reset:
    pass

@dataclass(frozen=True)
class Count:
    pass

@dataclass(frozen=True)
class Incr:
    pass

@machine(init=0)
def counter_v3(inp: Count | Reset | Incr, state: int) -> tuple[int, None | int]:
    match inp:
        case Incr():
            return state + 1, None
        case Count():
            return state, state
        case Reset():
            return 0, None
"""
)["counter_v3"]
assert isinstance(_COMPILED, Machine)
REORDERED = _COMPILED


def test_send_checked_round_trips() -> None:
    event = SendChecked(5, "counter", "c" * 64, b"\x00")
    assert decode_message(encode_message(event), from_client=True) == event


def test_an_old_client_keeps_working_after_another_reorders_the_inputs(tmp_path: Path) -> None:
    """Client A encoded Incr for v1 (left of Incr | Count); B upgrades to Count | Reset | Incr,
    where the same bytes would mean Count. The node refuses A's stale encoding, A re-encodes
    Incr by name, and the counter counts."""
    spec = {"counter": "hotswap.examples.counter:counter_sm"}
    with MemoryNode(spec) as node, Client(transport=node.connection()) as a:
        a.session.remember(counter_sm)
        assert a.send("counter", Incr()) is None
        with Client(transport=node.connection()) as b:
            b.upgrade("counter", Upgrade(counter_sm, REORDERED))
        assert a.send("counter", Incr()) is None  # refused once as stale, then re-encoded
        assert a.send("counter", Count()) == 2
        stale = a.request(SendChecked(a.session.request_id(), "counter", counter_sm.identity, b""))
        assert isinstance(stale, Error) and stale.code == "wrong_version"
        assert "re-encode it for the running code" in stale.message
        raw = a.send_raw("counter", b"\x00")  # plain send: no check, the bytes mean Count now
        assert isinstance(raw, Output) and raw.state == b"\x02"


def test_a_name_the_new_code_lacks_is_refused_clearly(tmp_path: Path) -> None:
    """A variant the running code lacks is a clear conversion error, never a wrong input."""
    spec = {"counter": "hotswap.examples.counter:counter_sm"}
    with MemoryNode(spec) as node, Client(transport=node.connection()) as client:
        client.upgrade("counter", Upgrade(counter_sm, REORDERED))
        inputs = REORDERED.input_schema
        assert isinstance(inputs, UnionSchema)
        reset = inputs.alternatives[1]
        assert isinstance(reset, RecordSchema) and reset.cls is not None
        client.send("counter", reset.cls())
        client.upgrade("counter", Upgrade(REORDERED, counter_sm))
        with pytest.raises(ValueTypeError, match=re.escape("expected Incr | Count")):
            client.send("counter", reset.cls())


def test_a_new_variant_is_found_after_an_upgrade_made_elsewhere(tmp_path: Path) -> None:
    """A value that does not convert for the cached code makes the client look again."""
    spec = {"counter": "hotswap.examples.counter:counter_sm"}
    with MemoryNode(spec) as node, Client(transport=node.connection()) as a:
        a.session.remember(counter_sm)
        a.send("counter", Incr())
        with Client(transport=node.connection()) as b:
            b.upgrade("counter", Upgrade(counter_sm, REORDERED))
        inputs = REORDERED.input_schema
        assert isinstance(inputs, UnionSchema)
        reset = inputs.alternatives[1]
        assert isinstance(reset, RecordSchema) and reset.cls is not None
        assert a.send("counter", reset.cls()) is None
        assert a.send("counter", Count()) == 0


def test_without_names_a_stale_input_is_refused_not_reinterpreted(tmp_path: Path) -> None:
    """Machines built from terms carry no names: after another client swaps what the input
    bytes mean, the stale input is refused (wrong_version) rather than resent unchanged."""
    swapped = encode_module(
        machine_module(
            handbuilt.COUNTER_INPUT,
            INT,
            handbuilt.COUNTER_OUTPUT,
            Lit(0),
            compose(Fanout(SND, FST), DISTL, Case(handbuilt._count, handbuilt._incr)),
        )
    )
    spec = {"counter": "hotswap.examples.handbuilt:counter_module"}
    with MemoryNode(spec) as node, Client(transport=node.connection()) as a:
        a.send("counter", (0, ()))  # Incr, for the running code
        with Client(transport=node.connection()) as b:
            running = b.status_raw("counter").identity
            b.upgrade("counter", Upgrade(running, swapped))
        with pytest.raises(NodeError) as info:
            a.send("counter", (0, ()))
        assert info.value.code == "wrong_version"
        assert a.status("counter").state == 1  # nothing ran
