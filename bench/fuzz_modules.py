"""`make fuzz`: far more module mutants than the test run loads (default 200,000).

The seeds are the format 1 machines of the examples and the format 2 modules of
:func:`hotswap.cam.fuzz.collection_seeds` (text, lists, maps, folds, ``fail``). Prints how many
were accepted and the most common rejection reasons; any exception other than our own rejection
error, or a disagreement between the VM and the fast path (results, traps or fuel), stops it.
"""

from __future__ import annotations

import sys
import time

from hotswap.cam.build import migration_module
from hotswap.cam.fuzz import collection_seeds, fuzz
from hotswap.cam.module import encode_module
from hotswap.examples import handbuilt
from hotswap.lang.terms import Fanout, Lit
from hotswap.lang.types import INT, Prod


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    seeds = [
        encode_module(handbuilt.counter_module()),
        encode_module(handbuilt.counter2_module()),
        encode_module(handbuilt.bank_module()),
        encode_module(handbuilt.upgrade_state_module()),
        encode_module(migration_module(INT, Prod(INT, INT), Fanout(Lit(1), Lit(2)))),
        *collection_seeds(),
    ]
    started = time.perf_counter()
    chunk = 20_000
    accepted = 0
    reasons: dict[str, int] = {}
    for start in range(0, total, chunk):
        report = fuzz(seeds, min(chunk, total - start), seed=start)
        accepted += report.accepted
        for reason, n in report.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
        done = start + report.mutants
        print(f"  {done:>9,} mutants, {accepted:,} accepted and run", flush=True)
    elapsed = time.perf_counter() - started
    print(f"fuzz: {total:,} mutants in {elapsed:.1f} s, only our own errors; top rejections:")
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {n:>8,}  {reason}")


if __name__ == "__main__":
    main()
