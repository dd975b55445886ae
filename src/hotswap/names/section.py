"""The ``names`` custom section: the Python names of a module's types, outside its identity.

The section is canonical JSON (UTF-8, keys sorted, no spaces) of an object mapping each role to
a named type tree; a machine has ``input``, ``state`` and ``output``, a migration ``old`` and
``new``, and both carry a ``"version"``::

    "int" | "bool" | "none"                                version 1
    {"tuple": [T, T, ...]}                                 two or more items
    {"record": "Deposit", "fields": [["amount", T], ...]}
    {"union": [T, T, ...]}                                 two or more, none a union
    "str"                                                  version 2
    {"list": T}
    {"dict": [K, V]}                                       K holds no list and no dict

The version is 2 exactly when some role uses ``str``, ``list`` or ``dict``, else 1, so that
every section written before those existed (and every section of names without them) keeps its
bytes, and a release that knows only version 1 refuses a newer section by its version. One set
of names has one encoding: the decoder refuses a version-1 section with a version-2 tree and a
version-2 section without one.

Decoding is strict (sizes, nesting, identifiers, union and key rules, version) and raises
:class:`hotswap.errors.DecodeError`; it never evaluates anything. The upgrade lint that compares
two modules' names is :mod:`hotswap.names.lint`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, assert_never

from hotswap.cam.loaded import LoadedModule
from hotswap.errors import DecodeError
from hotswap.lang.types import Type
from hotswap.names.schema import (
    BOOL_SCHEMA,
    INT_SCHEMA,
    NONE_SCHEMA,
    STR_SCHEMA,
    BoolSchema,
    DictSchema,
    Field,
    IntSchema,
    ListSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    SchemaProblem,
    StrSchema,
    TupleSchema,
    UnionSchema,
    core_type,
    describe,
    union_of,
)

SECTION = "names"
#: The version of sections whose names use only int, bool, None, tuples, records and unions.
VERSION = 1
#: The version of sections that use str, list or dict anywhere.
VERSION_COLLECTIONS = 2
MAX_SECTION_BYTES = 1 << 20
MAX_DEPTH = 64
MACHINE_ROLES = ("input", "state", "output")
MIGRATION_ROLES = ("old", "new")


def schema_json(s: Schema) -> Any:
    """The JSON tree of a schema."""
    match s:
        case IntSchema():
            return "int"
        case BoolSchema():
            return "bool"
        case NoneSchema():
            return "none"
        case StrSchema():
            return "str"
        case ListSchema(item):
            return {"list": schema_json(item)}
        case DictSchema(key, value):
            return {"dict": [schema_json(key), schema_json(value)]}
        case TupleSchema(items):
            return {"tuple": [schema_json(i) for i in items]}
        case RecordSchema(name=name, fields=fields):
            return {"record": name, "fields": [[f.name, schema_json(f.schema)] for f in fields]}
        case UnionSchema(alternatives):
            return {"union": [schema_json(a) for a in alternatives]}
        case _:
            assert_never(s)


def encode_names(roles: Mapping[str, Schema]) -> bytes:
    """The section's canonical bytes for ``roles`` (e.g. input, state and output)."""
    version = VERSION_COLLECTIONS if any(_uses_collections(s) for s in roles.values()) else VERSION
    tree = {"version": version, **{role: schema_json(s) for role, s in roles.items()}}
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def decode_names(data: bytes) -> dict[str, Schema]:
    """The roles of a names section, as schemas without Python classes."""
    if len(data) > MAX_SECTION_BYTES:
        raise DecodeError(f"names section of {len(data)} bytes exceeds {MAX_SECTION_BYTES}")
    try:
        tree = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DecodeError(f"names section is not valid JSON: {e}") from None
    versions = (VERSION, VERSION_COLLECTIONS)
    if not isinstance(tree, dict) or tree.get("version") not in versions:
        raise DecodeError(f"names section must be an object with version {VERSION} or 2")
    version = tree["version"]
    if type(version) is not int:  # JSON's 1.0 or true is not a version
        raise DecodeError(f"names section has a version that is not an integer: {version!r}")
    roles = {}
    for role, value in tree.items():
        if role == "version":
            continue
        if role not in MACHINE_ROLES + MIGRATION_ROLES:
            raise DecodeError(f"names section has an unknown role {role!r}")
        roles[role] = _schema(value, 0, role)
    uses = any(_uses_collections(s) for s in roles.values())
    if uses and version == VERSION:
        raise DecodeError(
            f"names section of version {VERSION} uses str, list or dict, which need version "
            f"{VERSION_COLLECTIONS}"
        )
    if not uses and version == VERSION_COLLECTIONS:
        raise DecodeError(
            f"names section of version {VERSION_COLLECTIONS} uses no str, list or dict: its "
            f"canonical form is version {VERSION}"
        )
    return roles


def _uses_collections(s: Schema) -> bool:
    """Whether ``s`` holds a ``str``, ``list`` or ``dict`` anywhere (a version-2 tree)."""
    match s:
        case StrSchema() | ListSchema() | DictSchema():
            return True
        case IntSchema() | BoolSchema() | NoneSchema():
            return False
        case TupleSchema(items):
            return any(_uses_collections(i) for i in items)
        case RecordSchema(fields=fields):
            return any(_uses_collections(f.schema) for f in fields)
        case UnionSchema(alternatives):
            return any(_uses_collections(a) for a in alternatives)
        case _:
            assert_never(s)


