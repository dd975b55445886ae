"""The command line, against a node served on loopback (in this process), and once as a
real ``python -m hotswap`` process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hotswap.cam.module import encode_module
from hotswap.examples import handbuilt
from hotswap.examples.counter import counter_sm
from served import Served, run_cli

COUNTER = "hotswap.examples.handbuilt:counter_module"


def _process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotswap", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_send_status_history_and_upgrade(tmp_path: Path) -> None:
    """The CLI speaks the seed's value syntax and reports the node's answers."""
    with Served(tmp_path, {"counter": COUNTER}) as node:
        at = ("--node", node.address)
        sent = run_cli("send", *at, "counter", "L Unit")
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.splitlines() == ["Output:    L Unit", "New state: Int 1"]
        up = run_cli(
            "upgrade",
            *at,
            "counter",
            "--to",
            "hotswap.examples.handbuilt:counter2_module",
            "--migration",
            "hotswap.examples.handbuilt:upgrade_state_module",
        )
        assert up.returncode == 0, up.stderr
        assert up.stdout.startswith("Upgrade successful!")
        status = run_cli("status", *at, "counter")
        assert "state   Pair (Int 1) (Int 0)" in status.stdout
        history = run_cli("history", *at, "counter")
        kinds = [line.split()[2] for line in history.stdout.splitlines()]
        assert kinds == ["start", "upgrade"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("send", "counter", "Int 3"), "expected 'L' or 'R'"),
        (("send", "nope", "L Unit"), "no machine 'nope'"),
        (("upgrade", "counter", "--to", "no.such:thing", "--migration", "x:y"), "cannot import"),
    ],
)
def test_cli_errors_are_one_line_and_non_zero(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    with Served(tmp_path, {"counter": COUNTER}) as node:
        result = run_cli(args[0], "--node", node.address, *args[1:])
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_cli_without_a_node_says_so() -> None:
    """As a real process: the program's entry point, exit status and stderr."""
    result = _process("status", "--node", "127.0.0.1:9")
    assert result.returncode == 1
    assert "cannot reach a node at 127.0.0.1:9" in result.stderr


def test_cli_dis_prints_a_listing(tmp_path: Path) -> None:
    path = tmp_path / "counter.hsm"
    path.write_bytes(encode_module(handbuilt.counter_module()))
    result = run_cli("dis", str(path))
    assert result.returncode == 0
    assert "function 1 (step): (Bool x Int) -> (Int x (Unit + Int))" in result.stdout
    path.write_bytes(b"\x00hsm\x01garbage")
    result = run_cli("dis", str(path))
    assert result.returncode == 1 and "hotswap:" in result.stderr


def test_cli_send_by_python_name(tmp_path: Path) -> None:
    """A DSL machine's inputs can be written by name; the seed syntax works too."""
    with Served(tmp_path, {"counter": "hotswap.examples.counter:counter_sm"}) as node:
        by_name = run_cli("send", "--node", node.address, "counter", "Incr()")
        seed = run_cli("send", "--node", node.address, "counter", "R Unit")
        wrong = run_cli("send", "--node", node.address, "counter", "Decr()")
        status = run_cli("status", "--node", node.address, "counter")
        named = run_cli("send", "--node", node.address, "--names", "counter", "Count()")
    assert by_name.stdout.splitlines() == ["Output:    L Unit", "New state: Int 1"]
    assert seed.stdout.splitlines() == ["Output:    R (Int 1)", "New state: Int 1"]
    assert wrong.returncode == 1 and "'Decr()' as a Python value: " in wrong.stderr
    assert "(as a seed-syntax value: " in wrong.stderr  # the other reading comes second
    assert "names   input Incr | Count, state int, output None | int" in status.stdout
    assert named.stdout.splitlines() == ["Output:    1", "New state: 1"]


def test_cli_dry_run_trial_and_revert(tmp_path: Path) -> None:
    """`--dry-run` shows what would differ and changes nothing; `--trial` and `revert` take
    an upgrade back exactly; `status` and `history` show generations and the trial."""
    with Served(tmp_path, {"counter": "hotswap.examples.counter:counter_sm"}) as node:
        at = ("--node", node.address)
        for _ in range(3):
            assert run_cli("send", *at, "counter", "Incr()").returncode == 0
        assert run_cli("send", *at, "counter", "Count()").returncode == 0
        up = ("upgrade", *at, "counter", "--to", "hotswap.examples.counter:counter_sm2")
        mig = ("--migration", "hotswap.examples.counter:upgrade_state")
        whole = run_cli(*up, *mig, "--dry-run")  # from the start, v2 counts the same: 3
        assert whole.stdout.startswith("Dry run of counter: 4 recent input(s) replayed on the ")
        assert "0 output(s) differ" in whole.stdout
        dry = run_cli(*up, *mig, "--dry-run", "--inputs", "1")  # from 3: v2 counts anew
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.splitlines()[:4] == [
            "Dry run of counter: 1 recent input(s) replayed on the new code, 1 output(s) "
            "differ, 0 trap(s); nothing changed",
            "  input 3: Count()",
            "    running code: 3",
            "    new code:     0",
        ]
        trial = run_cli(*up, "--trial", "10")
        assert trial.returncode == 0, trial.stderr
        assert "It is a trial for 10 input(s)" in trial.stdout
        run_cli("send", *at, "counter", "Incr()")
        status = run_cli("status", *at, "counter")
        assert "trial   9 input(s) left" in status.stdout and "generation 1" in status.stdout
        reverted = run_cli("revert", *at, "counter")
        assert reverted.returncode == 0, reverted.stderr
        assert "1 input(s) replayed on it" in reverted.stdout
        assert "state   Int 4" in run_cli("status", *at, "counter").stdout
        again = run_cli("confirm", *at, "counter")
        assert again.returncode == 1 and "no trial upgrade to confirm" in again.stderr
        history = run_cli("history", *at, "counter").stdout.splitlines()
        assert [line.split()[-1].rstrip(")") for line in history] == ["0", "1", "2"]


