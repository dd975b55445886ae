"""Schemas: the DSL's named types, their core types, and Python <-> core value conversion.

A schema is a core type that still knows its Python names::

    int                 Int
    bool                Bool = Unit + Unit           False is (0, ()), True is (1, ())
    None                Unit
    str                 Str                          a Python str, at most 2**20 code points
    list[T]             List T                       a Python list in and out; a PVector in the core
    dict[K, V]          Map K V                      a Python dict in and out (its order kept); an
                                                     OMap in the core; K holds no list or dict
    tuple[A, B, C]      A x (B x C)                  two or more items, right-nested
    record R            no fields: Unit; one field: that field's type; more: right-nested product
    A | B | C           A + (B + C)                  in the written order

A record is a frozen dataclass. The alternatives of a union must be told apart at run time by
their Python class alone, so a union holds at most one ``int``, ``bool``, ``None``, ``str``,
``tuple``, ``list`` and ``dict``, never both ``int`` and ``bool`` (``bool`` is a subclass of
``int``), and no two records with the same name. A value is of the ``int`` or ``bool``
alternative by its exact type, of the ``str``, ``list``, ``dict`` or ``tuple`` one by
``isinstance`` (a ``str`` subclass such as a ``StrEnum`` member converts as the plain text). A
tuple is never taken for a list, nor a list of pairs for a dict.

Records decoded from a module's names section have no Python class (``cls is None``): such a
record accepts any dataclass instance (or :class:`Record`) of the same class name with the
same fields (a client's own ``Incr()`` for a node's ``Incr``), and comes back as a
:class:`Record`, a generic value that carries the name and the fields and never pretends to be a
class of the program. Attach classes to a schema (as the client does for the classes it knows) to
get instances of them instead.

:func:`to_core` and :func:`from_core` run conversions compiled per schema
(:mod:`hotswap.names.convert`); :func:`to_core_reference` and :func:`from_core_reference` are the
walkers that define them, and produce every error message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, assert_never

from hotswap.errors import ValueTypeError
from hotswap.lang.check import MAX_ELEMENTS
from hotswap.lang.evaluate import Value
from hotswap.lang.ints import in_range
from hotswap.lang.persistent import OMap, make_list
from hotswap.lang.types import BOOL, INT, STR, UNIT, ListT, MapT, Prod, Sum, Type
from hotswap.lang.values import check_text, check_value


@dataclass(frozen=True, slots=True)
class IntSchema:
    """``int``: a signed 64-bit integer."""


@dataclass(frozen=True, slots=True)
class BoolSchema:
    """``bool``: the core Bool, ``Unit + Unit``."""


@dataclass(frozen=True, slots=True)
class NoneSchema:
    """``None``: Unit."""


@dataclass(frozen=True, slots=True)
class StrSchema:
    """``str``: the core Str (text of at most 2**20 code points)."""


@dataclass(frozen=True, slots=True)
class ListSchema:
    """``list[T]``: the core ``List T``; Python lists in, Python lists out."""

    item: Schema


@dataclass(frozen=True, slots=True)
class DictSchema:
    """``dict[K, V]``: the core ``Map K V`` (insertion order kept); ``K`` holds no list or dict
    (:class:`SchemaProblem` naming the annotation otherwise, as ``MapT`` refuses such keys)."""

    key: Schema
    value: Schema

    def __post_init__(self) -> None:
        where = unkeyable(self.key)
        if where is not None:
            raise SchemaProblem(
                f"dict[{describe(self.key)}, {describe(self.value)}]: a dict key may not be or "
                f"hold a list or a dict ({where} is one); key by a str, int, bool, tuple or "
                "record of those instead"
            )


@dataclass(frozen=True, slots=True)
class TupleSchema:
    """``tuple[A, B, ...]`` with two or more items."""

    items: tuple[Schema, ...]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    schema: Schema


@dataclass(frozen=True, slots=True)
class RecordSchema:
    """A frozen dataclass ``name`` with its fields in declaration order."""

    name: str
    fields: tuple[Field, ...]
    cls: type | None = field(default=None, compare=False)

    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True, slots=True)
class UnionSchema:
    """``A | B | ...``: two or more alternatives, none of them a union."""

    alternatives: tuple[Schema, ...]


Schema = (
    IntSchema
    | BoolSchema
    | NoneSchema
    | StrSchema
    | ListSchema
    | DictSchema
    | TupleSchema
    | RecordSchema
    | UnionSchema
)

INT_SCHEMA: Schema = IntSchema()
BOOL_SCHEMA: Schema = BoolSchema()
NONE_SCHEMA: Schema = NoneSchema()
STR_SCHEMA: Schema = StrSchema()


class SchemaProblem(Exception):
    """A type outside the subset; the DSL turns it into a :class:`SourceError` at a position.

    ``node`` is the innermost annotation syntax the problem was found in, when there is one.
    """

    node: object = None


# --- structure ------------------------------------------------------------------------------


def union_of(alternatives: list[Schema]) -> UnionSchema:
    """The union of ``alternatives`` (nested unions are flattened); :class:`SchemaProblem` if
    two alternatives cannot be told apart at run time."""
    flat: list[Schema] = []
    for alt in alternatives:
        flat.extend(alt.alternatives if isinstance(alt, UnionSchema) else [alt])
    seen: dict[str, Schema] = {}
    for alt in flat:
        key = kind_of(alt)
        if key in seen:
            written = " | ".join(describe(a) for a in flat)
            why = ""
            if key in ("str", "list", "dict"):
                why = f" (a union holds at most one {key} alternative, told by its class alone)"
            raise SchemaProblem(
                f"ambiguous union {written}: {describe(seen[key])} and {describe(alt)} cannot be "
                f"told apart at run time{why}"
            )
        seen[key] = alt
    if "int" in seen and "bool" in seen:
        raise SchemaProblem(
            "ambiguous union: bool is a subclass of int, so int | bool is not allowed"
        )
    classes = [a.cls for a in flat if isinstance(a, RecordSchema) and a.cls is not None]
    for sub in classes:
        for base in classes:
            if sub is not base and issubclass(sub, base):
                raise SchemaProblem(
                    f"ambiguous union: {sub.__name__} is a subclass of {base.__name__}, so "
                    f"case {base.__name__}() would match both"
                )
    if len(flat) < 2:
        raise SchemaProblem("a union needs two or more alternatives")
    return UnionSchema(tuple(flat))


def kind_of(s: Schema) -> str:
    """What tells an alternative apart at run time, and across versions: a record's name, or
    the kind (``int``, ``bool``, ``None``, ``str``, ``list``, ``dict``, ``tuple``)."""
    match s:
        case IntSchema():
            return "int"
        case BoolSchema():
            return "bool"
        case NoneSchema():
            return "None"
        case StrSchema():
            return "str"
        case ListSchema():
            return "list"
        case DictSchema():
            return "dict"
        case TupleSchema():
            return "tuple"
        case RecordSchema(name=name):
            return f"record {name}"
        case UnionSchema():
            return "union"
        case _:
            assert_never(s)


def unkeyable(s: Schema) -> str | None:
    """The first list or dict inside ``s`` (as annotation text), or None when ``s`` may key a
    dict (``MapT``'s rule: a key type holds no list and no map)."""
    match s:
        case ListSchema() | DictSchema():
            return describe(s)
        case TupleSchema() | RecordSchema():
            for part in components(s):
                found = unkeyable(part)
                if found is not None:
                    return found
            return None
        case UnionSchema(alternatives):
            for alt in alternatives:
                found = unkeyable(alt)
                if found is not None:
                    return found
            return None
        case IntSchema() | BoolSchema() | NoneSchema() | StrSchema():
            return None
        case _:
            assert_never(s)


def nodes(s: Schema) -> Iterator[Schema]:
    """Every schema of a schema tree, depth first, each before the schemas inside it (one that
    occurs twice is yielded twice)."""
    yield s
    match s:
        case IntSchema() | BoolSchema() | NoneSchema() | StrSchema():
            return
        case ListSchema(item):
            yield from nodes(item)
        case DictSchema(key, value):
            yield from nodes(key)
            yield from nodes(value)
        case TupleSchema(items):
            for item in items:
                yield from nodes(item)
        case RecordSchema(fields=fields):
            for f in fields:
                yield from nodes(f.schema)
        case UnionSchema(alternatives):
            for alt in alternatives:
                yield from nodes(alt)
        case _:
            assert_never(s)


def records(s: Schema) -> Iterator[RecordSchema]:
    """Every record of a schema tree, depth first, a record before the records in its fields
    (a record that occurs twice is yielded twice)."""
    return (n for n in nodes(s) if isinstance(n, RecordSchema))


def describe(s: Schema) -> str:
    """The schema in Python's annotation syntax: ``None | int``, ``tuple[int, int]``, ``Incr``,
    ``list[Line]``, ``dict[str, int | None]``."""
    match s:
        case IntSchema():
            return "int"
        case BoolSchema():
            return "bool"
        case NoneSchema():
            return "None"
        case StrSchema():
            return "str"
        case ListSchema(item):
            return f"list[{describe(item)}]"
        case DictSchema(key, value):
            return f"dict[{describe(key)}, {describe(value)}]"
        case TupleSchema(items):
            return f"tuple[{', '.join(describe(i) for i in items)}]"
        case RecordSchema(name=name):
            return name
        case UnionSchema(alternatives):
            return " | ".join(describe(a) for a in alternatives)
        case _:
            assert_never(s)


#: Core types of small schemas, which the DSL asks for again and again. A large one (decoded
#: from a names section a stranger sent) is not kept: its module keeps what it needs of it.
_core_types: dict[Schema, Type] = {}
_CORE_TYPES_KEPT = 4096
_CORE_TYPE_KEPT_NODES = 256


def core_type(s: Schema) -> Type:
    """The core type a schema stands for (in time linear in the schema's size)."""
    hit = _core_types.get(s)
    if hit is not None:
        return hit
    nodes = [0]
    result = _core_type(s, {}, nodes)
    if nodes[0] <= _CORE_TYPE_KEPT_NODES:
        if len(_core_types) >= _CORE_TYPES_KEPT:
            _core_types.clear()
        _core_types[s] = result
    return result


def _core_type(s: Schema, seen: dict[int, Type], nodes: list[int]) -> Type:
    nodes[0] += 1  # the size of the tree: a part it shares counts each time
    hit = seen.get(id(s))
    if hit is not None:
        return hit
    result: Type
    match s:
        case IntSchema():
            result = INT
        case BoolSchema():
            result = BOOL
        case NoneSchema():
            result = UNIT
        case StrSchema():
            result = STR
        case ListSchema(item):
            result = ListT(_core_type(item, seen, nodes))
        case DictSchema(key, value):
            result = MapT(_core_type(key, seen, nodes), _core_type(value, seen, nodes))
        case TupleSchema(items):
            result = product_type([_core_type(i, seen, nodes) for i in items])
        case RecordSchema(fields=fields):
            result = product_type([_core_type(f.schema, seen, nodes) for f in fields])
        case UnionSchema(alternatives):
            types = [_core_type(a, seen, nodes) for a in alternatives]
            result = types[-1]
            for t in reversed(types[:-1]):
                result = Sum(t, result)
        case _:
            assert_never(s)
    seen[id(s)] = result
    return result


def product_type(types: list[Type]) -> Type:
    """Unit, the one type, or the right-nested product of ``types``."""
    if not types:
        return UNIT
    result = types[-1]
    for t in reversed(types[:-1]):
        result = Prod(t, result)
    return result


def components(s: TupleSchema | RecordSchema) -> tuple[Schema, ...]:
    if isinstance(s, TupleSchema):
        return s.items
    return tuple(f.schema for f in s.fields)


def is_unit(s: Schema) -> bool:
    """True when the schema's core type is Unit (its one value carries no information)."""
    return core_type(s) == UNIT


# --- Python values -> core values -----------------------------------------------------------


def to_core(s: Schema, v: object, path: str = "value") -> Value:
    """The core value of the Python value ``v``; :class:`ValueTypeError` names where it fails.

    A schema converted more than once is compiled (:mod:`hotswap.names.convert`); the results
    and the errors are those of :func:`to_core_reference`."""
    hit = _encoders.get(id(s))
    if hit is not None and hit[0] is s:
        return hit[1](v, path)
    return _warm(_encoders, s, "to_core")(v, path)


def to_core_reference(s: Schema, v: object, path: str = "value") -> Value:
    """:func:`to_core` by walking the schema: the reference the compiled conversions follow."""
    match s:
        case IntSchema():
            if type(v) is not int:
                raise ValueTypeError(f"{path}: expected int, got {v!r}")
            if not in_range(v):
                raise ValueTypeError(f"{path}: {v} is outside the signed 64-bit range")
            return v
        case BoolSchema():
            if type(v) is not bool:
                raise ValueTypeError(f"{path}: expected bool, got {v!r}")
            return (1, ()) if v else (0, ())
        case NoneSchema():
            if v is not None:
                raise ValueTypeError(f"{path}: expected None, got {v!r}")
            return ()
        case StrSchema():
            if not isinstance(v, str):
                raise ValueTypeError(f"{path}: expected str, got {shown(v)}")
            text = v if type(v) is str else str.__str__(v)  # a subclass's text, as a plain str
            check_text(text, path)
            return text
        case ListSchema(item):
            if not isinstance(v, list):
                raise ValueTypeError(
                    f"{path}: expected {describe(s)}, got {shown(v)}: {_pass(v, 'list')}"
                )
            if len(v) > MAX_ELEMENTS:
                raise ValueTypeError(f"{path}: {len(v)} elements, more than {MAX_ELEMENTS}")
            return make_list([to_core_reference(item, x, f"{path}[{i}]") for i, x in enumerate(v)])
        case DictSchema(key, value):
            if not isinstance(v, dict):
                raise ValueTypeError(
                    f"{path}: expected {describe(s)}, got {shown(v)}: {_pass(v, 'dict')}"
                )
            if len(v) > MAX_ELEMENTS:
                raise ValueTypeError(f"{path}: {len(v)} entries, more than {MAX_ELEMENTS}")
            pairs = [
                (
                    to_core_reference(key, k, f"{path}, key {shown(k)}"),
                    to_core_reference(value, x, f"{path}[{shown(k)}]"),
                )
                for k, x in v.items()
            ]
            result = OMap(pairs)
            if len(result) != len(pairs):
                raise ValueTypeError(f"{path}: {_same_key(v, [k for k, _ in pairs])}")
            return result
        case TupleSchema(items):
            if not (isinstance(v, tuple) and len(v) == len(items)):
                raise ValueTypeError(f"{path}: expected {describe(s)}, got {shown(v)}")
            return nest_values(
                [
                    to_core_reference(t, x, f"{path}[{i}]")
                    for i, (t, x) in enumerate(zip(items, v, strict=True))
                ]
            )
        case RecordSchema(name=name, fields=fields):
            if not _belongs(s, v):
                raise ValueTypeError(f"{path}: expected {name}, got {shown(v)}")
            return nest_values(
                [to_core_reference(f.schema, _field(v, f.name), f"{path}.{f.name}") for f in fields]
            )
        case UnionSchema(alternatives):
            for index, alt in enumerate(alternatives):
                if _belongs(alt, v):
                    return inject_value(index, len(alternatives), to_core_reference(alt, v, path))
            raise ValueTypeError(f"{path}: expected {describe(s)}, got {shown(v)}")
        case _:
            assert_never(s)


#: Longest repr of a value in an error message; longer ones are cut (a state of a million
#: entries passed in the wrong place must not make a message of megabytes).
SHOWN_LIMIT = 200


def shown(v: object) -> str:
    """``repr(v)``, cut to :data:`SHOWN_LIMIT` characters with ``...``."""
    text = repr(v)
    return text if len(text) <= SHOWN_LIMIT else text[: SHOWN_LIMIT - 3] + "..."


def _pass(v: object, kind: str) -> str:
    """What to pass instead of ``v`` where a list or a dict is expected."""
    name = type(v).__name__
    other = f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
    if kind == "list":
        if isinstance(v, Iterable) and not isinstance(v, str | bytes | Mapping):
            return f"pass a list (list(...) of it), not {other}"
        return "pass a list ([...])"
    if isinstance(v, Mapping | OMap):
        return f"pass a dict (dict(...) of it), not {other}"
    return f"pass a dict ({{key: value, ...}}), not {other}"


def _same_key(v: dict[Any, Any], keys: list[Value]) -> str:
    """Why a dict converted to fewer entries than it has: two keys that are one core key."""
    first: dict[Any, object] = {}
    for k, core in zip(v, keys, strict=True):
        if core in first:
            return (
                f"keys {shown(first[core])} and {shown(k)} are the same key once converted; "
                "a dict must not hold both"
            )
        first[core] = k
    return "two keys are the same key once converted"  # pragma: no cover - found above


def _belongs(alt: Schema, v: object) -> bool:
    """Whether ``v`` is of the alternative's run-time kind (the union's discriminator)."""
    match alt:
        case IntSchema():
            return type(v) is int
        case BoolSchema():
            return type(v) is bool
        case NoneSchema():
            return v is None
        case StrSchema():
            return isinstance(v, str)
        case ListSchema():
            return isinstance(v, list)
        case DictSchema():
            return isinstance(v, dict)
        case TupleSchema():
            return isinstance(v, tuple)
        case RecordSchema(cls=cls) if cls is not None:
            return type(v) is cls
        case RecordSchema(name=name, fields=fields):  # known by name only: match by name
            names = tuple(f.name for f in fields)
            if isinstance(v, Record):
                return v.record_name == name and tuple(v.record_fields) == names
            return (
                dataclasses.is_dataclass(v)
                and not isinstance(v, type)
                and type(v).__name__ == name
                and tuple(f.name for f in dataclasses.fields(v)) == names
            )
        case UnionSchema():
            return False
        case _:
            assert_never(alt)


def nest_values(values: list[Value]) -> Value:
    """Unit, the one value, or right-nested pairs."""
    if not values:
        return ()
    result = values[-1]
    for v in reversed(values[:-1]):
        result = (v, result)
    return result


def unnest_values(v: Value, n: int) -> list[Value]:
    """The inverse of :func:`nest_values` for ``n`` items."""
    if n == 0:
        return []
    out = []
    for _ in range(n - 1):
        out.append(v[0])
        v = v[1]
    out.append(v)
    return out


def inject_value(index: int, count: int, v: Value) -> Value:
    """Alternative ``index`` of ``count`` as a core value: ``inl``, ``inr inl``, ..., ``inr^k``."""
    result = v if index == count - 1 else (0, v)
    for _ in range(min(index, count - 1)):
        result = (1, result)
    return result


def project_value(v: Value, count: int) -> tuple[int, Value]:
    """The inverse of :func:`inject_value`: ``(index, payload)``."""
    index = 0
    while index < count - 1:
        tag, payload = v
        if tag == 0:
            return index, payload
        index, v = index + 1, payload
    return index, v


# --- core values -> Python values -----------------------------------------------------------


class Record:
    """A record value whose class this program does not have: the class name and the fields.

    ``Record("Allowed", remaining=9)`` shows as ``Allowed(remaining=9)``, but it is not an
    instance of any class named ``Allowed``: ``type(x).__name__`` is ``"Record"``. Fields read as
    attributes (``x.remaining``) or from :attr:`record_fields` (which also reaches a field named
    like one of Record's own attributes); :attr:`record_name` is the class name. Records are
    immutable, hashable when their fields are, and equal when their names and fields are (never
    equal to an instance of a real class). A class pattern cannot name the fields positionally;
    match by keyword: ``case Record(record_name="Allowed", remaining=n)``, or
    ``case Record("Allowed")`` for the name alone.
    """

    __slots__ = ("_fields", "_name")
    __match_args__ = ("record_name",)
    _name: str
    _fields: Mapping[str, Any]

    def __init__(self, record_name: str, /, **fields: Any) -> None:
        object.__setattr__(self, "_name", record_name)
        object.__setattr__(self, "_fields", MappingProxyType(fields))

    @property
    def record_name(self) -> str:
        """The name of the class the record stands for."""
        return self._name

    @property
    def record_fields(self) -> Mapping[str, Any]:
        """The fields by name, in declaration order (read-only)."""
        return self._fields

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(f"{self._name} record has no field {name!r}") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{self._name} record is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{self._name} record is immutable")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._fields})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return self._name == other._name and dict(self._fields) == dict(other._fields)

    def __hash__(self) -> int:
        return hash((Record, self._name, tuple(self._fields.items())))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        return f"{self._name}({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return _record, (self._name, tuple(self._fields.items()))


def _record(name: str, items: tuple[tuple[str, Any], ...]) -> Record:
    return Record(name, **dict(items))


def _field(v: object, name: str) -> Any:
    """Field ``name`` of a record value: a dataclass instance's attribute or a Record's field."""
    if isinstance(v, Record):
        return v.record_fields[name]
    return getattr(v, name)


def from_core(s: Schema, v: Value) -> Any:
    """The Python value of a core value of type ``core_type(s)`` (checked first): records as
    instances of their schema's class, or as :class:`Record` where the schema has none.

    Compiled like :func:`to_core`; the results and errors are :func:`from_core_reference`'s."""
    hit = _decoders.get(id(s))
    if hit is not None and hit[0] is s:
        return hit[1](v)
    return _warm(_decoders, s, "from_core")(v)


def from_core_reference(s: Schema, v: Value) -> Any:
    """:func:`from_core` by walking the schema: the reference the compiled conversions follow."""
    check_value(v, core_type(s))
    return _from_core(s, v)


# --- compiled on the second use ---------------------------------------------------------------
# By schema object: a schema used once (a default, an initial state) is walked; one used again
# (a machine's input, a client's state) gets its compiled conversion, held here with the schema
# so that its id is not reused while cached.

_CACHE_SIZE = 1024
_encoders: dict[int, tuple[Schema, Callable[[object, str], Value]]] = {}
_decoders: dict[int, tuple[Schema, Callable[[Value], Any]]] = {}
_seen: dict[tuple[int, str], Schema] = {}


def _warm(table: dict[int, tuple[Schema, Any]], s: Schema, direction: str) -> Any:
    """The conversion to use for ``s`` now: the reference walker on first use, else compiled."""
    key = (id(s), direction)
    if _seen.get(key) is not s:
        if len(_seen) >= _CACHE_SIZE:
            _seen.clear()
        _seen[key] = s
        if direction == "to_core":
            return lambda v, path: to_core_reference(s, v, path)
        return lambda v: from_core_reference(s, v)
    from hotswap.names import convert  # noqa: PLC0415 - convert builds on this module

    fn = convert.to_core_function(s) if direction == "to_core" else convert.from_core_function(s)
    if len(table) >= _CACHE_SIZE:
        table.clear()
    table[id(s)] = (s, fn)
    return fn


def _from_core(s: Schema, v: Value) -> Any:
    match s:
        case IntSchema():
            return v
        case BoolSchema():
            return v[0] == 1
        case NoneSchema():
            return None
        case StrSchema():
            return v
        case ListSchema(item):
            return [_from_core(item, x) for x in v]
        case DictSchema(key, value):
            return _dict_of([(_from_core(key, k), _from_core(value, x)) for k, x in v.items()], s)
        case TupleSchema(items):
            return tuple(
                _from_core(t, x) for t, x in zip(items, unnest_values(v, len(items)), strict=True)
            )
        case RecordSchema(name=name, fields=fields, cls=cls):
            values = unnest_values(v, len(fields))
            named = {f.name: _from_core(f.schema, x) for f, x in zip(fields, values, strict=True)}
            return Record(name, **named) if cls is None else cls(**named)
        case UnionSchema(alternatives):
            index, payload = project_value(v, len(alternatives))
            return _from_core(alternatives[index], payload)
        case _:
            assert_never(s)


def _dict_of(pairs: list[tuple[Any, Any]], s: DictSchema) -> dict[Any, Any]:
    """The Python dict of converted ``pairs``; :class:`ValueTypeError` when a key cannot be a
    dict key (a class that is not hashable) or two keys come back equal."""
    try:
        result = dict(pairs)
    except TypeError as e:
        raise ValueTypeError(
            f"a key of {describe(s)} cannot be a Python dict key ({e}): give its record a "
            "frozen dataclass"
        ) from None
    if len(result) != len(pairs):
        raise ValueTypeError(
            f"two keys of a {describe(s)} come back as equal Python values (a class whose "
            "equality ignores fields?): the dict cannot hold both"
        )
    return result
