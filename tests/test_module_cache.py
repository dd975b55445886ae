"""The module cache: keyed by identity, bounded in bytes; what a request loads off the event loop
is held for that request and cached only if a machine comes to run it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from hotswap.cam import loaded
from hotswap.cam.loaded import (
    DEFAULT_CACHE_BYTES,
    cache_usage,
    cost,
    is_loaded,
    load_module,
    preload,
    release,
    set_cache_bytes,
)
from hotswap.cam.module import encode_module
from hotswap.errors import DecodeError
from hotswap.examples import handbuilt


@pytest.fixture(autouse=True)
def small_cache() -> Iterator[None]:
    set_cache_bytes(0)  # empty
    set_cache_bytes(1 << 20)
    try:
        yield
    finally:
        set_cache_bytes(DEFAULT_CACHE_BYTES)


def _padded(tag: bytes, size: int, start: int = 0) -> bytes:
    """A counter counting from ``start`` (its identity), with a custom section."""
    module = handbuilt.counter_module(start)
    return encode_module(replace(module, custom=(("pad", tag + b"\0" * size),)))


def test_the_cache_holds_what_its_budget_allows_and_no_more() -> None:
    """Forty modules of 100 KB (a cost of about 200 KB each) in a cache of 1 MiB: it keeps the
    last few, by identity and bytes, and never more than its budget."""
    datas = [_padded(b"", 100_000, start) for start in range(40)]
    for data in datas:
        load_module(data)
        assert cache_usage()[1] <= 1 << 20
    modules, held = cache_usage()
    assert 2 <= modules <= 5 and held <= 1 << 20
    assert is_loaded(datas[-1]) and not is_loaded(datas[0])
    assert load_module(datas[-1]) is load_module(bytes(bytearray(datas[-1])))  # equal bytes
    assert cost(load_module(datas[-1])) >= 2 * 100_000  # the bytes and the section's copy


def test_modules_of_one_identity_with_other_names_are_other_modules() -> None:
    """One entry an identity: the module last loaded under it."""
    one, other = _padded(b"one", 10), _padded(b"other", 10)
    a, b = load_module(one), load_module(other)
    assert a.identity == b.identity and a is not b
    assert a.custom["pad"] != b.custom["pad"]
    assert load_module(other) is b and cache_usage()[0] == 1
    assert load_module(one) is not a  # loaded again: the entry was b's


def test_a_module_that_fails_to_load_is_not_cached() -> None:
    bad = encode_module(handbuilt.counter2_module())[:-1]
    for _ in range(2):
        with pytest.raises(DecodeError):
            load_module(bad)
    assert not is_loaded(bad)


def test_a_preloaded_module_is_held_for_its_request_then_dropped_unless_kept() -> None:
    refused, kept, bad = _padded(b"refused", 10), _padded(b"kept", 10), b"\0hsm\x01garbage"
    for data in (refused, kept, bad):
        preload(data)
        assert is_loaded(data)
    assert load_module(refused) is load_module(refused)
    with pytest.raises(DecodeError) as first:
        load_module(bad)
    with pytest.raises(DecodeError) as second:
        load_module(bad)  # not decoded again: the same error, at once
    assert first.value is second.value
    assert cache_usage()[0] == 0  # nothing held is cached
    release(refused)
    release(kept, keep=True)
    release(bad, keep=True)
    assert not is_loaded(refused) and is_loaded(kept) and not is_loaded(bad)
    assert cache_usage()[0] == 1
    assert all(held[0] not in (refused, kept, bad) for held in loaded._held.values())


def test_a_large_module_counts_as_loaded_only_as_the_very_bytes() -> None:
    """Finding the identity of 16 MiB would cost the event loop time: for a module of more
    than a megabyte ``is_loaded`` looks only for those bytes, and the worker thread, which
    does compute it, finds the cached module."""
    set_cache_bytes(DEFAULT_CACHE_BYTES)
    big = _padded(b"big", 2 << 20)
    module = load_module(big)
    assert is_loaded(big) and not is_loaded(bytes(bytearray(big)))
    copy = bytes(bytearray(big))
    preload(copy)
    assert load_module(copy) is module
    release(copy)


def test_a_small_module_received_again_is_found_by_its_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A module's bytes arriving again (a new object, as with each request) find the cached
    module by their content alone: its identity, a walk and a SHA-256, is not worked out
    again. Bytes of the same identity with other names are still another module, and a module
    the cache let go is not found."""
    data = _padded(b"a", 10)
    first = load_module(data)
    identities: list[bytes] = []
    real = loaded._identity

    def counted(d: bytes) -> str | None:
        identities.append(d)
        return real(d)

    monkeypatch.setattr(loaded, "_identity", counted)
    again = bytes(bytearray(data))  # equal bytes, another object
    assert again is not data
    assert is_loaded(again) and load_module(again) is first and identities == []
    other = _padded(b"b", 10)  # the same identity, another names section
    assert not is_loaded(other)
    assert load_module(other) is not first and load_module(other).identity == first.identity
    assert not is_loaded(bytes(bytearray(data)))  # replaced under its identity by ``other``
    set_cache_bytes(0)
    assert not is_loaded(bytes(bytearray(other))) and identities == []
