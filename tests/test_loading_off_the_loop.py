"""What a node does away from its event loop, and what it refuses before any of that: a change
for other code loads nothing; a held request's modules load, compile (large sources in a child
process) and have their names read on the worker thread, so that applying it finds all done."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hotswap.cam import codegen, loaded
from hotswap.cam.loaded import is_loaded, load, preload, release
from hotswap.cam.module import Module, encode_module
from hotswap.client import Client, Upgrade
from hotswap.errors import UpgradeRejected
from hotswap.examples import handbuilt
from hotswap.examples.counter import counter_sm, counter_sm2, upgrade_state
from hotswap.names import section
from hotswap.names.schema import Schema
from hotswap.node import compiling
from hotswap.node.memory import MemoryNode
from hotswap.node.service import Service
from hotswap.protocol.events import Deploy, Release, ReleaseItem, UpgradeRequest
from served import Served

V1 = load(handbuilt.counter_module())


@pytest.fixture
def service() -> Iterator[Service]:
    machines = {"abacus": handbuilt.counter_module, "counter": counter_sm}
    with MemoryNode(machines) as node:
        yield node.service


def _fresh(module: Module, tag: bytes) -> bytes:
    """A module's bytes with a custom section of its own: bytes never loaded before."""
    return encode_module(replace(module, custom=(*module.custom, ("zz-fresh", tag))))


def test_a_release_with_one_item_for_other_code_loads_none(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first item names the running code, the second does not: an older node loaded the
    first item's modules, on the event loop, before it looked at the second."""
    loads: list[int] = []
    real = loaded._load

    def counted(data: bytes) -> loaded.LoadedModule:
        loads.append(len(data))
        return real(data)

    monkeypatch.setattr(loaded, "_load", counted)
    v2 = _fresh(handbuilt.counter2_module(), b"release")
    migration = _fresh(handbuilt.upgrade_state_module(), b"release")
    items = (
        ReleaseItem("abacus", V1.identity, v2, migration),
        ReleaseItem("counter", "0" * 64, v2, migration),
    )
    assert service.to_prepare(Release(1, items)) == []
    with pytest.raises(UpgradeRejected, match="counter: The version running") as refused:
        service.registry.release([(i.machine, i.expected, i.module, i.migration) for i in items])
    assert refused.value.code == "wrong_version" and loads == []
    assert not is_loaded(v2) and not is_loaded(migration)


def test_a_deploy_for_a_machine_that_exists_is_loaded_off_the_loop(service: Service) -> None:
    data = _fresh(handbuilt.counter_module(), b"deploy")
    assert service.to_prepare(Deploy(1, "abacus", data)) == [data]


def test_a_held_upgrade_finds_its_names_read_and_compared(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the worker thread's part (``preload``, ``Service.rehearse``), applying the upgrade
    reads no names section."""
    new = _fresh(counter_sm2.loaded.module, b"names")
    migration = _fresh(upgrade_state.loaded.module, b"names")
    request = UpgradeRequest(1, "counter", counter_sm.identity, new, migration)
    assert service.to_prepare(request) == [new, migration]
    for data in (new, migration):
        preload(data)
    service.rehearse(request)
    reads: list[bytes] = []
    real = section.decode_names

    def counted(data: bytes) -> dict[str, Schema]:
        reads.append(data)
        return real(data)

    monkeypatch.setattr(section, "decode_names", counted)
    try:
        swap = service.registry.upgrade("counter", counter_sm.identity, new, migration)
    finally:
        for data in (new, migration):
            release(data, keep=True)
    assert swap.new.identity == counter_sm2.identity and reads == []


def test_a_large_source_compiles_in_a_child_to_the_same_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [f"    x{i} = x + {i}" for i in range(5000)]
    source = "\n".join(["def f(x):", *lines, "    return x4999", ""])
    assert len(source) >= compiling.THRESHOLD
    child = compiling._in_child(source)
    assert child is not None
    assert child == compile(source, codegen.SOURCE_NAME, "exec", dont_inherit=True)
    namespace: dict[str, object] = {}
    exec(compiling.compile_source(source), namespace)
    assert namespace["f"](1) == 5000  # type: ignore[operator]
    bad = "def f(x):\n" + "    return (\n" * 3 + " " * compiling.THRESHOLD
    with pytest.raises(SyntaxError):  # the child fails: compiled here, with Python's error
        compiling.compile_source(bad)
    monkeypatch.setattr(compiling, "_CHILD", "import sys; sys.exit(3)")
    assert compiling._in_child(source) is None
    exec(compiling.compile_source(source), namespace)  # compiled here instead


def test_a_served_upgrade_keeps_its_migration_loaded(tmp_path: Path) -> None:
    """A served node with keyed instances loads an upgrade's modules on its loader thread and
    keeps in its cache what it runs next: the new code, and the migration, which the instances
    run at their next touch (and the way back and forth between two versions again), so the
    next upgrade with the same modules is answered on the event loop, with no loader thread."""
    v2 = _fresh(handbuilt.counter2_module(), b"served")
    migration = _fresh(handbuilt.upgrade_state_module(), b"served")
    with Served(tmp_path, {"abacus": "hotswap.examples.handbuilt:counter_module"}) as node:
        with Client(node.address) as client:
            client.send_raw("abacus", b"\x00", key="k")  # the store holds a keyed instance
            client.upgrade("abacus", Upgrade(V1.data, v2, migration))
        assert is_loaded(v2) and is_loaded(migration)
