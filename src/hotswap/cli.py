"""The `hotswap` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hotswap.cam.disasm import disassemble
from hotswap.cam.loaded import load_module
from hotswap.errors import HotswapError


def _dis(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes()
    loaded = load_module(data)
    print(disassemble(loaded.module, data))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotswap", description="Hot code upgrades of running state machines."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    dis = sub.add_parser("dis", help="verify a module file and print its disassembly")
    dis.add_argument("file", help="a module file (canonical bytes)")
    dis.set_defaults(func=_dis)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except HotswapError as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"hotswap: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
