"""The node bench's pipelined figure counts replies by their frames alone; the last reply is
decoded after the clock stops, so a run the node answered with errors gives no figure."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from hotswap.client import Client
from hotswap.examples import handbuilt
from served import Served


def _bench_node(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent))  # ``bench`` is at the root
    return importlib.import_module("bench.bench_node")


def test_a_pipelined_run_answered_with_errors_gives_no_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench_node = _bench_node(monkeypatch)
    with Served(tmp_path / "a", {"counter": handbuilt.counter_module}, trace="off") as node:
        assert bench_node._pipelined(node.address, total=8, window=4) > 0
    with (
        Served(tmp_path / "b", {"other": handbuilt.counter_module}, trace="off") as node,
        pytest.raises(RuntimeError, match=r"last input with Error\(id=8, .*unknown_machine"),
    ):
        bench_node._pipelined(node.address, total=8, window=4)


def test_a_keyed_pipelined_run_answered_with_errors_gives_no_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keyed-instance bench measures through the same function, each input to its key."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent))
    bench_instances = importlib.import_module("bench.bench_instances")
    keys = [3, 1, 4, 1, 5, 9, 2, 6]
    with Served(tmp_path / "a", {"counter": handbuilt.counter_module}, trace="off") as node:
        assert bench_instances._pipelined(node.address, keys, window=4) > 0
        with Client(node.address) as client:
            page = client.instances("counter")
        assert sorted(page.keys) == sorted(f"user-{k}" for k in set(keys))
    with (
        Served(tmp_path / "b", {"other": handbuilt.counter_module}, trace="off") as node,
        pytest.raises(RuntimeError, match=r"last input with Error\(id=8, .*unknown_machine"),
    ):
        bench_instances._pipelined(node.address, keys, window=4)
