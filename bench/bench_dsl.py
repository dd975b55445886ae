"""DSL benchmark: for each example, the size of what the DSL produces (term nodes, CAM
instructions after optimisation, module bytes) and the time to compile it from source.

Also the price of writing a machine in the DSL rather than as terms by hand: fast-path steps per
second of the DSL counter against the hand-built counter of ``hotswap.examples.handbuilt``.
Figures only; nothing here passes or fails.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from bench.timing import once_us, rate
from hotswap.cam.loaded import load
from hotswap.dsl import Machine, Migration, compile_source
from hotswap.examples import bank, breaker, counter, handbuilt
from hotswap.lang.terms import term_size

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


if __name__ == "__main__":
    main()
