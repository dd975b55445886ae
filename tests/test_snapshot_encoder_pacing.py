"""The background snapshot's yielding encoder (``value_encoder(t, yielding=True)``)
gives the interpreter up once every 256 elements of the value, not once per list or map.

It slept at the first element of every list and map it met, so a state of many small
collections (a map of a million entries whose values are short lists or small maps: a cart
per user, a set of tags per key) slept once per entry: 200,000 entries of 3-element lists
took 39 s to encode where the loop's encoder takes 0.5 s, and the machine stayed due (every
commit a full one, the log held behind the previous snapshot) all that time."""

from __future__ import annotations

import time

import pytest

from hotswap.cam import values
from hotswap.lang.persistent import OMap, bulk, make_list
from hotswap.lang.types import INT, STR, ListT, MapT, Prod


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every ``time.sleep`` the encoder makes, recorded instead of slept."""
    seen: list[float] = []
    monkeypatch.setattr(time, "sleep", seen.append)
    return seen


def test_many_small_collections_pause_by_their_elements_not_one_each(
    sleeps: list[float],
) -> None:
    t = MapT(INT, ListT(INT))
    n = 20_000
    with bulk():
        value = OMap((k, make_list((k, k + 1))) for k in range(n))
    data = values.value_encoder(t, yielding=True)(value)
    assert data == values.value_encoder(t)(value)
    elements = 3 * n  # the map's entries and their lists' elements
    assert len(sleeps) <= elements // 256 + 2  # was one a list: 20,001


def test_small_maps_in_a_map_pause_by_their_elements(sleeps: list[float]) -> None:
    t = MapT(STR, Prod(MapT(STR, INT), INT))
    n = 5_000
    with bulk():
        value = OMap((f"user-{k}", (OMap([("a", k), ("b", -k)]), k)) for k in range(n))
    data = values.value_encoder(t, yielding=True)(value)
    assert data == values.value_encoder(t)(value)
    assert len(sleeps) <= 3 * n // 256 + 2  # was 5,001


def test_large_collections_still_pause_every_256_elements(sleeps: list[float]) -> None:
    """What the pauses are for: a large collection, at the top or nested, gives the
    interpreter up every 256 of its elements (the loop does not wait out the switch
    interval)."""
    flat = MapT(INT, INT)
    with bulk():
        value = OMap((k, k) for k in range(10_000))
    values.value_encoder(flat, yielding=True)(value)
    assert len(sleeps) >= 10_000 // 256
    sleeps.clear()
    nested = MapT(INT, ListT(INT))
    with bulk():
        one = OMap([(1, make_list(range(10_000)))])
    values.value_encoder(nested, yielding=True)(one)
    assert len(sleeps) >= 10_000 // 256
