"""The reference machine: a plain dispatch loop over verified code.

Machine state: ``reg`` (the register), ``stack`` (a list, top at the end), ``pc``.
One rule per instruction (see ``instructions.Opcode``):

    FST     (a, b); S      ->  a; S
    SND     (a, b); S      ->  b; S
    PUSH    v; S           ->  v; v.S
    SWAP    v; w.S         ->  w; v.S
    CONS    v; w.S         ->  (w, v); S
    UNIT    v; S           ->  (); S
    LIT n   v; S           ->  n; S
    PRIM p  v; S           ->  p(v); S              may trap
    INL     v; S           ->  (0, v); S
    INR     v; S           ->  (1, v); S
    CASE    (k, v); S      ->  v; S                 k = 1: jump to arm 1
    BRANCH  (k, v); e.S    ->  (e, v); S            k = 1: jump to arm 1
    DISTL   (e, (k, v)); S ->  (k, (e, v)); S
    JMP     v; S           ->  v; S                 jump to the join
    STR t   v; S           ->  t; S
    EMPTY T v; S           ->  empty T; S
    FOLD    (e, (xs, s)); S -> (e, (x0, s)); F.S    xs empty: (0, s); S after the NEXT
    NEXT    (0, s); F.S    ->  (e, (x_i+1, s)); F.S at the body's start; (0, s); S when done
            (1, r); F.S    ->  (1, r); S
    FAIL    (n, m); S      ->  trap raised

``F`` is the fold's frame (the list, the position, the environment); it sits on the stack
below the body's values, which never reach it (the verifier's floor).

Fuel (docs/bytecode.md, "Costs"): before an instruction runs, its cost (1, plus the variable
part of a primitive) is taken from the budget; an instruction that costs more than is left
traps ``out_of_fuel`` instead of running.

Only verified code may run here: the verifier guarantees every pop finds a value and every
projection a pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hotswap.cam.codegen import out_of_fuel
from hotswap.cam.instructions import Code, Opcode
from hotswap.cam.limits import DEFAULT_FUEL
from hotswap.lang import prims
from hotswap.lang.evaluate import Value, apply_prim
from hotswap.lang.persistent import EMPTY_LIST, EMPTY_MAP
from hotswap.lang.terms import Op
from hotswap.lang.types import ListT


@dataclass(frozen=True, slots=True)
class Statistics:
    """A snapshot of what the last run did."""

    steps: int
    max_stack: int
    fuel: int = 0


class VM:
    """Runs one verified function; keeps statistics of its last run."""

    __slots__ = ("_code", "_last")

    def __init__(self, code: Code) -> None:
        self._code = [
            (
                _HANDLERS[i.op],
                _arg(i.op, i.arg),
                prims.COST.get(i.arg) if isinstance(i.arg, Op) else None,
            )
            for i in code
        ]
        self._last = Statistics(0, 0)

    def statistics(self) -> Statistics:
        return self._last

    def run(self, value: Value, fuel: int = DEFAULT_FUEL) -> Value:
        """The function's result; ``fuel`` bounds the run's cost (a trap when it runs out)."""
        stack: Stack = []
        code, reg, pc, steps, depth, left = self._code, value, 0, 0, 0, fuel
        while pc < len(code):
            handler, arg, cost = code[pc]
            c = 1 if cost is None else 1 + cost(reg, left)
            if c > left:
                raise out_of_fuel(fuel)
            left -= c
            reg, pc = handler(arg, reg, stack, pc)
            steps += 1
            depth = max(depth, len(stack))
        self._last = Statistics(steps, depth, fuel - left)
        return reg


def _arg(op: Opcode, arg: object) -> object:
    if op is Opcode.EMPTY:
        return EMPTY_LIST if isinstance(arg, ListT) else EMPTY_MAP
    return arg


Stack = list[Value]
Handler = Callable[[Any, Value, Stack, int], tuple[Value, int]]


def _fst(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return reg[0], pc + 1


def _snd(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return reg[1], pc + 1


def _push(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    stack.append(reg)
    return reg, pc + 1


def _swap(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    top = stack[-1]
    stack[-1] = reg
    return top, pc + 1


def _cons(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return (stack.pop(), reg), pc + 1


def _unit(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return (), pc + 1


def _lit(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return arg, pc + 1


def _prim(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return apply_prim(arg, reg), pc + 1


def _inl(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return (0, reg), pc + 1


def _inr(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return (1, reg), pc + 1


def _case(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    tag, payload = reg
    return payload, pc + 1 + (arg if tag else 0)


def _branch(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    tag, payload = reg
    return (stack.pop(), payload), pc + 1 + (arg if tag else 0)


def _distl(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    env, (tag, payload) = reg
    return (tag, (env, payload)), pc + 1


def _jmp(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return reg, pc + 1 + arg


def _str(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return arg, pc + 1


def _fail(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    return prims.fail(reg), pc + 1


class _Frame:
    """A running fold: the list, the next position, the environment, the body's first pc."""

    __slots__ = ("at", "env", "items", "start")

    def __init__(self, items: Value, env: Value, start: int) -> None:
        self.items, self.at, self.env, self.start = items, 0, env, start


def _fold(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    env, (items, acc) = reg
    if not items:
        return (0, acc), pc + arg + 2
    stack.append(_Frame(items, env, pc + 1))
    return (env, (items[0], acc)), pc + 1


def _next(arg: Any, reg: Value, stack: Stack, pc: int) -> tuple[Value, int]:
    frame: _Frame = stack[-1]
    if reg[0]:
        stack.pop()
        return reg, pc + 1
    frame.at += 1
    if frame.at == len(frame.items):
        stack.pop()
        return reg, pc + 1
    return (frame.env, (frame.items[frame.at], reg[1])), frame.start


_HANDLERS: dict[Opcode, Handler] = {
    Opcode.FST: _fst,
    Opcode.SND: _snd,
    Opcode.PUSH: _push,
    Opcode.SWAP: _swap,
    Opcode.CONS: _cons,
    Opcode.UNIT: _unit,
    Opcode.LIT: _lit,
    Opcode.PRIM: _prim,
    Opcode.INL: _inl,
    Opcode.INR: _inr,
    Opcode.CASE: _case,
    Opcode.BRANCH: _branch,
    Opcode.DISTL: _distl,
    Opcode.JMP: _jmp,
    Opcode.STR: _str,
    Opcode.EMPTY: _str,
    Opcode.FOLD: _fold,
    Opcode.NEXT: _next,
    Opcode.FAIL: _fail,
}
