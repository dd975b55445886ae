"""Migrations over strings, lists and dicts: derived ones map collections item by item (a
fold), hand-written ones may loop and raise; both agree with the plain Python meaning."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_oracle import agrees, values
from hotswap.dsl import machine, migration
from hotswap.dsl.annotations import schema_of_type
from hotswap.dsl.derive import MigrationError, default_value, derive_migration
from hotswap.errors import Trap
from hotswap.lang.check import infer
from hotswap.lang.values import check_value
from hotswap.names.schema import core_type, from_core, to_core


@dataclass(frozen=True)
class Item:
    name: str
    qty: int


@dataclass(frozen=True)
class ItemV2:
    name: str
    qty: int
    price: int = 100
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Store:
    items: dict[str, Item]
    history: list[Item]
    title: str


@dataclass(frozen=True)
class StoreV2:
    items: dict[str, ItemV2]
    history: list[ItemV2]
    title: str
    notes: dict[int, str] = field(default_factory=dict)


def _upgraded(old: Store) -> StoreV2:
    """What the derived migration means, in Python."""
    items = {k: ItemV2(v.name, v.qty) for k, v in old.items.items()}
    history = [ItemV2(i.name, i.qty) for i in old.history]
    return StoreV2(items, history, old.title)


OLD, NEW = schema_of_type(Store), schema_of_type(StoreV2)
DERIVED = derive_migration(OLD, NEW)


@settings(max_examples=100, deadline=None)
@given(old=values(OLD))
def test_collections_migrate_item_by_item(old: Store) -> None:
    """Every entry of the dict and item of the list gets the new fields' defaults; keys,
    order and the str stay."""
    moved = from_core(NEW, DERIVED.loaded.migrate(to_core(OLD, old)))
    assert moved == _upgraded(old)
    assert list(moved.items) == list(old.items)


def test_derived_notes_name_the_places() -> None:
    assert "ItemV2.price: new field, set to 100 (its default)" in DERIVED.notes
    assert "StoreV2.notes: new field, set to {} (its default_factory)" in DERIVED.notes


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (list[int], list[str], "state[i]: int -> str"),
        (dict[str, int], dict[int, int], "state.keys(): str -> int"),
        (list[int], dict[int, int], "list[int] -> dict[int, int]"),
        (str, int, "str -> int"),
        (
            tuple[int, int],
            tuple[int, int, int],
            "tuple[int, int] -> tuple[int, int, int] (a tuple's items are matched by position, "
            "so a tuple of 2 items does not derive to one of 3: a new item has no value to take)",
        ),
    ],
)
def test_what_cannot_be_derived_is_refused(old: object, new: object, message: str) -> None:
    with pytest.raises(MigrationError, match=re.escape(message)):
        derive_migration(schema_of_type(old), schema_of_type(new))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (list[int], list[int | None]),
        (dict[int, int], dict[int | None, tuple[int, int]]),
        (str, str | None),
        (list[str], tuple[list[str], dict[str, int]]),
    ],
)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_derived_terms_are_well_typed(old: object, new: object, data: st.DataObject) -> None:
    o, n = schema_of_type(old), schema_of_type(new)
    derived = derive_migration(o, n)
    assert infer(derived.term, core_type(o)) == core_type(n)
    value = to_core(o, data.draw(values(o)))
    check_value(derived.loaded.migrate(value), core_type(n))


def test_defaults_of_collections_are_empty() -> None:
    assert default_value(schema_of_type(str)) == ""
    assert len(default_value(schema_of_type(list[int]))) == 0
    assert len(default_value(schema_of_type(dict[str, int]))) == 0


# --- a hand-written migration that loops and refuses -----------------------------------------


class UpgradeRefused(Exception):
    """A migration refusing an upgrade."""


@machine(init=Store({}, [], "shop"))
def store_v1(cmd: Item, s: Store) -> tuple[Store, int]:
    items = s.items | {cmd.name: cmd}
    return Store(items, [*s.history, cmd], s.title), len(items)


@machine(init=StoreV2({}, [], "shop"))
def store_v2(cmd: ItemV2, s: StoreV2) -> tuple[StoreV2, int]:
    return StoreV2(s.items | {cmd.name: cmd}, [*s.history, cmd], s.title, s.notes), len(s.items)


@migration(store_v1, store_v2)
def upgrade_store(old: Store) -> StoreV2:
    """Prices from the quantities; an item with a negative quantity refuses the upgrade."""
    items: dict[str, ItemV2] = {}
    for key, item in old.items.items():
        if item.qty < 0:
            raise UpgradeRefused(f"{key} has {item.qty}")
        items[key] = ItemV2(item.name, item.qty, price=10 * len(item.name), tags=[old.title])
    history = [ItemV2(it.name, 0) for it in reversed(old.history)]
    notes = {i: it.name for i, it in enumerate(old.history) if it.qty > 2}
    return StoreV2(items, history, old.title, notes)


@settings(max_examples=100, deadline=None)
@given(old=values(OLD))
def test_a_written_migration_agrees_with_python(old: Store) -> None:
    agrees(upgrade_store, old)


def test_a_raise_in_a_migration_refuses_the_upgrade() -> None:
    old = Store({"a": Item("a", -1)}, [], "t")
    with pytest.raises(Trap) as trap:
        upgrade_store.run(old)
    assert trap.value.kind == "raised"
    assert str(trap.value) == "UpgradeRefused: a has -1"
