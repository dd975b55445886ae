"""Mutation fuzzing of modules: the tool behind the totality tests and `make fuzz`.

The decoder and verifier are the trusted base of every node, so they must reject any bytes with
our own error, and any mutant they accept must run without an unexpected exception, with the VM
and the fast path agreeing on results, traps and fuel: each run is made under a small budget
(so that a mutant looping over a huge range stops quickly), then again just below the fuel it
used, where both executors must run out.

:func:`collection_seeds` are modules of format 2 (text, lists, maps, folds that stop early,
``fail``) for the fuzz to start from, next to the format 1 machines of the examples.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from hotswap.cam.build import machine_module, migration_module
from hotswap.cam.codegen import out_of_fuel
from hotswap.cam.loaded import Executor, LoadedModule, load_module
from hotswap.cam.module import Module, encode_module
from hotswap.errors import HotswapError, InternalError, Trap
from hotswap.lang.evaluate import Value
from hotswap.lang.persistent import OMap, PVector, make_list
from hotswap.lang.terms import (
    DISTL,
    FST,
    ID,
    SND,
    TERMINAL,
    Case,
    Empty,
    Fail,
    Fanout,
    Fold,
    Inl,
    Inr,
    Lit,
    Op,
    Prim,
    StrLit,
    Term,
    compose,
    match_on,
)
from hotswap.lang.types import (
    INT,
    STR,
    UNIT,
    IntT,
    ListT,
    MapT,
    Prod,
    StrT,
    Sum,
    Type,
    UnitT,
)
from hotswap.lang.values import constant

#: The budget of each run of a mutant: far above what the seeds need, small enough that a
#: mutant looping over a huge range runs out at once.
FUZZ_FUEL = 20_000


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


_TEXTS = ["", "a", "stop", "apple", "pear", "\u00e9t\u00e9", "\U0001f642", "x" * 70]


def some_value(t: Type, rng: random.Random) -> Value:
    """A value of type ``t``, with integers biased towards the edges of the range; lists and
    maps have at most three entries."""
    match t:
        case UnitT():
            return ()
        case IntT():
            return rng.choice([0, 1, -1, 2**63 - 1, -(2**63), rng.randint(-100, 100)])
        case StrT():
            return rng.choice(_TEXTS)
        case ListT(elem):
            return make_list(some_value(elem, rng) for _ in range(rng.randint(0, 3)))
        case MapT(key, value):
            return OMap(
                (some_value(key, rng), some_value(value, rng)) for _ in range(rng.randint(0, 3))
            )
        case Prod(left, right):
            return (some_value(left, rng), some_value(right, rng))
        case Sum(left, right):
            tag = rng.randrange(2)
            return (tag, some_value(right if tag else left, rng))
    raise TypeError(t)


def exact(v: Value) -> object:
    """``v`` with maps as their entries in order (``==`` on maps ignores order)."""
    if isinstance(v, OMap):
        return ("map", tuple((exact(k), exact(x)) for k, x in v.items()))
    if isinstance(v, PVector):
        return ("list", tuple(exact(x) for x in v))
    if isinstance(v, tuple):
        return tuple(exact(x) for x in v)
    return v


Outcome = tuple[str, object, int]


def _outcome(run: Callable[[], tuple[Value, int]]) -> Outcome:
    try:
        result, used = run()
    except Trap as t:
        return ("trap", (t.kind, str(t)), 0)
    return ("ok", exact(result), used)


def _agree(loaded: LoadedModule, index: int, value: Value, what: str) -> Outcome:
    """Run function ``index`` on both executors, metered and not, under :data:`FUZZ_FUEL`,
    and again with one unit less than it used: one outcome, one fuel, one point of running
    out. Returns the outcome."""

    def metered(executor: Executor, fuel: int) -> Outcome:
        return _outcome(lambda: loaded.run_metered(index, value, executor, fuel))

    def plain(executor: Executor, fuel: int) -> Outcome:
        return _outcome(lambda: (loaded.run_function(index, value, executor, fuel), 0))

    vm = metered("vm", FUZZ_FUEL)
    fast = metered("fast", FUZZ_FUEL)
    if fast != vm:
        raise AssertionError(f"{what} disagrees on {loaded.identity}: {fast} vs {vm}")
    if plain("fast", FUZZ_FUEL) != plain("vm", FUZZ_FUEL) or plain("vm", FUZZ_FUEL)[:2] != vm[:2]:
        raise AssertionError(f"{what} disagrees without fuel reporting on {loaded.identity}")
    if vm[0] == "ok" and vm[2] > 0:
        short = vm[2] - 1
        trap = out_of_fuel(short)
        starved = ("trap", (trap.kind, str(trap)), 0)
        executors: tuple[Executor, ...] = ("vm", "fast")
        for executor in executors:
            if metered(executor, short)[:2] != starved[:2] or plain(executor, short) != starved:
                raise AssertionError(f"{what} on {executor} does not run out below {vm[2]}")
    return vm


def exercise(loaded: LoadedModule, rng: random.Random) -> None:
    """Run what a module offers on a few values; the VM and the fast path must agree."""
    if loaded.machine is not None:
        sig = loaded.machine
        init = _agree(loaded, sig.init, (), "init")
        if init[0] == "ok":
            state = loaded.init(fuel=FUZZ_FUEL)
            for _ in range(3):
                inp = some_value(sig.input, rng)
                step = _agree(loaded, sig.step, (inp, state), "step")
                if step[0] == "ok":
                    state = loaded.step(inp, state, fuel=FUZZ_FUEL)[0]
    if loaded.migration is not None and loaded.module.migration is not None:
        _agree(loaded, loaded.module.migration, some_value(loaded.migration.old, rng), "migration")


@dataclass
class FuzzReport:
    mutants: int = 0
    accepted: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def fuzz(seeds: list[bytes], mutants: int, seed: int = 0) -> FuzzReport:
    """Load ``mutants`` mutants of ``seeds``. Anything but our own rejection error propagates,
    :class:`InternalError` included (our own, but a bug: never a reason to reject a module)."""
    rng = random.Random(seed)
    report = FuzzReport()
    for i in range(mutants):
        data = mutate(rng, seeds[i % len(seeds)])
        report.mutants += 1
        try:
            loaded = load_module(data)
        except InternalError:
            raise
        except HotswapError as e:
            reason = str(e).rsplit(": ", 1)[-1][:48]
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            continue
        report.accepted += 1
        exercise(loaded, rng)
    return report


# --- seeds of format 2 ----------------------------------------------------------------------


def _ap(op: Op, arg: Term, other: Term | None = None) -> Term:
    """``op`` applied to ``arg`` (or to ``<arg, other>``)."""
    return compose(arg if other is None else Fanout(arg, other), Prim(op))


def _get_or(lookup: Term, default: Term) -> Term:
    """``d.get(k, default)``: ``lookup`` gives the ``Unit + V`` of a ``map_get``; ``default``
    runs on the same domain as ``lookup``."""
    return compose(Fanout(ID, lookup), _distl_case(compose(FST, default), SND))


def _distl_case(left: Term, right: Term) -> Term:
    return compose(DISTL, Case(left, right))


CART_INPUT = Sum(Prod(STR, INT), STR)  # add (sku, quantity) | remove sku
CART_STATE = MapT(STR, INT)
CART_OUTPUT = Prod(INT, Sum(UNIT, INT))  # (lines, quantity of the sku now)


def cart_module() -> Module:
    """A cart keyed by SKU: add adds to a line's quantity, remove deletes the line."""
    state = compose(FST, SND)
    # add: ((input, state), (sku, qty))
    sku, qty = compose(SND, FST), compose(SND, SND)
    old = _get_or(_ap(Op.MAP_GET, state, sku), Lit(0))
    added = _ap(Op.MAP_INSERT, state, Fanout(sku, _ap(Op.ADD, old, qty)))
    add = Fanout(added, Fanout(_ap(Op.MAP_LEN, added), _ap(Op.MAP_GET, added, sku)))
    # remove: ((input, state), sku)
    removed = _ap(Op.MAP_DELETE, state, SND)
    remove = Fanout(removed, Fanout(_ap(Op.MAP_LEN, removed), _ap(Op.MAP_GET, state, SND)))
    step = match_on(FST, add, remove)
    init = constant(OMap([("apple", 2), ("pear", 1)]), CART_STATE)
    return machine_module(CART_INPUT, CART_STATE, CART_OUTPUT, init, step)


