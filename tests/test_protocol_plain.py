"""The reader of large payloads (``protocol.plain``) agrees with the reference decoder: what it
returns is what cbor2 reads from the payload, the payload is what cbor2 writes for it, and
messages decode to the same events (or the same errors) whichever reads them."""

from __future__ import annotations

import time
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotswap.errors import RemoteProtocolError
from hotswap.protocol import codec
from hotswap.protocol.codec import MAX_NESTING, decode_schema, encode_message
from hotswap.protocol.events import Message, ModuleReply, UpgradeRequest
from hotswap.protocol.plain import NotPlain, TooManyItems, read_plain, write_plain
from test_protocol_properties import client_messages, mutations, server_messages

leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.floats(allow_nan=False)
    | st.binary(max_size=40)
    | st.text(max_size=8)
)
items = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (``True == 1`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def reference(payload: bytes) -> Any:
    return cbor2.loads(
        payload,
        max_depth=MAX_NESTING,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )


def judged_alike(payload: bytes) -> None:
    read = read_plain(payload)
    if read is None:
        return  # the reference decides
    assert same(read, reference(payload)), payload.hex()
    assert cbor2.dumps(read) == payload, payload.hex()


@given(items)
def test_what_it_reads_is_what_cbor2_reads(item: Any) -> None:
    judged_alike(cbor2.dumps(item))


@given(items.map(cbor2.dumps).flatmap(mutations))
def test_mutated_items_are_read_alike_or_left_to_the_reference(payload: bytes) -> None:
    judged_alike(payload)


@given((client_messages | server_messages).map(encode_message).flatmap(mutations))
def test_mutated_messages_are_read_alike_or_left_to_the_reference(payload: bytes) -> None:
    judged_alike(payload)


def decoded(payload: bytes, from_client: bool) -> Message | str:
    try:
        return decode_schema(payload, from_client=from_client)
    except RemoteProtocolError as e:
        return f"error: {e}"


@given(client_messages.map(encode_message).flatmap(mutations))
def test_messages_decode_alike_whichever_reads_them(payload: bytes) -> None:
    """A client's message is taken alike by both readers, and refused by both; a large one is
    refused by the reader of large payloads itself, in its own words (never cbor2's)."""
    expected = decoded(payload, True)
    before = codec.PLAIN_FROM
    codec.PLAIN_FROM = 0
    try:
        got = decoded(payload, True)
    finally:
        codec.PLAIN_FROM = before
    if isinstance(expected, str):
        assert isinstance(got, str) and got.startswith("error: "), (payload.hex(), got)
    else:
        assert got == expected, payload.hex()


def test_what_it_leaves_to_the_reference() -> None:
    declined: list[object] = [1.5, None, [[[[1]]]], {"a": {"b": {"c": {}}}}, {1: 2}]
    for item in [*declined, cbor2.CBORTag(2, b"")]:
        assert read_plain(cbor2.dumps(item)) is None
    assert read_plain(b"\x18\x05") is None  # 5 in two bytes
    assert read_plain(b"\x5f\x41a\xff") is None  # an indefinite byte string
    assert read_plain(cbor2.dumps({"a": 1}) + b"\x00") is None  # trailing bytes
    assert read_plain(b"\xa2\x61a\x01\x61a\x02") is None  # a repeated key
    assert read_plain(b"\x62\xc3\x28") is None  # invalid UTF-8
    assert read_plain(b"\x9b" + b"\xff" * 8) is None  # a count no payload holds


@pytest.mark.parametrize("size", [16 * 1024 * 1024])
def test_an_upgrade_at_the_size_limits_decodes_in_a_few_copies(size: int) -> None:
    """Two 16 MiB modules: about as long as copying them (cbor2 took 95 ms here, 25 ms now)."""
    module, migration = b"m" * size, b"g" * size
    payload = encode_message(UpgradeRequest(1, "abacus", "0" * 64, module, migration))
    started = time.perf_counter()
    event = decode_schema(payload, from_client=True)
    took = time.perf_counter() - started
    assert isinstance(event, UpgradeRequest) and event.module == module
    started = time.perf_counter()
    _ = module[1:] + migration[1:]
    copies = time.perf_counter() - started
    assert took < 4 * copies + 0.01, (took, copies)


plain_items = st.recursive(
    st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@given(plain_items)
def test_what_it_writes_is_what_cbor2_writes(item: Any) -> None:
    written = write_plain(item)
    if _depth(item) <= 3:
        assert written == cbor2.dumps(item)
    else:
        assert written is None


@given(items)
def test_what_it_does_not_write_cbor2_writes_instead(item: Any) -> None:
    written = write_plain(item)
    assert written is None or written == cbor2.dumps(item)


def _depth(item: Any) -> int:
    if isinstance(item, dict):
        return 1 + max((_depth(v) for v in item.values()), default=0)
    if isinstance(item, list):
        return 1 + max((_depth(v) for v in item), default=0)
    return 0


def test_a_large_reply_is_written_as_cbor2_writes_it() -> None:
    reply = ModuleReply(7, b"m" * (1 << 20))
    payload = encode_message(reply)
    assert cbor2.dumps(cbor2.loads(payload)) == payload
    assert decode_schema(payload, from_client=False) == reply


def test_a_limit_refuses_past_that_many_items_and_counts_at_the_head() -> None:
    payload = cbor2.dumps({"a": [1, 2, 3], "b": "x"})  # 8 items: map, 2 keys, array, 3, text
    assert read_plain(payload, 8) == {"a": [1, 2, 3], "b": "x"}
    with pytest.raises(TooManyItems):
        read_plain(payload, 7)
    # a count past the budget is refused from its head, before any of its contents is read
    # (tags here, which would be declined if they were)
    with pytest.raises(TooManyItems):
        read_plain(b"\x99" + (1000).to_bytes(2, "big") + b"\xc0" * 1000, 100)


def test_strict_refuses_what_it_would_leave_to_the_reference_saying_why() -> None:
    cases = {
        cbor2.dumps(1.5): "a float",
        cbor2.dumps(0.0): "a float",  # a double of zero: said to be a float, not a long head
        b"\x18\x05": "shortest form",
        cbor2.dumps({"a": 1}) + b"\x00": "trailing",
        b"\xa2\x61a\x01\x61a\x02": "repeats the key 'a'",
        b"\x62\xc3\x28": "UTF-8",
        cbor2.dumps(cbor2.CBORTag(2, b"")): "a tag",
        cbor2.dumps({1: 2}): "not a text",
        cbor2.dumps([[[[1]]]]): "nests deeper",
        b"\x9b" + b"\xff" * 8: "ends inside",
    }
    for payload, why in cases.items():
        with pytest.raises(NotPlain, match=why):
            read_plain(payload, strict=True)


def test_a_client_message_of_too_many_items_is_refused_whatever_its_size() -> None:
    """Below the size read by the reader of large payloads too: the same limit, by count."""
    items = [{"machine": "m", "expected": "0" * 64, "module": b"", "migration": b""}] * 2000
    payload = cbor2.dumps({"id": 1, "type": "release", "items": items})
    assert len(payload) < codec.PLAIN_FROM
    with pytest.raises(RemoteProtocolError, match="too many items"):
        decode_schema(payload, from_client=True)
    items = items[: codec.MAX_ITEMS // 9 - 1]  # 9 items each, and 6 for the rest
    payload = cbor2.dumps({"id": 1, "type": "release", "items": items})
    with pytest.raises(RemoteProtocolError) as refused:
        decode_schema(payload, from_client=True)
    assert "too many items" not in str(refused.value)  # refused for its order, not its size
