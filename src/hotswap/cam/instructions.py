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
    # Module format 2 (docs/bytecode.md, "Format 2 instructions").
    STR = 0x0F  # v; S -> "text"; S                  immediate: uLEB128 length, UTF-8 bytes
    EMPTY = 0x10  # v; S -> empty T; S                immediate: type index (a List or Map)
    FOLD = 0x11  # (e, (xs, s)); S -> (e, (x0, s)); F.S, body  immediate: offset to its NEXT
    NEXT = 0x12  # ends a fold's body: inl s goes on with the next element, inr r leaves
    FAIL = 0x13  # (name, message); S -> trap raised  immediate: type index (the register after)


#: Opcodes of module format 1; the others need format 2.
V1_OPCODES = frozenset(op for op in Opcode if op <= Opcode.JMP)


#: Opcodes whose immediate is a forward offset.
JUMPS = frozenset({Opcode.CASE, Opcode.BRANCH, Opcode.JMP, Opcode.FOLD})
#: Opcodes whose immediate is a type index.
TYPED = frozenset({Opcode.INL, Opcode.INR, Opcode.EMPTY, Opcode.FAIL})

Arg = int | str | Op | Type | None


@dataclass(frozen=True, slots=True)
class Instr:
    """One instruction: ``arg`` is the literal (LIT, STR), the primitive (PRIM), the annotation
    type (INL, INR, EMPTY, FAIL), the forward offset (CASE, BRANCH, JMP, FOLD) or None."""

    op: Opcode
    arg: Arg = None

    def __str__(self) -> str:
        match self.arg:
            case None:
                return self.op.name
            case Op() as p:
                return f"{self.op.name} {p.name.lower()}"
            case str() as text:
                shown = text if len(text) <= 40 else text[:37] + "..."
                return f"{self.op.name} {shown!r}"
            case _:
                return f"{self.op.name} {self.arg}"


Code = tuple[Instr, ...]
