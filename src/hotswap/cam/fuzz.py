"""Mutation fuzzing of modules: the tool behind the totality tests and `make fuzz`.

The decoder and verifier are the trusted base of every node, so they must reject any bytes with
our own error, and any mutant they accept must run without an unexpected exception, with the VM
and the fast path agreeing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.errors import HotswapError, Trap
from hotswap.lang.evaluate import Value
from hotswap.lang.types import IntT, Prod, Sum, Type, UnitT


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One or two byte flips (mostly), insertions or deletions."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 2)):
        kind = rng.choices((0, 1, 2), weights=(8, 1, 1))[0]  # flips keep section sizes valid
        pos = rng.randrange(len(b) + (kind == 1)) if b or kind == 1 else 0
        if kind == 0 and b:
            b[pos % len(b)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b.insert(pos, rng.randrange(256))
        elif b:
            del b[pos % len(b)]
    return bytes(b)


def some_value(t: Type, rng: random.Random) -> Value:
    """A value of type ``t``, with integers biased towards the edges of the range."""
    match t:
        case UnitT():
            return ()
        case IntT():
            return rng.choice([0, 1, -1, 2**63 - 1, -(2**63), rng.randint(-100, 100)])
        case Prod(left, right):
            return (some_value(left, rng), some_value(right, rng))
        case Sum(left, right):
            tag = rng.randrange(2)
            return (tag, some_value(right if tag else left, rng))
    raise TypeError(t)


def _outcome(run: Callable[[], Value]) -> tuple[str, object]:
    try:
        return ("ok", run())
    except Trap as t:
        return ("trap", t)


def exercise(loaded: LoadedModule, rng: random.Random) -> None:
    """Run what a module offers on a few values; the VM and the fast path must agree."""
    if loaded.machine is not None:
        sig = loaded.machine
        state = loaded.init()
        if loaded.init("vm") != state:
            raise AssertionError(f"init disagrees on {loaded.identity}")
        for _ in range(3):
            inp = some_value(sig.input, rng)
            fast = _outcome(lambda: loaded.step(inp, state))  # noqa: B023 - called at once
            vm = _outcome(lambda: loaded.step(inp, state, "vm"))  # noqa: B023
            if fast != vm:
                raise AssertionError(f"step disagrees on {loaded.identity}: {fast} vs {vm}")
            if fast[0] == "ok":
                state = fast[1][0]  # type: ignore[index]
    if loaded.migration is not None:
        old = some_value(loaded.migration.old, rng)
        fast = _outcome(lambda: loaded.migrate(old))
        if fast != _outcome(lambda: loaded.migrate(old, "vm")):
            raise AssertionError(f"migration disagrees on {loaded.identity}")


@dataclass
class FuzzReport:
    mutants: int = 0
    accepted: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def fuzz(seeds: list[bytes], mutants: int, seed: int = 0) -> FuzzReport:
    """Load ``mutants`` mutants of ``seeds``. Anything but our own rejection error propagates."""
    rng = random.Random(seed)
    report = FuzzReport()
    for i in range(mutants):
        data = mutate(rng, seeds[i % len(seeds)])
        report.mutants += 1
        try:
            loaded = load_module(data)
        except HotswapError as e:
            reason = str(e).rsplit(": ", 1)[-1][:48]
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            continue
        report.accepted += 1
        exercise(loaded, rng)
    return report