def _schema(value: object, depth: int, path: str) -> Schema:
    if depth > MAX_DEPTH:
        raise DecodeError(f"names section: {path} is nested more than {MAX_DEPTH} deep")
    simple = {"int": INT_SCHEMA, "bool": BOOL_SCHEMA, "none": NONE_SCHEMA, "str": STR_SCHEMA}
    if isinstance(value, str) and value in simple:
        return simple[value]
    if isinstance(value, dict) and value.keys() == {"list"}:
        return ListSchema(_schema(value["list"], depth + 1, f"{path}[i]"))
    if isinstance(value, dict) and value.keys() == {"dict"}:
        pair = value["dict"]
        if not (isinstance(pair, list) and len(pair) == 2):
            raise DecodeError(f"names section: {path} is a dict without [key, value] types")
        key = _schema(pair[0], depth + 1, f"{path}.key")
        item = _schema(pair[1], depth + 1, f"{path}[k]")
        try:
            return DictSchema(key, item)
        except SchemaProblem as e:
            raise DecodeError(f"names section: {path}: {e}") from None
    if isinstance(value, dict) and value.keys() == {"tuple"} and isinstance(value["tuple"], list):
        items = value["tuple"]
        if len(items) < 2:
            raise DecodeError(f"names section: {path} is a tuple of fewer than two items")
        return TupleSchema(
            tuple(_schema(v, depth + 1, f"{path}[{i}]") for i, v in enumerate(items))
        )
    if isinstance(value, dict) and value.keys() == {"record", "fields"}:
        return _record(value["record"], value["fields"], depth, path)
    if isinstance(value, dict) and value.keys() == {"union"} and isinstance(value["union"], list):
        alts = [_schema(v, depth + 1, f"{path}|{i}") for i, v in enumerate(value["union"])]
        if any(isinstance(a, UnionSchema) for a in alts):
            raise DecodeError(f"names section: {path} nests a union directly in a union")
        try:
            return union_of(alts)
        except SchemaProblem as e:
            raise DecodeError(f"names section: {path}: {e}") from None
    raise DecodeError(f"names section: {path} is not a type tree")


def _record(name: object, fields: object, depth: int, path: str) -> Schema:
    if not (isinstance(name, str) and name.isidentifier()):
        raise DecodeError(f"names section: {path} has a record name that is not an identifier")
    if not isinstance(fields, list):
        raise DecodeError(f"names section: record {name} needs a list of fields")
    out: list[Field] = []
    seen: set[str] = set()  # a record of 30,000 fields: a linear check, not 450 million steps
    for entry in fields:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DecodeError(f"names section: record {name} has a malformed field")
        fname = entry[0]
        if not fname.isidentifier() or fname in seen:
            raise DecodeError(f"names section: record {name} has a bad field name {fname!r}")
        seen.add(fname)
        out.append(Field(fname, _schema(entry[1], depth + 1, f"{path}.{fname}")))
    return RecordSchema(name, tuple(out))


def names_for(data: bytes, types: Mapping[str, Type]) -> dict[str, Schema]:
    """Decode a names section and check it describes ``types`` (role -> core type), so names
    shown for a module's values cannot lie about their layout."""
    roles = decode_names(data)
    for role, t in types.items():
        if role not in roles:
            raise DecodeError(f"names section has no {role!r}")
        if core_type(roles[role]) != t:
            raise DecodeError(f"names section: {role} {describe(roles[role])} does not fit {t}")
    return roles


def module_schemas(code: LoadedModule) -> dict[str, Schema] | None:
    """The schemas of a machine module's ``input``, ``state`` and ``output`` from its names
    section, checked against its types; None if it is not a machine or carries no names.
    Decoded once per module (the trace shows every input by them): the result, or the error,
    is kept with the module."""
    sig = code.machine
    data = code.custom.get(SECTION)
    if sig is None or data is None:
        return None
    types = {"input": sig.input, "state": sig.state, "output": sig.output}
    return _once(code, "names: schemas", lambda: names_for(data, types))


def section_roles(code: LoadedModule) -> dict[str, Schema] | None:
    """Every role of a module's names section (a migration's ``old`` and ``new``), unchecked
    against its types; None if it carries none. Decoded once per module."""
    data = code.custom.get(SECTION)
    if data is None:
        return None
    return _once(code, "names: roles", lambda: decode_names(data))


def _once(
    code: LoadedModule, key: str, decode: Callable[[], dict[str, Schema]]
) -> dict[str, Schema]:
    """``decode()``, or what it returned or raised the first time for ``code`` (a copy: the
    caller may change it)."""
    kept = code.memo.get(key)
    if kept is None:
        try:
            kept = decode()
        except DecodeError as e:
            kept = e
        code.memo[key] = kept
    if isinstance(kept, DecodeError):
        raise kept
    assert isinstance(kept, dict)
    return dict(kept)
