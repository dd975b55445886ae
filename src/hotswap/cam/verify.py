"""The verifier: one pass of abstract interpretation over (register type, stack of types).

It is the trusted base of every node: code that passes runs without any Python exception other
than a trap, on both executors. Rules (docs/bytecode.md, "Verification"):

- the register starts with the domain type and the stack empty; at the end the stack is empty
  and the register holds the codomain;
- each instruction's operand types are checked (table in ``_step``);
- CASE/BRANCH open a region: arm 0 runs from the next instruction up to a JMP just before arm 1,
  whose offset gives the join; regions nest properly, jumps go forward only;
- an arm never touches stack slots below its entry height and leaves the stack as it found it;
  at the join both arms leave the register with the same type;
- FOLD opens a fold region whose body ends with the NEXT at its offset: the body starts with
  ``E x (A x S)`` (from ``E x (List A x S)``), never touches the stack below its entry, and
  leaves ``S + R`` for NEXT, which is also the register after the fold;
- code size, region nesting, fold nesting, type depth and type size are capped (``limits``).

It outputs the maximum stack depth and the step bound, the longest path through the code,
which bounds a run only when the code has no fold (``bounded``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hotswap.cam import limits
from hotswap.cam.instructions import Code, Instr, Opcode
from hotswap.errors import LimitError, VerifyError
from hotswap.lang.check import MAX_STR_LEN, prim_codomain
from hotswap.lang.ints import in_range
from hotswap.lang.terms import Op
from hotswap.lang.types import INT, STR, UNIT, ListT, MapT, Prod, Sum, Type, _TypeBase


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What verification proved: the stack never exceeds ``max_stack`` values and, when
    ``bounded`` (no fold), one run executes at most ``max_steps`` instructions; with folds,
    ``max_steps`` counts each fold body once and fuel bounds the run."""

    max_stack: int
    max_steps: int
    bounded: bool = True


@dataclass(slots=True)
class _FoldRegion:
    """An open FOLD: the body is ``[at + 1, next_pc)``, its NEXT at ``next_pc``."""

    at: int
    next_pc: int
    floor: int
    acc: Type


@dataclass(slots=True)
class _Region:
    """An open CASE/BRANCH: arm 0 is ``[start, else_pc - 1)``, JMP at ``else_pc - 1``."""

    at: int  # pc of the CASE/BRANCH, for messages
    else_pc: int
    limit: int  # the enclosing region's bound: no jump of this region may pass it
    floor: int  # stack height at entry of each arm
    right: Type  # register type at the start of arm 1
    steps_entry: int
    end: int = -1  # join pc, known once the JMP is seen
    arm0_register: Type | None = None
    arm0_steps: int = 0


def verify_code(code: Code, dom: Type, cod: Type) -> CodeInfo:
    """Check ``code : dom -> cod`` or raise :class:`VerifyError` naming the instruction."""
    if len(code) > limits.MAX_CODE:
        raise LimitError(f"code has {len(code)} instructions, more than {limits.MAX_CODE}")
    _check_type(dom, "domain")
    _check_type(cod, "codomain")
    state = _State(dom, len(code))
    for pc, instr in enumerate(code):
        state.join(pc)
        try:
            state.step(pc, instr)
        except VerifyError as e:
            raise type(e)(f"at {pc} ({instr}): {e}") from None
    state.join(len(code))
    if state.regions:
        raise VerifyError(f"the region opened at {state.regions[-1].at} is not closed")
    if state.stack:
        raise VerifyError(f"code ends with {len(state.stack)} values left on the stack")
    if state.register is not cod:
        raise VerifyError(f"code ends with a {state.register}, expected {cod}")
    return CodeInfo(state.max_stack, state.steps, not state.folds_seen)


