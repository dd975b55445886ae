"""Compile typed terms to CAM code (docs/bytecode.md, "Compilation scheme").

The scheme, one rule per term, reads down the page; ``[t]`` is the code of ``t``.
"""

from __future__ import annotations

from typing import assert_never

from hotswap.cam.instructions import Instr, Opcode
from hotswap.lang.optimise import flatten
from hotswap.lang.terms import (
    Case,
    Compose,
    Distl,
    Empty,
    Fail,
    Fanout,
    Fold,
    Fst,
    Id,
    Inl,
    Inr,
    Lit,
    Prim,
    Snd,
    StrLit,
    Term,
    Terminal,
)


def compile_term(term: Term) -> tuple[Instr, ...]:
    """CAM code for ``term``. The term should be type-checked first; the verifier re-checks."""
    out: list[Instr] = []
    _emit(term, out)
    return tuple(out)


def _emit(term: Term, out: list[Instr]) -> None:
    match term:
        case Id():  # id  =>  (nothing)
            pass
        case Compose():  # f ; g  =>  [f] [g], fusing <id, e> ; distl ; [f | g]
            _emit_chain(flatten(term), out)
        case Fanout(Id(), g):  # <id, g>  =>  PUSH [g] CONS
            out.append(Instr(Opcode.PUSH))
            _emit(g, out)
            out.append(Instr(Opcode.CONS))
        case Fanout(f, g):  # <f, g>  =>  PUSH [f] SWAP [g] CONS
            out.append(Instr(Opcode.PUSH))
            _emit(f, out)
            out.append(Instr(Opcode.SWAP))
            _emit(g, out)
            out.append(Instr(Opcode.CONS))
        case Fst():  # fst  =>  FST
            out.append(Instr(Opcode.FST))
        case Snd():  # snd  =>  SND
            out.append(Instr(Opcode.SND))
        case Terminal():  # !  =>  UNIT
            out.append(Instr(Opcode.UNIT))
        case Lit(n):  # n  =>  LIT n
            out.append(Instr(Opcode.LIT, n))
        case Prim(op):  # p  =>  PRIM p
            out.append(Instr(Opcode.PRIM, op))
        case Inl(other):  # inl[B]  =>  INL B
            out.append(Instr(Opcode.INL, other))
        case Inr(other):  # inr[A]  =>  INR A
            out.append(Instr(Opcode.INR, other))
        case Case(f, g):  # [f | g]  =>  CASE l1 [f] JMP l2 l1: [g] l2:
            _emit_arms(Opcode.CASE, f, g, out)
        case Distl():  # distl  =>  DISTL
            out.append(Instr(Opcode.DISTL))
        case StrLit(text):  # "text"  =>  STR "text"
            out.append(Instr(Opcode.STR, text))
        case Empty(t):  # empty[T]  =>  EMPTY T
            out.append(Instr(Opcode.EMPTY, t))
        case Fail(t):  # fail[T]  =>  FAIL T
            out.append(Instr(Opcode.FAIL, t))
        case Fold(body):  # fold(f)  =>  FOLD l [f] l: NEXT
            inner: list[Instr] = []
            _emit(body, inner)
            out.append(Instr(Opcode.FOLD, len(inner)))
            out.extend(inner)
            out.append(Instr(Opcode.NEXT))
        case _:
            assert_never(term)


def _emit_chain(items: list[Term], out: list[Instr]) -> None:
    i = 0
    while i < len(items):
        match items[i : i + 3]:
            case [Fanout(Id(), e), Distl(), Case(f, g)]:  # <id,e>;distl;[f|g]  =>  PUSH [e] BRANCH
                out.append(Instr(Opcode.PUSH))
                _emit(e, out)
                _emit_arms(Opcode.BRANCH, f, g, out)
                i += 3
            case _:
                _emit(items[i], out)
                i += 1


def _emit_arms(op: Opcode, left: Term, right: Term, out: list[Instr]) -> None:
    arm0: list[Instr] = []
    _emit(left, arm0)
    arm1: list[Instr] = []
    _emit(right, arm1)
    out.append(Instr(op, len(arm0) + 1))
    out.extend(arm0)
    out.append(Instr(Opcode.JMP, len(arm1)))
    out.extend(arm1)