LOG_STATE = ListT(STR)
LOG_OUTPUT = Prod(Prod(INT, Sum(INT, STR)), STR)


def log_module() -> Module:
    """Keeps the last five texts; outputs how many hold an "a" (a fold that stops early at
    "stop", with a message built by concatenation and int formatting) and the least text."""
    appended = _ap(Op.LIST_APPEND, SND, compose(FST, _ap(Op.STR_SLICE, ID, Fanout(Lit(0), Lit(8)))))
    kept = _ap(Op.LIST_SLICE, appended, Fanout(Lit(-5), Lit(2**62)))
    x, n = compose(SND, FST), compose(SND, SND)  # body: (Unit, (text, count))
    more = match_on(
        _ap(Op.STR_CONTAINS, x, StrLit("a")), compose(FST, n), _ap(Op.ADD, compose(FST, n), Lit(1))
    )
    said = _ap(Op.STR_CONCAT, StrLit("stopped after "), compose(FST, n, Prim(Op.INT_TO_STR)))
    body = match_on(
        _ap(Op.EQUAL, x, StrLit("stop")), compose(FST, more, Inl(STR)), compose(said, Inr(INT))
    )
    counted = compose(Fanout(TERMINAL, Fanout(kept, Lit(0))), Fold(body))
    least = _ap(Op.LIST_INDEX, compose(kept, Prim(Op.LIST_SORT)), Lit(0))
    step = Fanout(kept, Fanout(Fanout(_ap(Op.LIST_LEN, kept), counted), least))
    return machine_module(STR, LOG_STATE, LOG_OUTPUT, Empty(LOG_STATE), step)


