"""Python values to and from a machine's core values, by the names its module carries.

By name when the module carries a names section (dataclass instances, ints, bools, None, strs,
tuples, lists and dicts); as core values (``()``, ints, pairs, ``(0, v)``/``(1, v)``, strs,
persistent lists and maps (``OMap``)) otherwise, checked when encoded.

Values that come back (outputs, states) are instances of the user's own classes: a local DSL
machine's classes for its own code, else, record by record, the class in :class:`Classes` with
the record's name and field names (in order), wherever the record is (a list's items, a dict's
keys and values included; lists, dicts and strs come back as Python's own). A record no class
matches comes back as a :class:`hotswap.names.schema.Record`, and the session warns once per
code (:class:`ClassesUnknownWarning`).
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, assert_never, cast

from hotswap.cam.loaded import LoadedModule
from hotswap.errors import HotswapError
from hotswap.lang.evaluate import Value
from hotswap.names.convert import from_core_function, to_core_function
from hotswap.names.schema import (
    BoolSchema,
    DictSchema,
    Field,
    IntSchema,
    ListSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    StrSchema,
    TupleSchema,
    UnionSchema,
    records,
)
from hotswap.names.section import SECTION, module_schemas

#: A record's name and its field names in order: what a user's class must have to stand for it.
RecordKey = tuple[str, tuple[str, ...]]

#: How many parts of a value sent :meth:`Classes.learn_value` looks at, at most.
_LEARN_LIMIT = 10_000

#: How many parts of a value :meth:`Classes.learn_value` walks without looking for classes,
#: when all of them are of classes it has seen.
_QUICK = 64

#: Values with no classes in them to learn (and never dataclasses).
_PLAIN = frozenset({int, bool, float, str, bytes, type(None)})

#: The roles whose values come back to the caller.
RETURNED_ROLES = ("state", "output")


class ClassesUnknownWarning(UserWarning):
    """Values of a machine's code came back as :class:`hotswap.names.schema.Record` because this
    program's client knows no class with a record's name and fields (the machine was upgraded
    elsewhere to code whose classes were never given to it). Pass the machine to
    ``connect(..., machines=[...])`` or ``client.session.remember(...)``."""


def record_key(cls: type) -> RecordKey | None:
    """The key a dataclass stands for records by; None if it cannot be built from its fields by
    keyword (not a dataclass, or a field with ``init=False``)."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return None
    fields = dataclasses.fields(cls)
    if not all(f.init for f in fields):
        return None
    return cls.__name__, tuple(f.name for f in fields)


def schema_classes(s: Schema) -> Iterable[type]:
    """Every class a schema tree carries (``RecordSchema.cls``)."""
    return (r.cls for r in records(s) if r.cls is not None)


def machine_schemas(m: object) -> Mapping[str, Schema] | None:
    """A DSL machine's schemas by role; None for anything else."""
    schemas = getattr(m, "schemas", None)
    if isinstance(schemas, Mapping):
        return schemas
    return None


