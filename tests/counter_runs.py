"""The hand-built counter run through a registry and a store, as the node would, for the
store's tests: a number of inputs, the seed's upgrade before one of them, a commit every 7."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hotswap.cam.loaded import load
from hotswap.cam.module import encode_module
from hotswap.examples import handbuilt
from hotswap.node.registry import Machine, Registry
from hotswap.node.store import Store

INCR = b"\x00"


def upgrade_counter(registry: Registry, store: Store, machine: Machine) -> None:
    """The seed's upgrade of the counter, made and logged (commit follows)."""
    done = registry.upgrade(
        "counter",
        machine.identity,
        encode_module(handbuilt.counter2_module()),
        encode_module(handbuilt.upgrade_state_module()),
    )
    store.log_upgrade(machine, done)


def run_counter(
    path: Path,
    inputs: int,
    *,
    upgrade_at: int | None = None,
    killed: bool = False,
    **store_options: Any,
) -> Registry:
    """``inputs`` inputs of the counter into a store at ``path`` (``Store(path,
    **store_options)``), the seed's upgrade before input ``upgrade_at``; then the store is
    closed, or, ``killed``, left as a killed node leaves it (no checkpoint)."""
    store = Store(path, **store_options)
    registry = Registry()
    machine = registry.start("counter", load(handbuilt.counter_module()))
    store.log_start(machine)
    for i in range(inputs):
        if i == upgrade_at:
            upgrade_counter(registry, store, machine)
        store.log_input(machine, INCR, registry.step("counter", INCR).identity)
        if i % 7 == 6:
            store.commit(registry.machines)
    store.commit(registry.machines)
    if killed:
        store.db.close()
    else:
        store.close()
    return registry