def words_module() -> Module:
    """Counts the words of each input text (split at whitespace) into the state; outputs how
    many comma-separated fields the text has and where its first "x" is (-1: none)."""
    words = compose(FST, _ap(Op.STR_SPLIT, ID, StrLit("")), Prim(Op.LIST_LEN))
    total = _ap(Op.ADD, words, SND)
    fields = compose(FST, _ap(Op.STR_SPLIT, ID, StrLit(",")), Prim(Op.LIST_LEN))
    found = compose(FST, _ap(Op.STR_FIND, ID, StrLit("x")))
    step = Fanout(total, Fanout(fields, found))
    return machine_module(STR, INT, Prod(INT, INT), Lit(0), step)


def refusing_module() -> Module:
    """Adds the input to the state, refusing a negative input with ``fail``."""
    total = _ap(Op.ADD, FST, SND)
    ok = compose(FST, Fanout(total, compose(total, Prim(Op.INT_TO_STR))))
    message = _ap(Op.STR_CONCAT, StrLit("negative amount "), compose(FST, FST, Prim(Op.INT_TO_STR)))
    refuse = compose(Fanout(StrLit("ValueError"), message), Fail(Prod(INT, STR)))
    step = match_on(_ap(Op.LT, FST, Lit(0)), ok, refuse)
    return machine_module(INT, INT, STR, Lit(0), step)


NESTED_STATE = MapT(INT, ListT(INT))


def nested_module() -> Module:
    """Records ``range(0, n)`` under ``n``, and outputs the sum of every recorded element
    (a fold inside a fold) or -1 once a partial sum passes 1000 (both folds stop early)."""
    recorded = _ap(Op.MAP_INSERT, SND, Fanout(FST, _ap(Op.RANGE, Lit(0), FST)))
    add = compose(SND, _ap(Op.ADD, FST, SND))  # (Unit, (x, s)) -> x + s
    inner = compose(
        add,
        match_on(_ap(Op.GT, ID, Lit(1000)), compose(FST, Inl(UNIT)), compose(TERMINAL, Inr(INT))),
    )
    outer = compose(Fanout(TERMINAL, Fanout(compose(SND, FST), compose(SND, SND))), Fold(inner))
    total = compose(Fanout(TERMINAL, Fanout(_ap(Op.MAP_VALUES, recorded), Lit(0))), Fold(outer))
    step = Fanout(recorded, compose(total, Case(ID, Lit(-1))))
    return machine_module(INT, NESTED_STATE, INT, Empty(NESTED_STATE), step)


def items_migration_module() -> Module:
    """Migrates a cart's map to its items and its total quantity (a fold over its values);
    refuses a cart that holds the SKU "" with ``fail``."""
    body = compose(SND, _ap(Op.ADD, FST, SND), Inl(UNIT))
    total = compose(
        Fanout(TERMINAL, Fanout(Prim(Op.MAP_VALUES), Lit(0))), Fold(body), Case(ID, Lit(0))
    )
    new_state = Prod(ListT(Prod(STR, INT)), INT)
    migrate = Fanout(Prim(Op.MAP_ITEMS), total)
    refuse = compose(FST, Fanout(StrLit("KeyError"), StrLit("empty SKU")), Fail(new_state))
    guarded = match_on(_ap(Op.MAP_CONTAINS, ID, StrLit("")), compose(FST, migrate), refuse)
    return migration_module(CART_STATE, new_state, guarded)


def equality_module() -> Module:
    """State a map from (Int x Str) keys to Bool; the input is compared structurally with the
    state (``equal`` on maps ignores order) and merged into it."""
    state_t = MapT(Prod(INT, STR), Sum(UNIT, UNIT))
    same = _ap(Op.EQUAL, FST, SND)
    merged = _ap(Op.MAP_MERGE, SND, FST)
    keys = compose(merged, Prim(Op.MAP_KEYS))
    first = compose(Fanout(keys, Lit(-1)), Prim(Op.LIST_INDEX))
    found = _get_or(_ap(Op.MAP_GET, merged, first), compose(TERMINAL, Inl(UNIT)))
    init = constant(OMap([((1, "a"), (1, ())), ((2, "b"), (0, ()))]), state_t)
    output = Prod(Sum(UNIT, UNIT), Prod(Sum(UNIT, UNIT), Sum(UNIT, UNIT)))
    step = Fanout(merged, Fanout(same, Fanout(_ap(Op.NOT_EQUAL, FST, SND), found)))
    return machine_module(state_t, state_t, output, init, step)


def collection_seeds() -> list[bytes]:
    """Module bytes of format 2 to mutate: every new instruction and type appears in one."""
    modules = [
        cart_module(),
        log_module(),
        words_module(),
        refusing_module(),
        nested_module(),
        items_migration_module(),
        equality_module(),
    ]
    return [encode_module(m) for m in modules]


__all__ = [
    "FUZZ_FUEL",
    "FuzzReport",
    "collection_seeds",
    "exercise",
    "fuzz",
    "mutate",
    "some_value",
]
