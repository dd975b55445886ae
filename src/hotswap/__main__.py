"""The ``hotswap`` program: the node command and the client commands under one name."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version

from hotswap.cli import add_client_commands, run
from hotswap.node.cli import add_node_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotswap", description="Hot code upgrades of running state machines."
    )
    parser.add_argument("--version", action="version", version=f"hotswap {version('hotswap')}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_node_command(sub)
    add_client_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
