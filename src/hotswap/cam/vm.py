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

Only verified code may run here: the verifier guarantees every pop finds a value and every
projection a pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hotswap.cam.instructions import Code, Opcode
from hotswap.lang.evaluate import Value, apply_prim


@dataclass(frozen=True, slots=True)
class Statistics:
    """A snapshot of what the last run did."""

    steps: int
    max_stack: int


class VM:
    """Runs one verified function; keeps statistics of its last run."""

    __slots__ = ("_code", "_last")

    def __init__(self, code: Code) -> None:
        self._code = [(_HANDLERS[i.op], i.arg) for i in code]
        self._last = Statistics(0, 0)

    def statistics(self) -> Statistics:
        return self._last

    def run(self, value: Value) -> Value:
        stack: Stack = []
        code, reg, pc, steps, depth = self._code, value, 0, 0, 0
        while pc < len(code):
            handler, arg = code[pc]
            reg, pc = handler(arg, reg, stack, pc)
            steps += 1
            depth = max(depth, len(stack))
        self._last = Statistics(steps, depth)
        return reg


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
}
