"""The Erlang baseline for ``bench.bench_node``: distributed ``gen_server:call`` on loopback.

Two Erlang nodes on 127.0.0.1 (``-name``, so the distribution connection is loopback whatever
the host name resolves to), sharing a random cookie: one runs the counter of
``bench/erlang/counter.erl``; the other calls ``incr`` on it for a fixed time with 1 client
process, then with 16 concurrent ones, and prints calls/s for each. The module is compiled with
``erlc`` into a temporary directory at each run. Optional: :func:`available` is false without
``erl``/``erlc`` (``apt-get install erlang-nox``), and nothing in ``make test`` imports this.

    .venv/bin/python -m bench.bench_erlang     # the Erlang figures alone
"""

from __future__ import annotations

import os
import re
import secrets
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).parent / "erlang" / "counter.erl"
CLIENTS = (1, 16)
INSTALL_HINT = "apt-get install erlang-nox"


def available() -> bool:
    return shutil.which("erl") is not None and shutil.which("erlc") is not None


def _epmd_running() -> bool:
    epmd = shutil.which("epmd")
    if epmd is None:
        return False
    probe = subprocess.run([epmd, "-names"], capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


def _erl(name: str, cookie: str, code: Path, expression: str) -> list[str]:
    return [
        "erl",
        "-noinput",
        "-name",
        name,
        "-setcookie",
        cookie,
        "-kernel",
        "inet_dist_use_interface",
        "{127,0,0,1}",
        "-pa",
        str(code),
        "-eval",
        expression,
    ]


def _read_line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    """The next line of ``proc``'s stdout, or an error once ``deadline`` passes."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise RuntimeError("Erlang server node did not start in time")
        chunk = os.read(fd, 1)
        if not chunk:
            raise RuntimeError(f"Erlang server node exited: {line.decode(errors='replace')}")
        line += chunk
    return line.decode()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # erl stops cleanly on SIGTERM
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def measure(seconds: float = 2.0, timeout: float = 120.0) -> dict[int, float]:
    """Calls/s of ``gen_server:call({counter, Server}, incr)`` from another node, by number of
    concurrent client processes (1 and 16), each run lasting ``seconds``."""
    if not available():
        raise RuntimeError(f"Erlang is not installed ({INSTALL_HINT})")
    deadline = time.monotonic() + timeout
    had_epmd = _epmd_running()
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    server, client = (
        f"hotswap_bench_server_{tag}@127.0.0.1",
        f"hotswap_bench_client_{tag}@127.0.0.1",
    )
    cookie = secrets.token_hex(16)
    # if erl has to start epmd, it listens on loopback only
    env = dict(os.environ, ERL_EPMD_ADDRESS="127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp)
        subprocess.run(
            ["erlc", "-o", str(code), str(SOURCE)], check=True, capture_output=True, timeout=60
        )
        proc = subprocess.Popen(
            _erl(server, cookie, code, "counter:start()."),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            ready = _read_line(proc, deadline)
            if not ready.startswith("ready"):
                raise RuntimeError(f"Erlang server node: {ready.strip()}")
            expression = (
                f'try counter:bench("{server}", "{float(seconds)}") of _ -> halt(0) '
                'catch C:R -> io:format("error ~p:~p~n", [C, R]), halt(1) end.'
            )
            run = subprocess.run(
                _erl(client, cookie, code, expression),
                capture_output=True,
                text=True,
                env=env,
                timeout=max(deadline - time.monotonic(), 1.0),
                check=False,
            )
        finally:
            _stop(proc)
            if not had_epmd and (epmd := shutil.which("epmd")):
                # epmd was started by this run: stop it (it refuses while any node is alive)
                subprocess.run([epmd, "-kill"], capture_output=True, timeout=10, check=False)
    rates = {
        int(m.group(1)): float(m.group(2))
        for m in re.finditer(r"clients=(\d+) calls=\d+ seconds=\S+ rate=(\d+)", run.stdout)
    }
    if run.returncode != 0 or set(rates) != set(CLIENTS):
        raise RuntimeError(f"Erlang client node failed: {(run.stdout + run.stderr).strip()}")
    return rates


def main() -> None:
    if not available():
        print(f"Erlang: not installed ({INSTALL_HINT} to compare)")
        return
    rates = measure()
    for clients in CLIENTS:
        print(
            f"  Erlang gen_server:call between two nodes on loopback, {clients:2d} clients: "
            f"{rates[clients]:8.0f}/s"
        )


if __name__ == "__main__":
    main()
