"""Automatic state migrations derived from names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.dsl.annotations import schema_of_type
from hotswap.dsl.derive import DefaultError, MigrationError, default_value, derive_migration
from hotswap.examples.counter import counter_sm, counter_sm2, upgrade_state
from hotswap.lang.check import infer
from hotswap.lang.evaluate import evaluate
from hotswap.lang.ints import INT_MAX
from hotswap.lang.values import check_value
from hotswap.names.schema import core_type, from_core, to_core
from hotswap.names.section import decode_names, encode_names
from strategies import python_types, python_values


@dataclass(frozen=True)
class Account:
    owner: int
    balance: int


@dataclass(frozen=True)
class AccountV2:
    balance: int
    frozen: bool
    owner: int


@dataclass(frozen=True)
class Closed:
    pass


@dataclass(frozen=True)
class Open:
    balance: int


@given(st.integers(-(2**63), INT_MAX))
def test_the_seeds_migration_is_derived(n: int) -> None:
    """int -> tuple[int, int] widens to (n, 0): exactly the seed's upgradeState."""
    derived = derive_migration(counter_sm.state_schema, counter_sm2.state_schema)
    assert derived.loaded.migrate(n) == upgrade_state.run(n) == (n, 0)


def test_records_match_fields_by_name() -> None:
    """Fields keep their values by name, new ones start at their default, order may change."""
    old, new = schema_of_type(Account), schema_of_type(AccountV2)
    derived = derive_migration(old, new)
    moved = derived.loaded.migrate(to_core(old, Account(owner=7, balance=100)))
    assert from_core(new, moved) == AccountV2(balance=100, frozen=False, owner=7)


def test_unions_match_alternatives_by_name() -> None:
    """Reordered alternatives keep their meaning: Closed stays Closed, Open stays Open."""
    old, new = schema_of_type(Closed | Open), schema_of_type(Open | Closed)
    derived = derive_migration(old, new)
    for value in (Closed(), Open(5)):
        assert from_core(new, derived.loaded.migrate(to_core(old, value))) == value


def test_a_value_widens_into_a_union() -> None:
    old, new = schema_of_type(int), schema_of_type(None | int)
    assert from_core(new, derive_migration(old, new).loaded.migrate(4)) == 4


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (Closed | Open, Open | int, "Closed has no counterpart in Open | int"),
        (Closed | Open, Open, "state: Closed | Open -> Open"),
        (int, bool, "state: int -> bool"),
        (tuple[int, int], tuple[int, int, int], "tuple[int, int] -> tuple[int, int, int]"),
    ],
)
def test_what_cannot_be_derived_is_refused_with_the_place(
    old: object, new: object, message: str
) -> None:
    with pytest.raises(MigrationError, match=re.escape(message)):
        derive_migration(schema_of_type(old), schema_of_type(new))


@given(st.data())
def test_defaults_belong_to_their_type(data: st.DataObject) -> None:
    schema = schema_of_type(data.draw(python_types()))
    check_value(default_value(schema), core_type(schema))


@settings(max_examples=150)
@given(st.data())
def test_derived_migrations_are_well_typed_and_total(data: st.DataObject) -> None:
    """On random pairs of schemas, a derived term types as old -> new and maps every old value
    to a new one; when nothing derives, the refusal is a MigrationError naming the place."""
    old = schema_of_type(data.draw(python_types()))
    new = schema_of_type(data.draw(python_types()))
    try:
        term = derive_migration(old, new).term
    except MigrationError as e:
        assert "cannot derive a migration" in str(e) and "@migration" in str(e)
        return
    assert infer(term, core_type(old)) == core_type(new)
    value = to_core(old, data.draw(python_values(old)))
    check_value(evaluate(term, value), core_type(new))


@dataclass(frozen=True)
class Empty:
    pass


def test_removed_fields_and_empty_targets_are_refused() -> None:
    """Deriving never drops data, and an empty record cannot hold an int."""
    with pytest.raises(MigrationError, match=r"state\.owner would be dropped"):
        derive_migration(schema_of_type(AccountV2), schema_of_type(Open))
    with pytest.raises(MigrationError, match="int -> Empty"):
        derive_migration(schema_of_type(int), schema_of_type(Empty))


# --- defaults: what the new type's dataclass declares ---------------------------------------


@dataclass(frozen=True)
class Item:
    a: int
    b: int


@dataclass(frozen=True)
class Quota:
    """Version 1 of the quota the tests below add fields to (their classes are named Quota)."""

    used: int


@dataclass(frozen=True)
class Limits:
    hard: int
    soft: int = 50


@dataclass(frozen=True)
class Inner:
    used: int
    limit: int = "x"  # type: ignore[assignment]


def _migrate(new: type, used: int = 7) -> tuple[object, tuple[str, ...]]:
    """``Quota(used)`` through the migration derived from :class:`Quota` to ``new``, and the
    derivation's notes."""
    derived = derive_migration(schema_of_type(Quota), schema_of_type(new))
    migrated = derived.loaded.migrate(to_core(schema_of_type(Quota), Quota(used)))
    return from_core(schema_of_type(new), migrated), derived.notes