def test_cli_timed_trial_ends_on_the_servers_timer(tmp_path: Path) -> None:
    """With no traffic at all, a node makes a timed trial permanent once its time is up."""
    with Served(tmp_path, {"counter": "hotswap.examples.counter:counter_sm"}) as node:
        at = ("--node", node.address)
        up = run_cli(
            "upgrade",
            *at,
            "counter",
            "--to",
            "hotswap.examples.counter:counter_sm2",
            "--trial-seconds",
            "1",
        )
        assert up.returncode == 0, up.stderr
        assert "It is a trial for 1 s" in up.stdout
        assert "permanent at" in run_cli("status", *at, "counter").stdout
        deadline = time.monotonic() + 10
        while "trial" in run_cli("status", *at, "counter").stdout:
            assert time.monotonic() < deadline, "the trial never ended"
            time.sleep(0.2)
        assert any("Trial of counter confirmed" in line for line in node.lines())
        bad = run_cli("upgrade", *at, "counter", "--to", "x:y", "--trial", "-1")
        assert bad.returncode == 1 and "give N >= 1" in bad.stderr
        # 0 made the upgrade permanent, saying nothing of the trial asked for
        for flag in ("--trial", "--trial-seconds"):
            to = "hotswap.examples.counter:counter_sm"
            bad = run_cli("upgrade", *at, "counter", "--to", to, flag, "0")
            assert bad.returncode == 1 and f"{flag} 0:" in bad.stderr, bad.stderr


def test_cli_upgrade_to_the_running_code_changes_nothing(tmp_path: Path) -> None:
    """Run twice by mistake, the second upgrade made a new generation of the same code."""
    with Served(tmp_path, {"counter": "hotswap.examples.counter:counter_sm"}) as node:
        at = ("--node", node.address)
        up = ("upgrade", *at, "counter", "--to", "hotswap.examples.counter:counter_sm2")
        assert run_cli(*up).returncode == 0
        again = run_cli(*up)
        assert again.returncode == 0, again.stderr
        assert "already runs" in again.stdout and "nothing changed" in again.stdout
        assert "generation 1" in run_cli("status", *at, "counter").stdout
        assert len(run_cli("history", *at, "counter").stdout.splitlines()) == 2


def test_cli_refuses_options_that_would_be_ignored(tmp_path: Path) -> None:
    with Served(tmp_path, {"counter": "hotswap.examples.counter:counter_sm"}) as node:
        up = ("upgrade", "--node", node.address, "counter", "--to", "x:y")
        for extra, message in (
            (("--inputs", "5"), "add --dry-run"),
            (("--dry-run", "--inputs", "0"), "--inputs must be at least 1"),
            (("--generation", "-1"), "--generation must be 0 or more"),
            (("--dry-run", "--trial", "3"), "choose one"),
        ):
            result = run_cli(*up, *extra)
            assert result.returncode == 1 and message in result.stderr, (extra, result.stderr)


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`hotswap ... | head`: the reader closes the pipe; no traceback, no error line."""
    module = tmp_path / "counter.hsm"
    module.write_bytes(counter_sm.module)
    program = [sys.executable, "-m", "hotswap", "dis", str(module)]
    proc = subprocess.Popen(program, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the command writes a byte
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(timeout=30) == 141
    assert err == b""


def test_cli_cuts_large_states_short_unless_asked_for_all(tmp_path: Path) -> None:
    """``send`` and ``status`` print a state's first 2,000 characters and what they left out,
    as the node's trace does; ``--full`` prints the whole of it."""
    with Served(tmp_path, {"grow": "cli_machines:grow"}) as node:
        at = ("--node", node.address)
        sent = run_cli("send", *at, "grow", "3000")
        assert sent.returncode == 0, sent.stderr
        output, state = sent.stdout.splitlines()
        assert output == "Output:    Int 3000"
        assert state.startswith("New state: Map [Int 0 => Int 0, Int 1 => Int 1, Int 2 => Int 4, ")
        assert state.endswith(
            "(cut at 2000 characters: a map of 3,000 entries) (--full shows the whole state)"
        )
        assert len(state) < 2200
        status = run_cli("status", *at, "grow")
        (line,) = [x for x in status.stdout.splitlines() if x.startswith("  state   ")]
        assert line.endswith("(--full shows the whole state)")
        full = run_cli("status", *at, "grow", "--full")
        (line,) = [x for x in full.stdout.splitlines() if x.startswith("  state   ")]
        assert "cut at" not in line
        assert line.endswith("Int 2999 => Int 8994001]")
        small = run_cli("send", *at, "grow", "0", "--full")
        assert small.stdout.splitlines()[0] == "Output:    Int 3000"
