"""Starting a node: open the store, recover, start the configured machines, serve."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

from hotswap.cam.loaded import LoadedModule
from hotswap.cam.module import Module, encode_module
from hotswap.errors import HotswapError, NodeError
from hotswap.node.registry import Registry, load_machine_code
from hotswap.node.server import Node, NodeConfig
from hotswap.node.store import SNAPSHOT_EVERY, Store
from hotswap.node.trace import Trace
from hotswap.protocol.fields import NAME, SHORT_TEXT, InvalidField

DEFAULT_PORT = 7411
DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"


@dataclass(frozen=True, slots=True)
class NodeOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data: Path = Path("hotswap-data")
    machines: tuple[tuple[str, str], ...] = ()  # (name, "module:attribute")
    fsync: bool = False
    snapshot_every: int = SNAPSHOT_EVERY
    config: NodeConfig = field(default_factory=NodeConfig)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, or ``PORT``) into a pair; :class:`HotswapError` if not."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    try:
        number = int(port)
    except ValueError:
        raise HotswapError(f"bad address {text!r}: expected HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise HotswapError(f"bad address {text!r}: port {number} out of range")
    return (host.strip("[]") or "127.0.0.1"), number


def check_machine_name(name: str) -> None:
    """:class:`HotswapError` unless ``name`` is a machine name the protocol can carry."""
    try:
        NAME.encode(name)
    except InvalidField:
        msg = f"bad machine name {name!r}: expected 1 to 64 characters from A-Z a-z 0-9 _ . -"
        raise HotswapError(msg) from None


def module_bytes(obj: object, where: str) -> bytes:
    """Module bytes from a DSL machine (``.module``), a :class:`Module`, a loaded module, bytes,
    or a function of no arguments returning one of these."""
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, Module):
        return encode_module(obj)
    if isinstance(obj, LoadedModule):
        return obj.data
    data = getattr(obj, "module", None)
    if isinstance(data, bytes):
        return data
    if isinstance(data, Module):
        return encode_module(data)
    if inspect.isfunction(obj):
        try:
            inspect.signature(obj).bind()
        except TypeError:
            raise HotswapError(
                f"{where} is a function that takes arguments, not a machine"
            ) from None
        return module_bytes(obj(), where)
    raise HotswapError(f"{where} is not a machine (no module bytes): {obj!r}")


def import_object(spec: str) -> object:
    """The object named by ``package.module:attribute``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise HotswapError(f"bad reference {spec!r}: expected module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise HotswapError(f"cannot import {module_name!r}: {e}") from None
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise HotswapError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return obj


def prepare(options: NodeOptions, trace: Trace) -> Node:
    """Open the store, recover, start configured machines the store does not have yet."""
    for name, _ in options.machines:
        check_machine_name(name)
    try:
        SHORT_TEXT.encode(options.config.name)
    except InvalidField:
        raise HotswapError(
            f"bad node name: at most 256 characters, got {len(options.config.name)}"
        ) from None
    options.data.mkdir(parents=True, exist_ok=True)
    store = Store(
        options.data / "node.sqlite3", fsync=options.fsync, snapshot_every=options.snapshot_every
    )
    registry = Registry()
    recovery = store.recover()
    for machine in recovery.machines:
        registry.restore(machine)
        trace.note(
            f"Recovered machine {machine.name!r} on {machine.identity[:12]} "
            f"after {machine.inputs} inputs, {len(machine.history) - 1} upgrade(s)"
        )
    if recovery.machines:
        trace.note(
            f"Recovery replayed {recovery.replayed} log entries in {recovery.seconds * 1000:.0f} ms"
        )
    for name, spec in options.machines:
        code = load_machine_code(module_bytes(import_object(spec), spec))
        running = registry.machines.get(name)
        if running is not None:
            if running.identity != code.identity:
                trace.note(
                    f"Note: {name!r} keeps running {running.identity[:12]}; --machine "
                    f"{name}={spec} ({code.identity[:12]}) only starts a machine the store lacks: "
                    "use `hotswap upgrade` to change its code"
                )
            continue
        machine = registry.start(name, code)
        store.log_start(machine)
        trace.note(f"Started machine {name!r} on {code.identity[:12]}")
    store.commit(registry.machines)
    if not registry.machines:
        raise NodeError("bad_request", "no machines: give --machine NAME=module:attribute")
    return Node(registry, store, trace, options.config)


def run(options: NodeOptions, trace: Trace, loop: str = "auto") -> None:
    """Serve until SIGINT/SIGTERM. ``loop``: ``uvloop``, ``asyncio`` or ``auto`` (uvloop if
    installed)."""
    node = prepare(options, trace)
    try:
        if loop != "asyncio":
            try:
                import uvloop  # noqa: PLC0415 - optional: the node runs on plain asyncio too
            except ImportError:
                if loop == "uvloop":
                    raise HotswapError("--loop uvloop: uvloop is not installed") from None
            else:
                uvloop.run(node.serve(options.host, options.port))
                return
        asyncio.run(node.serve(options.host, options.port))
    finally:
        node.store.close()
