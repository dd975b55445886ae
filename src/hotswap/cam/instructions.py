"""The CAM instruction set (docs/bytecode.md, "Instructions").

Machine state: a register (the current value), a stack of values, flat code. Jumps are relative
and forward only: an instruction at ``pc`` with offset ``off`` targets ``pc + 1 + off``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from hotswap.lang.terms import Op
from hotswap.lang.types import Type


class Opcode(IntEnum):
    """Opcode bytes. The comment gives the effect as ``register; stack -> register; stack``."""

    FST = 0x01  # (a, b); S -> a; S
    SND = 0x02  # (a, b); S -> b; S
    PUSH = 0x03  # v; S -> v; v.S
    SWAP = 0x04  # v; w.S -> w; v.S
    CONS = 0x05  # v; w.S -> (w, v); S
    UNIT = 0x06  # v; S -> (); S
    LIT = 0x07  # v; S -> n; S                       immediate: signed LEB128 n
    PRIM = 0x08  # v; S -> p(v); S                   immediate: primitive byte
    INL = 0x09  # v; S -> (0, v); S                   immediate: type index (other summand)
    INR = 0x0A  # v; S -> (1, v); S                   immediate: type index (other summand)
    CASE = 0x0B  # (k, v); S -> v; S, arm k           immediate: offset to arm 1
    BRANCH = 0x0C  # (k, v); e.S -> (e, v); S, arm k  immediate: offset to arm 1
    DISTL = 0x0D  # (e, (k, v)); S -> (k, (e, v)); S
    JMP = 0x0E  # ends arm 0                          immediate: offset to the join


#: Opcodes whose immediate is a forward offset.
JUMPS = frozenset({Opcode.CASE, Opcode.BRANCH, Opcode.JMP})

Arg = int | Op | Type | None


@dataclass(frozen=True, slots=True)
class Instr:
    """One instruction: ``arg`` is the literal (LIT), the primitive (PRIM), the annotation type
    (INL, INR), the forward offset (CASE, BRANCH, JMP) or None."""

    op: Opcode
    arg: Arg = None

    def __str__(self) -> str:
        match self.arg:
            case None:
                return self.op.name
            case Op() as p:
                return f"{self.op.name} {p.name.lower()}"
            case _:
                return f"{self.op.name} {self.arg}"


Code = tuple[Instr, ...]
