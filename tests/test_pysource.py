"""A machine's types as Python source (``hotswap types``): importable, and read back by the DSL
as the schemas they were generated from, so a migration can be written against them."""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.code import Upgrade
from hotswap.dsl import Machine, migration
from hotswap.dsl.annotations import schema_of_type
from hotswap.examples import bank, breaker, counter, quota, quota_v1
from hotswap.names.pysource import PythonSourceError, python_source
from hotswap.names.schema import (
    INT_SCHEMA,
    NONE_SCHEMA,
    STR_SCHEMA,
    DictSchema,
    Field,
    ListSchema,
    RecordSchema,
    Schema,
    TupleSchema,
    UnionSchema,
    describe,
    from_core,
    to_core,
)
from hotswap.names.section import decode_names, encode_names
from strategies import outcome, python_outcome, python_values

MACHINES: list[Machine[..., Any]] = [
    counter.counter_sm,
    counter.counter_sm2,
    bank.bank_sm,
    breaker.breaker_sm,
    breaker.breaker_sm2,
    quota.quota_sm,
    quota.quota_sm2,
]
ROLES = {"input": "Input", "state": "State", "output": "Output"}
_modules = itertools.count()


def _name(obj: object) -> str:
    return str(getattr(obj, "name", obj))


@pytest.fixture(scope="module")
def load(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Write source to a file and import it as a module of its own, once per source (in
    ``sys.modules`` while the tests run, as an imported module is: the DSL resolves field types
    through it)."""
    names: list[str] = []
    loaded: dict[str, ModuleType] = {}
    tmp_path = tmp_path_factory.mktemp("generated")

    def load(source: str) -> ModuleType:
        if source in loaded:
            return loaded[source]
        name = f"generated_types_{next(_modules)}"
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        names.append(name)
        spec.loader.exec_module(module)
        loaded[source] = module
        return module

    yield load
    for name in names:
        sys.modules.pop(name, None)


def _generate(m: Machine[..., Any], load: Any) -> ModuleType:
    module: ModuleType = load(python_source(m.schemas, machine=m.name, identity=m.identity))
    return module


@pytest.mark.parametrize("m", MACHINES, ids=_name)
def test_generated_roles_are_the_machines_schemas(m: Machine[..., Any], load: Any) -> None:
    """Each role's alias reads back (as the DSL reads a type) as the machine's schema."""
    v1 = _generate(m, load)
    assert (m.name, m.identity) == (v1.MACHINE, v1.IDENTITY)
    for role, alias in ROLES.items():
        schema = schema_of_type(getattr(v1, alias))
        assert schema == m.schemas[role]
        assert describe(schema) == describe(m.schemas[role])


@pytest.mark.parametrize("m", MACHINES, ids=_name)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_values_convert_round_trip_through_generated_classes(
    m: Machine[..., Any], data: st.DataObject, load: Any
) -> None:
    """A value of the machine's types comes back as instances of the generated classes, and
    those convert to the same core value."""
    v1 = _generate(m, load)
    for role, alias in ROLES.items():
        generated = schema_of_type(getattr(v1, alias))
        core = to_core(m.schemas[role], data.draw(python_values(m.schemas[role])))
        value = from_core(generated, core)
        assert to_core(generated, value) == core
        for record in _record_values(value):
            assert type(record).__module__ == v1.__name__


def _record_values(value: object) -> Iterator[object]:
    if isinstance(value, tuple):
        for item in value:
            yield from _record_values(item)
    elif hasattr(value, "__dataclass_fields__"):
        yield value
        for name in value.__dataclass_fields__:
            yield from _record_values(getattr(value, name))


def test_a_migration_can_be_written_against_generated_classes(load: Any) -> None:
    """``@migration`` takes a state annotated with the generated version-1 classes (equal to
    the running machine's by name and fields, but other classes): it compiles to the same
    module as the migration written with the originals, and converts the originals' values."""
    v1 = _generate(breaker.breaker_sm, load)

    @migration(breaker.breaker_sm, breaker.breaker_sm2)
    def upgrade(  # type: ignore[return]  # mypy cannot see v1's classes: it is generated
        old: v1.State,  # type: ignore[name-defined]
    ) -> breaker.Closed | breaker.Tripped | breaker.Probing:
        match old:
            case v1.Closed(failures):
                return breaker.Closed(failures)
            case v1.Open(since):
                return breaker.Tripped(since=since, trips=1)
            case v1.HalfOpen():
                return breaker.Probing(successes=0, trips=1)

    assert upgrade.identity == breaker.upgrade_breaker.identity
    for state in (breaker.Closed(3), breaker.Open(5), breaker.HalfOpen()):
        assert upgrade.run(state) == breaker.upgrade_breaker.run(state)
    assert upgrade(v1.Open(5)) == breaker.Tripped(5, 1)
    change = Upgrade(breaker.breaker_sm, breaker.breaker_sm2, upgrade)
    change.check_declared(breaker.breaker_sm.identity, breaker.breaker_sm2.identity)


def test_a_record_decoded_from_a_names_section_generates_the_same_source() -> None:
    """What the CLI has (the node's module, its names section) gives what the classes give."""
    m = bank.bank_sm
    decoded = decode_names(encode_names(m.schemas))
    assert python_source(decoded, machine="bank", identity=m.identity) == python_source(
        m.schemas, machine="bank", identity=m.identity
    )


def test_the_source_has_a_header_each_record_once_and_dependencies_first(load: Any) -> None:
    leaf = RecordSchema("Leaf", ())
    pair = RecordSchema(
        "Pair", (Field("left", leaf), Field("right", UnionSchema((NONE_SCHEMA, leaf))))
    )
    schemas: dict[str, Schema] = {
        "input": UnionSchema((NONE_SCHEMA, pair)),
        "state": TupleSchema((pair, INT_SCHEMA)),
        "output": NONE_SCHEMA,
    }
    source = python_source(schemas, machine="tree", identity="ab" * 32)
    assert source.startswith("# The types of machine tree at identity\n#     " + "ab" * 32)
    assert "generated by `hotswap types tree`" in source
    assert source.count("class Leaf:") == source.count("class Pair:") == 1
    assert source.index("class Leaf:") < source.index("class Pair:")
    v1 = load(source)
    assert v1.Leaf() == v1.Leaf()
    assert v1.Pair(v1.Leaf(), None).right is None
    for role, alias in ROLES.items():
        assert schema_of_type(getattr(v1, alias)) == schemas[role]
    assert "Output: TypeAlias = None\n" in source


def test_a_role_named_like_a_record_is_not_rebound(load: Any) -> None:
    """A record named State that is the state: no alias needed. One that is not: no alias, a
    comment, and the record keeps its name."""
    state = RecordSchema("State", (Field("n", INT_SCHEMA),))
    same = python_source(
        {"input": INT_SCHEMA, "state": state, "output": NONE_SCHEMA}, machine="m", identity="0"
    )
    assert "State: TypeAlias" not in same
    assert schema_of_type(load(same).State) == state
    wider = UnionSchema((state, NONE_SCHEMA))
    other = python_source(
        {"input": INT_SCHEMA, "state": wider, "output": NONE_SCHEMA}, machine="m", identity="0"
    )
    assert "# State (the state type) is State | None: not aliased" in other
    assert schema_of_type(load(other).State) == state


@pytest.mark.parametrize(
    ("schemas", "message"),
    [
        (
            {
                "input": RecordSchema("Item", (Field("a", INT_SCHEMA),)),
                "state": RecordSchema("Item", (Field("b", INT_SCHEMA),)),
            },
            re.escape("two different records are named Item: (a: int) and (b: int)"),
        ),
        ({"state": RecordSchema("class", ())}, "a record named 'class' cannot be defined"),
        ({"state": RecordSchema("dataclass", ())}, "a record named 'dataclass'"),
        (
            {"state": RecordSchema("R", (Field("lambda", INT_SCHEMA),))},
            "record R has a field 'lambda'",
        ),
    ],
)
def test_what_one_module_cannot_define_is_refused(schemas: dict[str, Schema], message: str) -> None:
    with pytest.raises(PythonSourceError, match=message):
        python_source(schemas, machine="m", identity="0")


def test_the_checked_in_quota_v1_is_what_hotswap_types_writes() -> None:
    """``examples/quota_v1.py`` is generated from version 1; it cannot drift from it. If this
    fails after a change to the compiler (version 1's identity moved), regenerate it with
    ``python -c "from hotswap.examples.quota import quota_sm as m;
    from hotswap.names.pysource import python_source as p;
    print(p(m.schemas, machine='quota', identity=m.identity), end='')" >
    src/hotswap/examples/quota_v1.py``."""
    m = quota.quota_sm
    expected = python_source(m.schemas, machine="quota", identity=m.identity)
    assert Path(quota_v1.__file__).read_text() == expected


@pytest.mark.parametrize("m", [quota.quota_sm, quota.quota_sm2], ids=_name)
@settings(max_examples=40)
@given(data=st.data())
def test_quota_agrees_with_python(m: Machine[..., Any], data: st.DataObject) -> None:
    small = data.draw(st.booleans())
    inp = data.draw(python_values(m.input_schema, small))
    state = data.draw(python_values(m.state_schema, small))
    expected = python_outcome(m.__wrapped__, inp, state)
    assert outcome(m.run, inp, state) == expected
    assert outcome(m.evaluate, inp, state) == expected


@given(st.builds(quota_v1.Quota, st.integers(0, 10**9), st.integers(0, 10**9)))
def test_the_quota_migration_keeps_the_quota_and_adds_a_warning(old: quota_v1.Quota) -> None:
    assert quota.upgrade_quota.run(old) == quota.upgrade_quota(old)
    assert quota.upgrade_quota(old) == quota.Quota(old.used, old.limit, old.limit // 5)


def test_quota_v2_reads_version_1_inputs_by_name() -> None:
    """Version 2 keeps version 1's names, so an input means the same to both."""
    for role in ("input", "state"):
        v1, v2 = quota.quota_sm.schemas[role], quota.quota_sm2.schemas[role]
        assert describe(v1) == describe(v2)
    assert quota.quota_sm.schemas["input"] == quota.quota_sm2.schemas["input"]
    state = quota.upgrade_quota.run(quota_v1.Quota(used=900, limit=1000))
    assert quota.quota_sm2.run(quota.Use(50), state) == (
        quota.Quota(950, 1000, 200),
        quota.Low(50),
    )


def test_strings_lists_and_dicts_read_back_as_their_schemas(load: Any) -> None:
    """``hotswap types`` for a cart: ``str``, ``list[T]`` and ``dict[K, V]`` print as those
    annotations and the DSL reads the generated classes back as the same schemas."""
    line = RecordSchema("Line", (Field("sku", STR_SCHEMA), Field("qty", INT_SCHEMA)))
    cart = RecordSchema(
        "Cart",
        (
            Field("lines", DictSchema(STR_SCHEMA, line)),
            Field("log", ListSchema(UnionSchema((STR_SCHEMA, NONE_SCHEMA)))),
        ),
    )
    schemas: dict[str, Schema] = {
        "input": UnionSchema((line, ListSchema(STR_SCHEMA))),
        "state": cart,
        "output": DictSchema(TupleSchema((STR_SCHEMA, INT_SCHEMA)), INT_SCHEMA),
    }
    source = python_source(schemas, machine="cart", identity="cd" * 32)
    assert "    lines: dict[str, Line]\n    log: list[str | None]\n" in source
    assert "Input: TypeAlias = Line | list[str]\n" in source
    assert "Output: TypeAlias = dict[tuple[str, int], int]\n" in source
    v1 = load(source)
    for role, alias in ROLES.items():
        assert schema_of_type(getattr(v1, alias)) == schemas[role]
    generated = schema_of_type(v1.State)
    value = v1.Cart(lines={"a": v1.Line("a", 2)}, log=["x", None])
    core = to_core(generated, value)
    assert from_core(generated, core) == value
    assert to_core(decode_names(encode_names({"state": cart}))["state"], value) == core