class Classes:
    """The user's classes a client knows, by record name and field names.

    Classes *given* (the schemas of machines passed to ``connect(machines=...)`` or
    ``session.remember``) and classes *learned* from the values sent: every dataclass of the
    module that defines a sent value's class, and the classes of the DSL machines defined there
    (the module's own dataclasses win over those). :meth:`find` prefers the classes of the
    modules it is told (those of the value just sent), then given ones, then learned ones; the
    class learned last wins within each. :attr:`version` changes whenever an answer may have.
    """

    def __init__(self) -> None:
        self._given: dict[RecordKey, type] = {}
        self._learned: dict[RecordKey, type] = {}
        self._by_module: dict[str, dict[RecordKey, type]] = {}  # learned, by module
        self._modules: set[str] = set()  # modules scanned for their classes
        self._seen: set[type] = set()  # classes of values sent, their modules scanned
        #: The classes of ``_seen``: their fields' names, last first (as learn_value walks).
        self._fields: dict[type, tuple[str, ...]] = {}
        self.version = 0

    def find(self, name: str, fields: tuple[str, ...], prefer: Iterable[str] = ()) -> type | None:
        """The class for record ``name`` with ``fields``, looking first in modules ``prefer``."""
        key = (name, fields)
        for module in prefer:
            cls = self._by_module.get(module, {}).get(key)
            if cls is not None:
                return cls
        return self._given.get(key) or self._learned.get(key)

    def add(self, cls: type, given: bool, module: str | None = None) -> None:
        """Know ``cls`` (if it can stand for a record), learned from ``module`` if given."""
        key = record_key(cls)
        if key is None:
            return
        tables = [self._given if given else self._learned]
        if module is not None:
            tables.append(self._by_module.setdefault(module, {}))
        for table in tables:
            if table.get(key) is not cls:
                table[key] = cls
                self.version += 1

    def add_machine(self, m: object, given: bool, module: str | None = None) -> None:
        """The classes of a DSL machine's schemas."""
        schemas = machine_schemas(m)
        for s in (schemas or {}).values():
            for cls in schema_classes(s):
                self.add(cls, given, module)

    def learn_value(self, value: object) -> tuple[str, ...]:
        """Learn from a value sent: the classes of its dataclass instances, and everything the
        modules defining them define (dataclasses, and DSL machines' classes). Returns those
        modules' names, the outermost value's first: what :meth:`find` prefers for its reply."""
        known = self._seen_modules(value)
        if known is not None:
            return known
        modules: list[str] = []
        stack, count = [value], 0
        while stack and count < _LEARN_LIMIT:  # a bound for long and self-referencing values
            v = stack.pop()
            count += 1
            if isinstance(v, tuple | list):  # the first items only of a long list
                stack.extend(reversed(v[: _LEARN_LIMIT - count]))
            elif isinstance(v, dict):
                entries = itertools.islice(v.items(), _LEARN_LIMIT - count)
                for key, item in reversed(list(entries)):
                    stack.extend((item, key))
            elif dataclasses.is_dataclass(v) and not isinstance(v, type):
                cls = type(v)
                if cls.__module__ not in modules:
                    modules.append(cls.__module__)
                if cls not in self._seen:
                    self._seen.add(cls)
                    self._fields[cls] = tuple(f.name for f in reversed(dataclasses.fields(v)))
                    self.learn_module(cls.__module__)
                    # the value's own class wins over its module's (a module run from source
                    # text is gone from sys.modules: then the class is all there is to learn)
                    self.add(cls, given=False, module=cls.__module__)
                stack.extend(getattr(v, f.name, None) for f in reversed(dataclasses.fields(v)))
        return tuple(modules)

    def _seen_modules(self, value: object) -> tuple[str, ...] | None:
        """What :meth:`learn_value` returns for ``value``, if it is small (at most
        :data:`_QUICK` parts) and made of tuples, lists, dicts, plain values and instances of
        classes seen before only: then there is nothing to learn from it, and this walks it as
        learn_value does, in the same order, with the fields' names looked up once per class.
        None for anything else (learn_value then walks it)."""
        fields = self._fields
        modules: list[str] = []
        stack, budget = [value], _QUICK
        while stack:
            v = stack.pop()
            budget -= 1
            if budget < 0:
                return None
            cls = type(v)
            if cls in _PLAIN:
                continue
            if cls is tuple or cls is list:
                items = cast("tuple[object, ...] | list[object]", v)
                if len(items) > budget:
                    return None
                stack.extend(reversed(items))
                continue
            if cls is dict:
                entries = cast("dict[object, object]", v)
                if 2 * len(entries) > budget:
                    return None
                for key, item in reversed(entries.items()):
                    stack.extend((item, key))
                continue
            names = fields.get(cls)
            if names is None:
                return None
            if cls.__module__ not in modules:
                modules.append(cls.__module__)
            stack.extend([getattr(v, name, None) for name in names])
        return tuple(modules)

    def learn_module(self, name: str) -> None:
        """Learn the dataclasses module ``name`` defines (and its DSL machines' classes)."""
        if name in self._modules:
            return
        module = sys.modules.get(name)
        if not isinstance(module, ModuleType):
            return
        self._modules.add(name)
        from hotswap.dsl.api import Machine  # noqa: PLC0415 - the DSL only when values teach

        defined = list(vars(module).values())
        for obj in defined:  # first the classes of the module's machines,
            if isinstance(obj, Machine):
                try:
                    self.add_machine(obj, given=False, module=name)
                except HotswapError:  # a machine that does not compile: nothing to learn
                    continue
        for obj in defined:  # then its own dataclasses, which win over those
            if isinstance(obj, type):
                self.add(obj, given=False, module=name)


def compiled_machine(identity: str, data: bytes | None = None) -> Any:
    """A DSL machine of this program, already compiled (run, sent in an upgrade, ...), whose code
    has ``identity`` (and, given ``data``, exactly those module bytes: the same names): held by
    a loaded module; None if there is none. It finds the module that defines the machine a
    node runs, when this program has it."""
    from hotswap.dsl.api import Machine  # noqa: PLC0415 - the DSL only when a code is unknown

    for module in list(sys.modules.values()):
        if type(module) is not ModuleType:  # a lazy module would be imported by looking
            continue
        for obj in list(vars(module).values()):
            compiled = isinstance(obj, Machine) and "module" in vars(obj)
            if compiled and obj.identity == identity and (data is None or obj.module == data):
                return obj
    return None


