"""The node and Python's cyclic garbage collector: what a served node does before it serves
(``compiling.keep_the_loop_free``: startup frozen out of collections), and the property that
makes the collector's work there pure cost: the node's own work leaves no cyclic garbage
(keyed inputs, refused ones, upgrades, status reads, sweeps and commits free everything by
reference counting)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from hotswap.cam.build import migration_module
from hotswap.cam.module import encode_module
from hotswap.examples import handbuilt
from hotswap.lang.terms import ID
from hotswap.lang.types import INT
from hotswap.node.main import NodeOptions, open_service
from hotswap.node.service import Conversation
from hotswap.node.trace import Trace
from hotswap.protocol.connection import ClientConnection
from hotswap.protocol.events import (
    NEED_DATA,
    Error,
    Hello,
    Output,
    Request,
    Send,
    Status,
    StatusReply,
    Upgraded,
    UpgradeRequest,
)

COUNTER = "hotswap.examples.handbuilt:counter_module"
A = encode_module(handbuilt.counter_module())
B = encode_module(handbuilt.counter_commuted_module())
SAME = encode_module(migration_module(INT, INT, ID))


def test_a_served_node_freezes_what_startup_made() -> None:
    """In a fresh interpreter (this one's collector is left alone): what existed before the
    node serves is frozen out of collections, which come as often as Python makes them."""
    script = (
        "import gc\n"
        "from hotswap.node.compiling import keep_the_loop_free\n"
        "before = gc.get_threshold()\n"
        "keep_the_loop_free()\n"
        "print(before == gc.get_threshold(), gc.get_freeze_count() > 1000)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")[0]
    assert out == "True True"  # Python's own thresholds kept; startup frozen


def _workload(data: Path) -> int:
    """Keyed inputs, refused ones, upgrades, status reads, sweeps and commits through a
    conversation, with the collector off; what :func:`gc.collect` then finds."""
    gc.collect()
    gc.disable()
    options = NodeOptions(data=data, machines=(("counter", COUNTER),))
    service = open_service(options, Trace("off"))
    conversation, client = Conversation(service), ClientConnection()

    def exchange(requests: list[Request | Hello]) -> list[object]:
        fed = conversation.receive(b"".join(client.send(r) for r in requests))
        service.commit()
        client.receive_data(b"".join(fed.replies))
        replies: list[object] = []
        while (event := client.next_event()) is not NEED_DATA:
            replies.append(event)
        return replies

    exchange([Hello()])
    expected = service.registry.machines["counter"].identity
    rid = 10
    for turn in range(10):
        inputs: list[Request | Hello] = [
            Send(rid + i, "counter", b"\x00", False, f"user-{(turn * 300 + i) % 1000}")
            for i in range(300)
        ]
        rid += 300
        assert all(isinstance(r, Output) for r in exchange(inputs))
        new = B if turn % 2 else A
        (upgraded,) = exchange([UpgradeRequest(rid, "counter", expected, new, SAME)])
        assert isinstance(upgraded, Upgraded), upgraded
        expected = upgraded.new
        status, refused = exchange(
            [Status(rid + 1, "counter", "user-1"), Send(rid + 2, "counter", b"\xff", False, "x")]
        )
        assert isinstance(status, StatusReply) and isinstance(refused, Error)
        rid += 3
        service.sweep(100)
        service.commit()
    service.store.close()
    return gc.collect()


def test_the_work_of_a_node_leaves_no_cyclic_garbage(tmp_path: Path) -> None:
    """In a fresh interpreter, so that nothing another test left (a thread ending, a loop
    closing) is counted: the node's work frees everything without the collector."""
    script = (
        "import sys; from pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_gc import _workload\n"
        f"print(_workload(Path({str(tmp_path)!r})))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1] == "0", run.stdout
