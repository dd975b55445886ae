"""DSL benchmark: for each example, the size of what the DSL produces (term nodes, CAM
instructions after optimisation, module bytes) and the time to compile it from source.

Also the price of writing a machine in the DSL rather than as terms by hand: fast-path steps per
second of the DSL counter against the hand-built counter of ``hotswap.examples.handbuilt``; the
price of ``.run`` (Python values in and out, the conversions compiled around the fast path)
against the plain Python function, with the reference walkers for comparison; and the client's
conversions of one bank command and reply. Figures only; nothing here passes or fails. The
functions compared are timed side by side, in turns, the best turn of each (``interleaved_rates``):
this machine's speed drifts by up to 2x within a run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from bench.timing import interleaved_rates, once_us, rate
from hotswap.cam.loaded import load
from hotswap.client.convert import Classes, converter_for
from hotswap.dsl import Machine, Migration, compile_source
from hotswap.examples import bank, breaker, cart, counter, handbuilt
from hotswap.lang.terms import term_size
from hotswap.names.schema import from_core_reference, to_core_reference

EXAMPLES: list[ModuleType] = [counter, bank, breaker]


def _sizes(obj: Machine[..., Any] | Migration[..., Any]) -> tuple[int, int, int]:
    if isinstance(obj, Machine):
        terms = term_size(obj.compiled.step) + term_size(obj.compiled.init)
    else:
        terms = term_size(obj.compiled.migrate)
    instructions = sum(len(f.code) for f in obj.cam_module.functions)
    return terms, instructions, len(obj.module)


def _to_terms(text: str) -> Callable[[], object]:
    return lambda: compile_source(text)


def _to_modules(text: str) -> Callable[[], object]:
    return lambda: [value.cam_module for value in compile_source(text).values()]


def main() -> None:
    print("DSL: compiled size and compile time per example (medians)")
    header = f"{'example':<10} {'machine':<16} {'term nodes':>10} {'CAM instrs':>10} {'bytes':>6}"
    print(header)
    for module in EXAMPLES:
        name = module.__name__.rsplit(".", 1)[-1]
        text = inspect.getsource(module)
        found = compile_source(text)
        for key, obj in found.items():
            terms, instructions, size = _sizes(obj)
            print(f"{name:<10} {key:<16} {terms:>10} {instructions:>10} {size:>6}")
        to_terms = once_us(_to_terms(text), repeats=10)
        to_modules = once_us(_to_modules(text), repeats=10)
        print(
            f"{name:<10} source -> terms {to_terms / 1000:.2f} ms, "
            f"source -> CAM modules {to_modules / 1000:.2f} ms ({len(found)} definitions)"
        )

    dsl = load(counter.counter_sm.cam_module)
    hand = load(handbuilt.counter_module())
    incr, count = counter.counter_sm.to_core_input(counter.Incr()), (1, ())
    inputs = [(incr, 5), (count, 5)]

    def steps(step: Callable[[Any, Any], object]) -> Callable[[], None]:
        def run() -> None:
            for inp, state in inputs:
                step(inp, state)

        return run

    dsl_rate = rate(steps(dsl.step)) * len(inputs)
    hand_rate = rate(steps(hand.step)) * len(inputs)
    print(
        f"counter fast path: DSL {dsl_rate / 1e6:.2f}M steps/s, hand-built terms "
        f"{hand_rate / 1e6:.2f}M steps/s (DSL/hand-built time ratio {hand_rate / dsl_rate:.2f}x)"
    )

    print(".run against the plain Python function (same inputs; time per step)")
    account = bank.Account(balance=500, operations=3)
    bank_cases = [
        (bank.Deposit(100), account),
        (bank.Withdraw(30), account),
        (bank.Withdraw(10_000), account),
        (bank.Balance(), account),
        (bank.Deposit(-1), account),
    ]
    _run_against_plain("bank", bank.bank_sm, bank_cases)
    _run_against_plain("counter", counter.counter_sm, [(counter.Incr(), 5), (counter.Count(), 5)])
    _run_against_plain("cart (10)", cart.cart_sm, _cart_cases(), "2x")
    _threaded_against_plain("cart (10)", cart.cart_sm, *_cart_loop(), "2x")
    _client_conversions(bank_cases)


def _cart_cases() -> list[tuple[Any, Any]]:
    """The cart machine at 10 lines: adds, re-counts, a removal and a refusal."""
    lines = {f"sku-{i}": cart.Line(f"item {i}", 100 + i, 1 + i % 3) for i in range(10)}
    full = cart.Cart(lines)
    return [
        (cart.AddItem("sku-3", "item 3", 103, 2), full),
        (cart.AddItem("sku-new", "new", 250, 1), full),
        (cart.SetQty("sku-5", 7), full),
        (cart.RemoveItem("sku-1"), full),
        (cart.AddItem("sku-2", "item 2", 102, -1), full),
    ]


def _cart_loop() -> tuple[list[Any], Any]:
    """The cart at 10 lines the way a user loops: ``state, out = m.run(inp, state)``, each
    state the one the step before returned (so ``.run`` sees its own output again)."""
    lines = {f"sku-{i}": cart.Line(f"item {i}", 100 + i, 1 + i % 3) for i in range(10)}
    inputs = [
        cart.AddItem("sku-3", "item 3", 103, 2),
        cart.SetQty("sku-3", 1),
        cart.AddItem("sku-new", "new", 250, 1),
        cart.RemoveItem("sku-new"),
        cart.AddItem("sku-2", "item 2", 102, -1),
    ]
    return inputs, cart.Cart(lines)


def _threaded(fn: Callable[[Any, Any], Any], inputs: list[Any], state: Any) -> Callable[[], None]:
    """One pass over ``inputs``, the state threaded through (the last pass's state next)."""
    held = [state]

    def run() -> None:
        s = held[0]
        for inp in inputs:
            s, _ = fn(inp, s)
        held[0] = s

    return run


def _threaded_against_plain(
    name: str, m: Machine[..., Any], inputs: list[Any], state: Any, goal: str
) -> None:
    s = t = state
    for inp in inputs:
        (s, out), (t, plain_out) = m.run(inp, s), m(inp, t)
        assert (s, out) == (t, plain_out)
    rates = interleaved_rates(
        {"plain": _threaded(m, inputs, state), "run": _threaded(m.run, inputs, state)}
    )
    plain, run = (1e6 / (rates[k] * len(inputs)) for k in ("plain", "run"))
    print(
        f"{name:<10} threaded (state, out = m.run(inp, state)): plain {plain:.2f} us, "
        f".run {run:.2f} us: {run / plain:.2f}x (goal <= {goal})"
    )


def _calls(fn: Callable[[Any, Any], object], cases: list[tuple[Any, Any]]) -> Callable[[], None]:
    def run() -> None:
        for a, b in cases:
            fn(a, b)

    return run


def _walked_run(m: Machine[..., Any]) -> Callable[[Any, Any], object]:
    """``.run`` as it was: bind the arguments, walk the schemas, step, walk back."""
    c, step, signature = m.compiled, m.loaded.step, m._signature

    def run(inp: Any, state: Any) -> object:
        inp, state = signature.bind(inp, state).arguments.values()
        new, out = step(
            to_core_reference(c.input, inp, "input"), to_core_reference(c.state, state, "state")
        )
        return from_core_reference(c.state, new), from_core_reference(c.output, out)

    return run


def _run_against_plain(
    name: str, m: Machine[..., Any], cases: list[tuple[Any, Any]], goal: str = "1.5x"
) -> None:
    for inp, state in cases:
        assert m.run(inp, state) == m(inp, state)
    core = [_core_case(m, inp, state) for inp, state in cases]
    rates = interleaved_rates(
        {
            "plain": _calls(m, cases),
            "run": _calls(m.run, cases),
            "walked": _calls(_walked_run(m), cases),
            "step": _calls(_step_only(m), core),
        }
    )
    us = {k: 1e6 / (r * len(cases)) for k, r in rates.items()}
    plain, run, walked, step = us["plain"], us["run"], us["walked"], us["step"]
    print(
        f"{name:<10} plain {plain:.2f} us, .run {run:.2f} us: {run / plain:.2f}x (goal <= {goal}); "
        f"with the reference walkers {walked:.2f} us ({walked / plain:.1f}x)"
    )
    print(
        f"{'':<10} of .run: the step on core values {step:.2f} us ({step / plain:.2f}x the plain "
        f"function), converting in and out {run - step:.2f} us"
    )


def _core_case(m: Machine[..., Any], inp: Any, state: Any) -> tuple[Any, Any]:
    return m.to_core_input(inp), m.to_core_state(state)


def _step_only(m: Machine[..., Any]) -> Callable[[Any, Any], object]:
    """The fast-path step ``.run`` calls, on values already converted."""
    step = m.loaded.function(m.loaded.machine.step) if m.loaded.machine else None
    assert step is not None

    def run(inp: Any, state: Any) -> object:
        return step((inp, state))

    return run


def _client_conversions(cases: list[tuple[Any, Any]]) -> None:
    """A client's conversions for the bank by its names section (values sent by name, replies
    in the user's classes): one input to core and one output back."""
    classes = Classes()
    classes.add_machine(bank.bank_sm, given=True)
    convert = converter_for(load(bank.bank_sm.cam_module), None, classes)
    m = bank.bank_sm
    pairs = [(m.to_core_input(i), m.to_core_output(m(i, s)[1])) for i, s in cases]
    values = [(i, core_out) for (i, _), (_, core_out) in zip(cases, pairs, strict=True)]

    def compiled(inp: Any, out: Any) -> None:
        convert.to_core(inp, "input")
        convert.from_core(out, "output")

    def walked(inp: Any, out: Any) -> None:
        to_core_reference(m.input_schema, inp, "input")
        from_core_reference(m.output_schema, out)

    rates = interleaved_rates({"fast": _calls(compiled, values), "slow": _calls(walked, values)})
    fast, slow = (1e6 / (rates[k] * len(values)) for k in ("fast", "slow"))
    print(
        f"client     bank input to core + output back: {fast:.2f} us compiled, "
        f"{slow:.2f} us with the reference walkers"
    )


if __name__ == "__main__":
    main()
