"""Automatic state migrations derived from names."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.dsl.annotations import schema_of_type
from hotswap.dsl.derive import MigrationError, default_value, derive_migration
from hotswap.examples.counter import counter_sm, counter_sm2, upgrade_state
from hotswap.lang.check import infer
from hotswap.lang.evaluate import evaluate
from hotswap.lang.ints import INT_MAX
from hotswap.lang.values import check_value
from hotswap.names.schema import core_type, from_core, to_core
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


@settings(max_examples=300)
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
