"""`make bench`: run every benchmark in turn. Figures only; nothing here passes or fails."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["bench.bench_core", "bench.bench_dsl", "bench.bench_node", "bench.bench_instances"]


def main() -> None:
    for name in BENCHMARKS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            print(f"({name} is not written yet)")
            continue
        module.main()
        print()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
