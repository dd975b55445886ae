"""Tests for hotswap.protocol.framing: length prefixes, limits, reassembly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotswap.errors import RemoteProtocolError
from hotswap.protocol.framing import FrameReader, frame


def test_frame_prefixes_a_big_endian_length() -> None:
    """A frame is the payload's length in four big-endian bytes, then the payload."""
    assert frame(b"\xa0") == b"\x00\x00\x00\x01\xa0"
    assert frame(bytes(0x01_02_03))[:4] == b"\x00\x01\x02\x03"


def test_reader_returns_frames_in_order() -> None:
    """Several frames arriving in one chunk come out one by one, then None."""
    reader = FrameReader(100)
    reader.feed(frame(b"one") + frame(b"two") + frame(b"three")[:5])
    assert reader.next_frame() == b"one"
    assert reader.next_frame() == b"two"
    assert reader.next_frame() is None
    assert reader.buffered == 5


@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=6), st.data())
def test_reader_reassembles_frames_split_anywhere(
    payloads: list[bytes], data: st.DataObject
) -> None:
    """However the byte stream is cut into chunks, the same payloads come out."""
    stream = b"".join(frame(payload) for payload in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = FrameReader(100)
    received: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        reader.feed(stream[start:end])
        while (payload := reader.next_frame()) is not None:
            received.append(payload)
    assert received == payloads
    assert reader.buffered == 0


def test_oversized_length_is_rejected_before_the_body() -> None:
    """Four bytes announcing too long a frame are enough to fail; no body is awaited."""
    reader = FrameReader(1000)
    reader.feed(b"\x00\x00\x03")
    assert reader.next_frame() is None
    reader.feed(b"\xe9")  # 1001
    with pytest.raises(RemoteProtocolError, match="frame length 1001 exceeds the limit of 1000"):
        reader.next_frame()


def test_frame_at_the_limit_is_accepted() -> None:
    """The limit is inclusive."""
    reader = FrameReader(10)
    reader.feed(frame(bytes(10)))
    assert reader.next_frame() == bytes(10)


def test_empty_frame_is_rejected() -> None:
    """A zero length cannot carry a map."""
    reader = FrameReader(10)
    reader.feed(b"\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError, match="frame length is 0"):
        reader.next_frame()


def test_a_stranger_speaking_http_is_named() -> None:
    """An HTTP request read as a length is huge, and the message shows its text."""
    reader = FrameReader(4096)
    reader.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(
        RemoteProtocolError, match=r"reads b'GET ': is the peer speaking the hotswap protocol"
    ):
        reader.next_frame()


def test_truncated_tells_whether_input_ended_inside_a_frame() -> None:
    """After close, leftover bytes mean the peer cut a frame short."""
    reader = FrameReader(10)
    reader.feed(frame(b"ab")[:3])
    assert not reader.truncated
    reader.close()
    assert reader.truncated
    empty = FrameReader(10)
    empty.close()
    assert not empty.truncated