def test_a_new_field_gets_its_declared_default() -> None:
    @dataclass(frozen=True)
    class Quota:
        used: int
        limit: int = 100

    assert _migrate(Quota) == (
        Quota(used=7, limit=100),
        ("Quota.limit: new field, set to 100 (its default)",),
    )


def test_an_optional_field_defaulting_to_none_is_none_not_a_phantom_record() -> None:
    """``Item | None = None``: the first-alternative rule alone would make ``Item(0, 0)``."""

    @dataclass(frozen=True)
    class Quota:
        used: int
        b: Item | None = None

    assert _migrate(Quota) == (
        Quota(used=7, b=None),
        ("Quota.b: new field, set to None (its default)",),
    )


def test_a_default_factory_is_called_once_when_deriving() -> None:
    calls: list[Item] = []

    def make_item() -> Item:
        calls.append(Item(1, 2))
        return calls[-1]

    @dataclass(frozen=True)
    class Quota:
        used: int
        item: Item = field(default_factory=make_item)
        also: tuple[Item, Item] = (Item(3, 4), Item(5, 6))

    old, new = schema_of_type(globals()["Quota"]), schema_of_type(Quota)
    derived = derive_migration(old, new)
    assert len(calls) == 1
    for used in (0, 5):
        migrated = derived.loaded.migrate(to_core(old, globals()["Quota"](used)))
        assert from_core(new, migrated) == Quota(used, Item(1, 2))
    assert len(calls) == 1
    assert derived.notes == (
        "Quota.item: new field, set to Item(a=1, b=2) (its default_factory)",
        "Quota.also: new field, set to (Item(a=3, b=4), Item(a=5, b=6)) (its default)",
    )


def test_fields_without_a_default_keep_the_rules_and_the_notes_say_so() -> None:
    """Without a declared default: 0, False, None, a union's first alternative, and a record's
    declared defaults inside; a widened state notes the items it adds."""

    @dataclass(frozen=True)
    class Quota:
        used: int
        warned: int
        frozen: bool
        maybe: Item | None
        limits: Limits
        limit: int = 100

    migrated, notes = _migrate(Quota)
    assert migrated == Quota(7, 0, False, Item(0, 0), Limits(0, 50), 100)
    assert notes == (
        "Quota.warned: new field without a default, set to 0",
        "Quota.frozen: new field without a default, set to False",
        "Quota.maybe: new field without a default, set to Item(a=0, b=0)",
        "Quota.limits: new field without a default, set to Limits(hard=0, soft=50)",
        "Quota.limit: new field, set to 100 (its default)",
    )
    seed = derive_migration(counter_sm.state_schema, counter_sm2.state_schema)
    assert seed.notes == ("state[1]: new item, set to 0",)
    widened = derive_migration(schema_of_type(int), schema_of_type(Quota))
    expected = Quota(3, 0, False, Item(0, 0), Limits(0, 50), 100)
    assert widened.loaded.migrate(3) == to_core(schema_of_type(Quota), expected)
    assert widened.notes == notes


def test_a_record_known_only_by_its_names_keeps_the_rules() -> None:
    """Schemas decoded from a names section have no class, so no declared defaults."""

    @dataclass(frozen=True)
    class Quota:
        used: int
        limit: int = 100

    old = schema_of_type(globals()["Quota"])
    new = decode_names(encode_names({"state": schema_of_type(Quota)}))["state"]
    derived = derive_migration(old, new)
    assert derived.loaded.migrate(to_core(old, globals()["Quota"](7))) == (7, 0)
    assert derived.notes == ("Quota.limit: new field without a default, set to 0",)


def _refused_because_of(default: object) -> str:
    @dataclass(frozen=True)
    class Quota:
        used: int
        limit: int = default  # type: ignore[assignment]

    with pytest.raises(DefaultError) as caught:
        derive_migration(schema_of_type(globals()["Quota"]), schema_of_type(Quota))
    assert "cannot derive a migration" in str(caught.value) and "@migration" in str(caught.value)
    return str(caught.value)


def test_a_default_that_cannot_be_expressed_is_refused() -> None:
    assert "the default of Quota.limit, 'many', cannot be expressed as int" in (
        _refused_because_of("many")
    )
    message = _refused_because_of(2**64)
    assert f"the default of Quota.limit, {2**64}, cannot be expressed as int" in message
    assert "outside the signed 64-bit range" in message
    assert "expected int, got True" in _refused_because_of(True)


def test_a_default_factory_that_fails_is_refused() -> None:
    def broken() -> int:
        raise RuntimeError("no quota service")

    @dataclass(frozen=True)
    class Quota:
        used: int
        limit: int = field(default_factory=broken)

    message = "the default_factory of Quota.limit raised RuntimeError: no quota service"
    with pytest.raises(MigrationError, match=re.escape(message)):
        derive_migration(schema_of_type(globals()["Quota"]), schema_of_type(Quota))


def test_an_unusable_default_is_reported_even_where_widening_is_tried() -> None:
    """Widening ``int`` into a record tries its first field; a bad default there is the
    reason, not "int -> Outer"."""

    @dataclass(frozen=True)
    class Outer:
        inner: Inner

    with pytest.raises(DefaultError, match=re.escape("the default of Inner.limit, 'x'")):
        derive_migration(schema_of_type(int), schema_of_type(Outer))