def _has_utf8(text: str) -> bool:
    """No lone surrogate: the text can be encoded (a value, a module) like any other Str."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_type(t: Type, what: str) -> Type:
    if t.depth > limits.MAX_TYPE_DEPTH:
        raise VerifyError(
            f"{what} type is nested {t.depth} deep, more than {limits.MAX_TYPE_DEPTH}"
        )
    if t.size > limits.MAX_TYPE_SIZE:
        raise LimitError(f"{what} type has {t.size} nodes, more than {limits.MAX_TYPE_SIZE}")
    return t


class _State:
    __slots__ = (
        "folds",
        "folds_seen",
        "length",
        "max_stack",
        "regions",
        "register",
        "stack",
        "steps",
    )

    def __init__(self, dom: Type, length: int) -> None:
        self.register: Type = dom
        self.stack: list[Type] = []
        self.regions: list[_Region | _FoldRegion] = []
        self.length = length
        self.max_stack = 0
        self.steps = 0
        self.folds = 0
        self.folds_seen = False

    def floor(self) -> int:
        return self.regions[-1].floor if self.regions else 0

    def limit(self) -> int:
        """Bound of the current arm: its JMP (arm 0) or its join (arm 1), a fold body's NEXT,
        or the code's end."""
        if not self.regions:
            return self.length
        r = self.regions[-1]
        if isinstance(r, _FoldRegion):
            return r.next_pc
        return r.else_pc - 1 if r.end < 0 else r.end

    def pop(self) -> Type:
        if len(self.stack) <= self.floor():
            raise VerifyError("stack underflow (an arm may not use values below its entry)")
        return self.stack.pop()

    def push(self, t: Type) -> None:
        self.stack.append(t)
        if len(self.stack) > self.max_stack:
            self.max_stack = len(self.stack)
            if self.max_stack > limits.MAX_STACK:
                raise LimitError(f"stack deeper than {limits.MAX_STACK}")

    def join(self, pc: int) -> None:
        while self.regions:
            r = self.regions[-1]
            if isinstance(r, _FoldRegion):
                return
            if r.end < 0 and pc == r.else_pc:
                raise VerifyError(f"arm 0 of the branch at {r.at} does not end with JMP")
            if r.end != pc:
                return
            if len(self.stack) != r.floor:
                raise VerifyError(f"arm 1 of the branch at {r.at} does not restore the stack")
            if self.register is not r.arm0_register:
                raise VerifyError(
                    f"arms of the branch at {r.at} disagree: {r.arm0_register} and {self.register}"
                )
            self.steps = max(self.steps, r.arm0_steps)
            self.regions.pop()

    def open_region(self, pc: int, off: int, left: Type, right: Type) -> None:
        else_pc = pc + 1 + off
        if off < 1 or else_pc > self.limit():
            raise VerifyError(f"branch offset {off} leaves its enclosing region")
        if len(self.regions) >= limits.MAX_NESTING:
            raise LimitError(f"branches nested deeper than {limits.MAX_NESTING}")
        region: _Region = _Region(pc, else_pc, self.limit(), len(self.stack), right, self.steps)
        self.regions.append(region)
        self.register = left

    def step(self, pc: int, instr: Instr) -> None:
        self.steps += 1
        op, arg, reg = instr.op, instr.arg, self.register
        top = self.regions[-1] if self.regions else None
        if isinstance(top, _FoldRegion) and top.next_pc == pc and op is not Opcode.NEXT:
            raise VerifyError(f"the body of the fold at {top.at} must end with NEXT here")
        match op:
            case Opcode.FST | Opcode.SND:
                if not isinstance(reg, Prod):
                    raise VerifyError(f"expected a product, got {reg}")
                self.register = reg.left if op is Opcode.FST else reg.right
            case Opcode.PUSH:
                self.push(reg)
            case Opcode.SWAP:
                self.register = self.pop()
                self.push(reg)
            case Opcode.CONS:
                self.register = _check_type(Prod(self.pop(), reg), "constructed")
            case Opcode.UNIT:
                self.register = UNIT
            case Opcode.LIT:
                if type(arg) is not int or not in_range(arg):
                    raise VerifyError(f"literal {arg!r} is not a signed 64-bit integer")
                self.register = INT
            case Opcode.PRIM:
                if not isinstance(arg, Op):
                    raise VerifyError(f"{arg!r} is not a primitive")
                cod = prim_codomain(arg, reg)
                if isinstance(cod, str):
                    raise VerifyError(f"{arg.name.lower()} expects {cod}, got {reg}")
                self.register = _check_type(cod, "result")
            case Opcode.STR:
                if type(arg) is not str or len(arg) > MAX_STR_LEN or not _has_utf8(arg):
                    raise VerifyError(
                        "STR needs text of at most 2**20 code points with a UTF-8 encoding"
                    )
                self.register = STR
            case Opcode.EMPTY:
                if not isinstance(arg, ListT | MapT):
                    raise VerifyError(f"EMPTY needs a List or Map type, got {arg!r}")
                self.register = _check_type(arg, "annotation")
            case Opcode.FAIL:
                if not isinstance(arg, _TypeBase):
                    raise VerifyError(f"{arg!r} is not a type")
                if reg is not Prod(STR, STR):
                    raise VerifyError(f"FAIL expects Str x Str, got {reg}")
                self.register = _check_type(arg, "annotation")
            case Opcode.FOLD:
                self.open_fold(pc, arg, reg)
            case Opcode.NEXT:
                self.close_fold(pc, reg)
            case Opcode.INL | Opcode.INR:
                if not isinstance(arg, _TypeBase):
                    raise VerifyError(f"{arg!r} is not a type")
                _check_type(arg, "annotation")
                pair = Sum(reg, arg) if op is Opcode.INL else Sum(arg, reg)
                self.register = _check_type(pair, "injected")
            case Opcode.CASE | Opcode.BRANCH:
                if not isinstance(reg, Sum):
                    raise VerifyError(f"expected a sum, got {reg}")
                if type(arg) is not int:
                    raise VerifyError(f"offset {arg!r} is not an integer")
                left, right = reg.left, reg.right
                if op is Opcode.BRANCH:
                    env = self.pop()
                    left = _check_type(Prod(env, left), "branch")
                    right = _check_type(Prod(env, right), "branch")
                self.open_region(pc, arg, left, right)
            case Opcode.DISTL:
                if not (isinstance(reg, Prod) and isinstance(reg.right, Sum)):
                    raise VerifyError(f"expected E x (A + B), got {reg}")
                env, alts = reg.left, reg.right
                self.register = _check_type(
                    Sum(Prod(env, alts.left), Prod(env, alts.right)), "distributed"
                )
            case Opcode.JMP:
                self.jump(pc, arg)

    def open_fold(self, pc: int, arg: object, reg: Type) -> None:
        if not (
            isinstance(reg, Prod)
            and isinstance(reg.right, Prod)
            and isinstance(reg.right.left, ListT)
        ):
            raise VerifyError(f"FOLD expects E x (List A x S), got {reg}")
        if type(arg) is not int:
            raise VerifyError(f"offset {arg!r} is not an integer")
        next_pc = pc + 1 + arg
        if next_pc >= self.limit():
            raise VerifyError(f"the fold's NEXT at {next_pc} lies outside its enclosing region")
        if self.folds >= limits.MAX_FOLD_NESTING:
            raise LimitError(f"folds nested deeper than {limits.MAX_FOLD_NESTING}")
        if len(self.regions) >= limits.MAX_NESTING:
            raise LimitError(f"regions nested deeper than {limits.MAX_NESTING}")
        env, acc = reg.left, reg.right.right
        self.regions.append(_FoldRegion(pc, next_pc, len(self.stack), acc))
        self.folds += 1
        self.folds_seen = True
        self.register = _check_type(Prod(env, Prod(reg.right.left.elem, acc)), "fold body")

    def close_fold(self, pc: int, reg: Type) -> None:
        top = self.regions[-1] if self.regions else None
        if not isinstance(top, _FoldRegion) or top.next_pc != pc:
            raise VerifyError("NEXT is only allowed at the end of a fold's body")
        if len(self.stack) != top.floor:
            raise VerifyError(f"the body of the fold at {top.at} does not restore the stack")
        if not (isinstance(reg, Sum) and reg.left is top.acc):
            raise VerifyError(f"the body of the fold at {top.at} gives {reg}, not {top.acc} + R")
        self.regions.pop()
        self.folds -= 1

    def jump(self, pc: int, arg: object) -> None:
        r = self.regions[-1] if self.regions else None
        if not isinstance(r, _Region) or r.end >= 0 or pc != r.else_pc - 1:
            raise VerifyError("JMP is only allowed as the last instruction of a branch's arm 0")
        if type(arg) is not int or arg < 0:
            raise VerifyError(f"offset {arg!r} is not a non-negative integer")
        end = pc + 1 + arg
        if end > r.limit:
            raise VerifyError(f"jump target {end} leaves the enclosing region")
        if len(self.stack) != r.floor:
            raise VerifyError(f"arm 0 of the branch at {r.at} does not restore the stack")
        r.end = end
        r.arm0_register = self.register
        r.arm0_steps = self.steps
        self.register = r.right
        self.steps = r.steps_entry
