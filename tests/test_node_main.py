"""Starting a node (``node/main.py``): what it refuses, what it says, what it recovers."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from hotswap.address import format_address, parse_address, socket_address
from hotswap.code import import_object
from hotswap.errors import HotswapError, StoreError
from hotswap.examples.counter import counter_sm
from hotswap.node.main import NodeOptions, open_service
from hotswap.node.service import NodeConfig
from hotswap.node.trace import Trace
from served import Served, run_cli

COUNTER = "hotswap.examples.counter:counter_sm"


def _options(tmp_path: Path, **machines: str) -> NodeOptions:
    return NodeOptions(data=tmp_path / "data", machines=tuple(machines.items()))


def test_a_machine_name_the_protocol_cannot_carry_is_refused(tmp_path: Path) -> None:
    """`--machine "bad name=..."` started a node whose `machines` reply could not be encoded:
    `hotswap status` then failed for everyone and the node logged a traceback."""
    with pytest.raises(HotswapError, match="bad machine name 'bad name'"):
        open_service(_options(tmp_path, **{"bad name": COUNTER}), Trace("off", io.StringIO()))


def test_a_node_name_the_protocol_cannot_carry_is_refused(tmp_path: Path) -> None:
    """`--name` longer than 256 characters made every handshake fail (welcome unencodable)."""
    options = NodeOptions(
        data=tmp_path / "data", machines=(("counter", COUNTER),), config=NodeConfig(name="x" * 300)
    )
    with pytest.raises(HotswapError, match="node name"):
        open_service(options, Trace("off", io.StringIO()))


def test_machine_flag_with_other_code_for_a_stored_machine_says_so(tmp_path: Path) -> None:
    """A `--machine` whose code differs from the stored machine's was ignored silently."""
    open_service(_options(tmp_path, counter=COUNTER), Trace("off", io.StringIO())).store.close()
    out = io.StringIO()
    node = open_service(
        _options(tmp_path, counter="hotswap.examples.counter:counter_sm2"), Trace("off", out)
    )
    node.store.close()
    assert "keeps running" in out.getvalue() and "hotswap upgrade" in out.getvalue()


def test_a_reference_to_a_function_with_arguments_is_a_one_line_error() -> None:
    """`--to os.path:join` called join() and escaped the CLI as a TypeError traceback."""
    argv = ["upgrade", "c", "--to", "os.path:join", "--migration", "os.path:join"]
    result = run_cli(*argv, "--node", "127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "takes arguments" in result.stderr


def test_machines_can_be_given_as_objects(tmp_path: Path) -> None:
    """The in-memory node and tests pass machines themselves, not references."""
    options = NodeOptions(data=tmp_path / "data", machines=(("counter", counter_sm),))
    service = open_service(options, Trace("off", io.StringIO()))
    try:
        assert service.registry.get("counter").identity == counter_sm.identity
    finally:
        service.store.close()


def test_a_module_in_the_directory_the_command_does_not_search_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``hotswap`` command does not search the directory it runs in (``python -m`` does):
    a reference to a module there says so, and how to import it, instead of only "No module"."""
    (tmp_path / "mymachines.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    with pytest.raises(HotswapError, match=r"current directory.*PYTHONPATH=\."):
        import_object("mymachines:m")
    with pytest.raises(HotswapError) as other:  # not there: no such hint
        import_object("elsewhere:m")
    assert "current directory" not in str(other.value)


def test_a_failed_start_releases_the_store(tmp_path: Path) -> None:
    """A start that fails after opening the store (here: an import error) must not keep the
    store's lock, or the corrected start in the same process would find it taken."""
    with pytest.raises(HotswapError, match="cannot import"):
        open_service(_options(tmp_path, counter="no.such:machine"), Trace("off", io.StringIO()))
    service = open_service(_options(tmp_path, counter=COUNTER), Trace("off", io.StringIO()))
    service.store.close()


def test_a_second_node_on_a_data_directory_in_use_writes_nothing_into_it(tmp_path: Path) -> None:
    """It stopped at the store's lock only after making the first start's credentials (an
    admin token, credentials.json, the directory's mode) in the running node's directory."""
    data = tmp_path / "data"
    with Served(data, {"counter": counter_sm}):
        before = sorted(p.name for p in data.iterdir())
        mode = data.stat().st_mode
        options = NodeOptions(data=data, machines=(("counter", counter_sm),), auth=True)
        with pytest.raises(StoreError, match="in use by another node"):
            open_service(options, Trace("off"))
        assert sorted(p.name for p in data.iterdir()) == before
        assert data.stat().st_mode == mode


def test_addresses_are_written_as_they_are_read_back() -> None:
    """An IPv6 listening address was shown as `:::7411`, which nothing reads back."""
    assert format_address("::", 7411) == "[::]:7411"
    assert socket_address(("::1", 7000, 0, 0)) == "[::1]:7000"
    assert socket_address(("127.0.0.1", 7000)) == "127.0.0.1:7000"
    for text in ("[::]:7411", "[::1]:7000", "127.0.0.1:7000"):
        assert format_address(*parse_address(text)) == text