def with_classes(s: Schema, find: Callable[[str, tuple[str, ...]], type | None]) -> Schema:
    """``s`` with each record that has no class given the user's class ``find`` answers for
    its name and field names, if any (records left without come back as :class:`Record`)."""
    match s:
        case IntSchema() | BoolSchema() | NoneSchema() | StrSchema():
            return s
        case ListSchema(item):
            return ListSchema(with_classes(item, find))
        case DictSchema(key, value):
            return DictSchema(with_classes(key, find), with_classes(value, find))
        case TupleSchema(items):
            return TupleSchema(tuple(with_classes(i, find) for i in items))
        case RecordSchema(name=name, fields=fields, cls=cls):
            fields = tuple(Field(f.name, with_classes(f.schema, find)) for f in fields)
            if cls is None:
                cls = find(name, tuple(f.name for f in fields))
            return RecordSchema(name, fields, cls)
        case UnionSchema(alternatives):
            return UnionSchema(tuple(with_classes(a, find) for a in alternatives))
        case _:
            assert_never(s)


def classless(s: Schema) -> Iterable[str]:
    """The names of the records of ``s`` that have no class."""
    return (r.name for r in records(s) if r.cls is None)


def schemas_of(code: LoadedModule, local: object | None = None) -> dict[str, Schema] | None:
    """The schemas (Python names) of a machine's input, state and output: a local DSL machine's
    own when it is this module (its classes; the same identity with other names is another
    module), else the module's names section, else None."""
    own = getattr(local, "schemas", None)
    same_identity = getattr(local, "identity", None) == code.identity
    if isinstance(own, dict) and same_identity and getattr(local, "module", code.data) == code.data:
        return own
    return module_schemas(code)


def _identity(v: Any, role: str) -> Any:
    return v


@dataclass(frozen=True, slots=True)
class Converter:
    """Conversions for one loaded module: ``to_core(value, role)`` for what is sent,
    ``from_core(core_value, role)`` for what comes back; ``lacking`` names the records of the
    state and output that come back as :class:`Record` (no user class for them)."""

    identity: str
    to_core: Callable[[Any, str], Value]
    from_core: Callable[[Value, str], Any]
    lacking: tuple[str, ...] = ()


def converter_for(
    code: LoadedModule,
    local: object | None = None,
    classes: Classes | None = None,
    prefer: tuple[str, ...] = (),
) -> Converter:
    """By-name conversion when names are known, else core values unchanged (checked when
    encoded). Values are encoded by the module's names (any class of the right name and fields
    converts, whoever defined it); they come back as ``local``'s classes for its own code, else
    as ``classes``' classes, those of modules ``prefer`` first."""
    schemas = schemas_of(code, local)
    if schemas is None:
        return Converter(code.identity, _identity, _identity)
    sent = module_schemas(code) or schemas  # without a names section: the local machine's
    known = classes or Classes()
    back = {
        role: with_classes(s, lambda name, fields: known.find(name, fields, prefer))
        for role, s in schemas.items()
    }
    lacking = {name for role in RETURNED_ROLES for name in classless(back[role])}
    return Converter(code.identity, _encoding(sent), _decoding(back), tuple(sorted(lacking)))


def _encoding(schemas: Mapping[str, Schema]) -> Callable[[Any, str], Value]:
    """``to_core`` by role, each role's conversion compiled on its first use."""
    compiled: dict[str, Callable[[object, str], Value]] = {}

    def encode(v: Any, role: str) -> Value:
        fn = compiled.get(role)
        if fn is None:
            fn = compiled[role] = to_core_function(schemas[role])
        return fn(v, role)

    return encode


def _decoding(schemas: Mapping[str, Schema]) -> Callable[[Value, str], Any]:
    """``from_core`` by role (the value checked), compiled on first use."""
    compiled: dict[str, Callable[[Value], Any]] = {}

    def decode(v: Value, role: str) -> Any:
        fn = compiled.get(role)
        if fn is None:
            fn = compiled[role] = from_core_function(schemas[role])
        return fn(v)

    return decode


def lacking_message(machine: str, converter: Converter) -> str:
    """What :class:`ClassesUnknownWarning` says."""
    names = ", ".join(converter.lacking)
    return (
        f"machine {machine!r} runs code {converter.identity[:12]} whose classes {names} this "
        "client does not know: its values come back as hotswap.names.schema.Record. Pass the "
        "machine that defines them to connect(..., machines=[...]) (or "
        "client.session.remember(...)), or send a value of a class from their module."
    )


def has_names(code: LoadedModule) -> bool:
    """Whether values of ``code`` can be re-encoded by name."""
    return SECTION in code.custom
