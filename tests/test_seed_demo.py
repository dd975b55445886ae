"""The seed's demo, word for word: `make run`'s node, driven from a Python REPL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hotswap.client import Upgrade, connect
from hotswap.dsl import compile_source
from hotswap.errors import UpgradeRejected, ValueTypeError
from hotswap.examples.counter import Count, Incr, counter_sm, counter_sm2, upgrade_state
from nodeproc import NodeProcess

COUNTER = "hotswap.examples.counter:counter_sm"

#: The node's side of the seed README, line for line (blank lines included).
SEED_TRANSCRIPT = """\
Output:    L Unit
New state: Int 1

Output:    R (Int 1)
New state: Int 1

Upgrade successful!

Output:    L Unit
New state: Pair (Int 1) (Int 1)

Output:    L Unit
New state: Pair (Int 1) (Int 2)

Output:    R (Int 2)
New state: Pair (Int 1) (Int 2)

The version running isn't the one the upgrade expects. Aborting upgrade.
"""

#: What a newcomer types into `python3` in the second terminal.
REPL_SESSION = """\
from hotswap.examples.counter import *
incr()
count()
upgrade(Upgrade(counter_sm, counter_sm2, upgrade_state))
incr()
incr()
count()
upgrade(Upgrade(counter_sm, counter_sm2, upgrade_state))
"""


def _trace(lines: list[str]) -> str:
    notes = ("Started", "Listening", "Recovered", "Recovery")
    kept = [line for line in lines if not line.startswith(notes)]
    return "\n".join(kept).strip("\n") + "\n"


def test_repl_session_reproduces_the_seed_transcript(tmp_path: Path) -> None:
    """A real interactive interpreter types the seed's session; the node prints the seed's
    lines exactly, `count()` echoes the counts and the second upgrade raises."""
    with NodeProcess(tmp_path, {"counter": COUNTER}) as node:
        env = dict(os.environ, HOTSWAP_NODE=node.address)
        repl = subprocess.run(
            [sys.executable, "-i", "-q"],
            input=REPL_SESSION,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert _trace(node.lines()) == SEED_TRANSCRIPT
    echoed = [line.lstrip(">. ") for line in repl.stdout.splitlines()]
    assert [e for e in echoed if e] == ["1", "2"], repl.stdout
    assert "hotswap.errors.UpgradeRejected: The version running isn't the one" in repl.stderr


def test_client_api_gives_python_values(tmp_path: Path) -> None:
    """Inputs and outputs cross as Python values: Incr(), None, ints, tuples."""
    with NodeProcess(tmp_path, {"counter": COUNTER}) as node, connect(node.address) as client:
        assert client.send("counter", Incr()) is None
        assert client.send("counter", Count()) == 1
        client.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        assert client.send("counter", Incr()) is None
        assert client.status("counter").state == (1, 1)
        with pytest.raises(UpgradeRejected, match="isn't the one the upgrade expects"):
            client.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        with pytest.raises(ValueTypeError, match=re.escape("expected Incr | Count")):
            client.send("counter", 5)


def test_names_trace_and_nominal_lint(tmp_path: Path) -> None:
    """--trace names shows Python names; an upgrade that swaps variant names is flagged."""
    swapped = compile_source(
        "@dataclass(frozen=True)\nclass Count:\n    pass\n\n"
        "@dataclass(frozen=True)\nclass Incr:\n    pass\n\n"
        "@machine(init=0)\n"
        "def flipped(inp: Count | Incr, state: int) -> tuple[int, None | int]:\n"
        "    match inp:\n"
        "        case Count():\n"
        "            return state + 1, None\n"
        "        case Incr():\n"
        "            return state, state\n"
        "\n@migration(flipped, flipped)\ndef same(old: int) -> int:\n    return old\n"
    )
    with (
        NodeProcess(tmp_path, {"counter": COUNTER}, "--trace", "names") as node,
        connect(node.address) as client,
    ):
        client.send("counter", Incr())
        client.upgrade("counter", Upgrade(counter_sm, swapped["flipped"], swapped["same"]))
        lines = node.lines()
    assert "Output:    None" in lines and "New state: 1" in lines
    notes = [line for line in lines if line.startswith("Note: ")]
    assert notes and "Incr" in notes[0] and "Count" in notes[0]
