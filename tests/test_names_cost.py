"""What a names section costs a node: reading it is linear in its size, it is read once per
module (the trace shows every input by it), what the upgrade lint finds is worked out once per
pair of modules, and no cache keeps what a stranger's sections decode to."""

from __future__ import annotations

import gc
import io
import json
import time
import weakref
from dataclasses import replace

import pytest

from hotswap.cam.loaded import DEFAULT_CACHE_BYTES, LoadedModule, load, set_cache_bytes
from hotswap.client import Client
from hotswap.errors import DecodeError
from hotswap.examples.counter import Incr, counter_sm, counter_sm2
from hotswap.names import lint, section
from hotswap.names import schema as schema_module
from hotswap.names.lint import nominal_notes
from hotswap.names.schema import core_type
from hotswap.names.section import MAX_SECTION_BYTES, SECTION, decode_names, module_schemas
from hotswap.node.memory import MemoryNode
from hotswap.node.trace import Trace


def _wide(fields: int, kind: str = "record") -> bytes:
    tree: dict[str, object]
    if kind == "record":
        tree = {"record": "Wide", "fields": [[f"f{i}", "int"] for i in range(fields)]}
    elif kind == "union":
        tree = {"union": [{"record": f"R{i}", "fields": []} for i in range(fields)]}
    else:
        tree = {"tuple": ["int"] * fields}
    doc = {"input": tree, "output": "int", "state": "int", "version": 1}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("ascii")


def _took(data: bytes) -> float:
    started = time.perf_counter()
    decode_names(data)
    return time.perf_counter() - started


@pytest.mark.parametrize("kind", ["record", "union", "tuple"])
def test_reading_a_names_section_is_linear_in_its_size(kind: str) -> None:
    """A record of 30,000 fields (500 KB) took 20 s: each field's name was looked for among
    the fields before it. It now takes tens of milliseconds; the bound asserted, 2 s, is loose
    enough for any loaded machine and still fails on the quadratic reading."""
    large = _wide(30_000, kind)
    assert len(large) < MAX_SECTION_BYTES
    assert min(_took(large) for _ in range(2)) < 2.0


def _counter_with(names: bytes) -> bytes:
    module = counter_sm.loaded.module
    custom = tuple((k, names if k == SECTION else v) for k, v in module.custom)
    return load(replace(module, custom=custom)).data


def test_a_modules_names_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """And so are the errors of unreadable ones: the trace of every input asks again."""
    reads: list[int] = []
    real = section.decode_names

    def counted(data: bytes) -> dict[str, schema_module.Schema]:
        reads.append(len(data))
        return real(data)

    monkeypatch.setattr(section, "decode_names", counted)
    # module bytes no earlier test loaded (the names as other JSON): their names unread yet
    module = counter_sm.loaded.module
    names = json.dumps(json.loads(dict(module.custom)[SECTION]), indent=1).encode()
    custom = tuple((name, names if name == SECTION else data) for name, data in module.custom)
    good = load(replace(module, custom=custom))
    bad = load(replace(good.module, custom=((SECTION, b'{"version": 1, "input": "str"}'),)))
    for _ in range(3):
        assert module_schemas(good) is not None
        with pytest.raises(DecodeError):
            module_schemas(bad)
    assert len(reads) == 2
    out = io.StringIO()
    with (
        MemoryNode({"counter": counter_sm}, trace=Trace("names", out)) as node,
        Client(transport=node.connection()) as client,
    ):
        for _ in range(20):
            client.send("counter", Incr())
    assert out.getvalue().count("New state: 20") == 1 and len(reads) <= 4


def test_the_lint_of_two_modules_is_worked_out_once_and_keeps_neither_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node works it out on the worker thread that loads an upgrade's modules, and finds it
    done on the event loop. What a module remembers of another holds it weakly."""
    works: list[object] = []
    real = lint._nominal_notes

    def counted(old: LoadedModule, new: LoadedModule) -> tuple[str, ...]:
        works.append(old)
        return real(old, new)

    monkeypatch.setattr(lint, "_nominal_notes", counted)
    old, new = load(counter_sm.loaded.module), load(counter_sm2.loaded.module)
    assert nominal_notes(old, new) == nominal_notes(old, new)
    assert len(works) == 1
    other = load(replace(old.module, custom=((SECTION, old.custom[SECTION]), ("x", b"1"))))
    nominal_notes(other, new)
    assert len(works) == 2
    gone = weakref.ref(other)
    del other, works[:]
    set_cache_bytes(0)  # the cache let go of it too
    set_cache_bytes(DEFAULT_CACHE_BYTES)
    gc.collect()
    assert gone() is None  # the new module's memory of it did not keep it


def test_no_cache_keeps_the_core_types_of_large_schemas() -> None:
    for fields in (2_000, 2_001, 2_002):
        roles = decode_names(_wide(fields))
        core_type(roles["input"])
    assert all(_nodes(s) <= 256 for s in schema_module._core_types)
    assert len(schema_module._core_types) <= schema_module._CORE_TYPES_KEPT


def _nodes(s: schema_module.Schema) -> int:
    match s:
        case schema_module.RecordSchema(fields=fields):
            return 1 + sum(_nodes(f.schema) for f in fields)
        case schema_module.TupleSchema(items=items) | schema_module.UnionSchema(alternatives=items):
            return 1 + sum(_nodes(i) for i in items)
        case schema_module.ListSchema(item=item):
            return 1 + _nodes(item)
        case schema_module.DictSchema(key=key, value=value):
            return 1 + _nodes(key) + _nodes(value)
        case _:
            return 1
