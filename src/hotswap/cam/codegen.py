"""The fast path: verified CAM code turned into Python source, compiled once.

Code is executed symbolically at generation time (docs/design.md, "The CAM and the fast path";
docs/bytecode.md, section 9.4): the register and stack hold symbolic values, so projections of
known pairs and cases of known injections vanish, and only primitives, real branches and result
tuples are emitted. A branch whose join ends the function returns from each arm; other joins
assign the arms' results to shared variables, keeping whatever structure both arms agree on.

Safety: the source is produced from *verified* typed code alone; identifiers come from a counter;
literals are emitted only from exact ints; operators come from fixed tables; nothing from the
module (names, strings) is spliced as text; the code runs with empty builtins; nesting is
capped by the verifier, so Python's parser and compiler stay within their limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hotswap.cam.instructions import Code, Opcode
from hotswap.errors import InternalError, Trap
from hotswap.lang import ints
from hotswap.lang.evaluate import FALSE, TRUE, Value
from hotswap.lang.terms import Op

# --- symbolic values ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Expr:
    """A pure, cheap Python expression: a variable, a literal or a projection path."""

    text: str


@dataclass(frozen=True, slots=True)
class _Pair:
    left: _Sym
    right: _Sym
    size: int


@dataclass(frozen=True, slots=True)
class _Inj:
    tag: int
    payload: _Sym
    size: int


@dataclass(frozen=True, slots=True)
class _Cond:
    """A Bool whose truth is the Python expression ``text`` (left: false, right: true)."""

    text: str


@dataclass(frozen=True, slots=True)
class _Dist:
    """``distl`` of ``(env, alts)`` with ``alts`` an unknown sum held in variable ``alts``."""

    env: _Sym
    alts: str
    size: int


_Sym = _Expr | _Pair | _Inj | _Cond | _Dist
_UNIT = _Expr("()")
#: Symbolic trees or condition texts larger than this are bound to a variable, so that sharing
#: (PUSH then CONS duplicates a value) can never blow up the generated source.
_INLINE_LIMIT = 48

_BINARY = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*", Op.FLOORDIV: "//", Op.MOD: "%"}
_COMPARE = {Op.LT: "<", Op.LE: "<=", Op.EQ: "==", Op.NE: "!=", Op.GT: ">", Op.GE: ">="}
_TRAPS: list[Trap] = [ints.overflow(op) for op in Op] + [ints.division_by_zero(op) for op in Op]


def _raise_trap(index: int) -> None:
    t = _TRAPS[index]
    raise Trap(t.kind, str(t))


def _size(s: _Sym) -> int:
    return s.size if isinstance(s, _Pair | _Inj | _Dist) else 1


class _Generator:
    def __init__(self, code: Code) -> None:
        self.code = code
        self.counter = 0

    def fresh(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    # -- rendering ----------------------------------------------------------------------------

    def text(self, s: _Sym) -> str:
        match s:
            case _Expr(text):
                return text
            case _Pair(left, right, _):
                return f"({self.text(left)}, {self.text(right)})"
            case _Inj(tag, payload, _):
                return f"({tag}, {self.text(payload)})"
            case _Cond(text):
                return f"(_T if {text} else _F)"
            case _Dist(env, alts, _):
                return f"({alts}[0], ({self.text(env)}, {alts}[1]))"
        raise InternalError(f"unknown symbolic value {s!r}")

    def bind(self, s: _Sym, out: list[str], indent: str) -> _Sym:
        """Keep ``s`` small: bind large trees and long conditions to a fresh variable."""
        if isinstance(s, _Cond) and len(s.text) > _INLINE_LIMIT:
            name = self.fresh()
            out.append(f"{indent}{name} = {s.text}")
            return _Cond(name)
        if _size(s) > _INLINE_LIMIT:
            name = self.fresh()
            out.append(f"{indent}{name} = {self.text(s)}")
            return _Expr(name)
        return s

    def pair(self, a: _Sym, b: _Sym, out: list[str], indent: str) -> _Sym:
        return self.bind(_Pair(a, b, 1 + _size(a) + _size(b)), out, indent)

    def inj(self, tag: int, p: _Sym, out: list[str], indent: str) -> _Sym:
        return self.bind(_Inj(tag, p, 1 + _size(p)), out, indent)

    @staticmethod
    def project(s: _Sym, i: int) -> _Sym:
        match s:
            case _Pair(left, right, _):
                return left if i == 0 else right
            case _Expr(text):
                return _Expr(f"{text}[{i}]")
            case _Dist(env, alts, _):
                if i == 0:
                    return _Expr(f"{alts}[0]")
                payload = _Expr(f"{alts}[1]")
                return _Pair(env, payload, 2 + _size(env))
        raise InternalError(f"projection of {s!r}")

    @staticmethod
    def truth(s: _Sym) -> str | int:
        """A Python expression true exactly when the Bool/sum ``s`` is a right injection."""
        match s:
            case _Cond(text):
                return text
            case _Inj(tag, _, _):
                return tag
            case _Expr(text):
                return f"{text}[0]"
            case _Dist(_, alts, _):
                return f"{alts}[0]"
        raise InternalError(f"truth of {s!r}")

    # -- instructions -------------------------------------------------------------------------

    def prim(self, op: Op, reg: _Sym, out: list[str], indent: str) -> _Sym:
        if op is Op.NEG:
            return self.checked(f"-{self.text(reg)}", op, out, indent)
        if op is Op.NOT:
            t = self.truth(reg)
            if isinstance(t, int):
                return _Inj(1 - t, _UNIT, 2)
            return self.bind(_Cond(f"(not {t})"), out, indent)
        a, b = self.project(reg, 0), self.project(reg, 1)
        if op in (Op.AND, Op.OR):
            word = "and" if op is Op.AND else "or"
            return self.bind(_Cond(f"({self.truth(a)} {word} {self.truth(b)})"), out, indent)
        ta, tb = self.text(a), self.text(b)
        if op in _COMPARE:
            return self.bind(_Cond(f"({ta} {_COMPARE[op]} {tb})"), out, indent)
        if op in (Op.FLOORDIV, Op.MOD):
            out.append(f"{indent}if {tb} == 0: _trap({len(Op) + list(Op).index(op)})")
        if op is Op.MOD:  # |a % b| < |b|: never out of range
            name = self.fresh()
            out.append(f"{indent}{name} = {ta} % {tb}")
            return _Expr(name)
        return self.checked(f"{ta} {_BINARY[op]} {tb}", op, out, indent)

    def checked(self, expr: str, op: Op, out: list[str], indent: str) -> _Sym:
        name = self.fresh()
        out.append(f"{indent}{name} = {expr}")
        lo, hi = ints.INT_MIN, ints.INT_MAX
        out.append(f"{indent}if not {lo} <= {name} <= {hi}: _trap({list(Op).index(op)})")
        return _Expr(name)

    def run(
        self,
        start: int,
        stop: int,
        reg: _Sym,
        stack: list[_Sym],
        out: list[str],
        depth: int,
        tail: bool,
    ) -> _Sym | None:
        """Emit code[start:stop]; return the final register, or None if every path returned.

        ``tail`` says that reaching ``stop`` ends the function: the result is returned here."""
        indent = "    " * depth
        pc = start
        code = self.code
        while pc < stop:
            instr = code[pc]
            op, arg = instr.op, instr.arg
            if op is Opcode.CASE or op is Opcode.BRANCH:
                assert isinstance(arg, int)
                env = stack.pop() if op is Opcode.BRANCH else None
                jmp = pc + arg
                end = jmp + 1 + _offset(code[jmp].arg)
                arms = (pc + 1, jmp), (jmp + 1, end)
                joined = self.branch(reg, env, arms, stack, out, depth, tail and end == stop)
                if joined is None:
                    return None
                reg, pc = joined, end
                continue
            reg = self.simple(op, arg, reg, stack, out, indent)
            pc += 1
        if tail:
            out.append(f"{indent}return {self.text(reg)}")
            return None
        return reg

    def simple(
        self, op: Opcode, arg: object, reg: _Sym, stack: list[_Sym], out: list[str], indent: str
    ) -> _Sym:
        match op:
            case Opcode.FST:
                return self.project(reg, 0)
            case Opcode.SND:
                return self.project(reg, 1)
            case Opcode.PUSH:
                stack.append(reg)
                return reg
            case Opcode.SWAP:
                top = stack[-1]
                stack[-1] = reg
                return top
            case Opcode.CONS:
                return self.pair(stack.pop(), reg, out, indent)
            case Opcode.UNIT:
                return _UNIT
            case Opcode.LIT:
                if type(arg) is not int:
                    raise InternalError(f"LIT of {arg!r} passed verification")
                return _Expr(f"({int(arg)})")
            case Opcode.PRIM:
                assert isinstance(arg, Op)
                return self.prim(arg, reg, out, indent)
            case Opcode.INL | Opcode.INR:
                return self.inj(0 if op is Opcode.INL else 1, reg, out, indent)
            case Opcode.DISTL:
                env, alts = self.project(reg, 0), self.project(reg, 1)
                if isinstance(alts, _Inj):
                    return self.inj(
                        alts.tag, self.pair(env, alts.payload, out, indent), out, indent
                    )
                name = self.text(alts)
                if not name.isidentifier():
                    name = self.fresh()
                    out.append(f"{indent}{name} = {self.text(alts)}")
                return self.bind(_Dist(env, name, 2 + _size(env)), out, indent)
        raise InternalError(f"unexpected {op.name} in straight-line code")

    def branch(
        self,
        reg: _Sym,
        env: _Sym | None,
        arms: tuple[tuple[int, int], tuple[int, int]],
        stack: list[_Sym],
        out: list[str],
        depth: int,
        tail: bool,
    ) -> _Sym | None:
        """Emit a CASE (``env`` None) or BRANCH; ``tail`` says the join ends the function."""
        arm0, arm1 = arms

        def payload() -> _Sym:
            p = (
                reg.payload
                if isinstance(reg, _Inj)
                else (_UNIT if isinstance(reg, _Cond) else self.project(reg, 1))
            )
            return p if env is None else self.pair(env, p, out, "    " * depth)

        if isinstance(reg, _Inj):  # the case of a known injection: only one arm exists
            lo, hi = arm1 if reg.tag else arm0
            return self.run(lo, hi, payload(), stack, out, depth, tail)
        if isinstance(reg, _Expr) and not reg.text.isidentifier():
            name = self.fresh()
            out.append(f"{'    ' * depth}{name} = {reg.text}")
            reg = _Expr(name)
        condition = self.truth(reg)
        p0 = p1 = payload()
        body0: list[str] = []
        body1: list[str] = []
        r0 = self.run(arm0[0], arm0[1], p0, list(stack), body0, depth + 1, tail)
        r1 = self.run(arm1[0], arm1[1], p1, list(stack), body1, depth + 1, tail)
        joined: _Sym | None = None
        if r0 is not None and r1 is not None:
            joined = self.join(r0, r1, body0, body1, "    " * (depth + 1))
        elif (r0 is None) != (r1 is None):
            raise InternalError("one arm returned and the other did not")
        indent = "    " * depth
        out.append(f"{indent}if {condition}:")
        out.extend(body1 or [f"{indent}    pass"])
        out.append(f"{indent}else:")
        out.extend(body0 or [f"{indent}    pass"])
        return joined

    def join(self, a: _Sym, b: _Sym, out0: list[str], out1: list[str], indent: str) -> _Sym:
        """A symbolic value equal to ``a`` after arm 0 and to ``b`` after arm 1."""
        if a == b:
            return a
        if isinstance(a, _Pair) and isinstance(b, _Pair):
            left = self.join(a.left, b.left, out0, out1, indent)
            right = self.join(a.right, b.right, out0, out1, indent)
            return _Pair(left, right, 1 + _size(left) + _size(right))
        if isinstance(a, _Inj) and isinstance(b, _Inj) and a.tag == b.tag:
            p = self.join(a.payload, b.payload, out0, out1, indent)
            return _Inj(a.tag, p, 1 + _size(p))
        name = self.fresh()
        out0.append(f"{indent}{name} = {self.text(a)}")
        out1.append(f"{indent}{name} = {self.text(b)}")
        return _Expr(name)


def _offset(arg: object) -> int:
    if type(arg) is not int:
        raise InternalError(f"offset {arg!r} passed verification")
    return int(arg)


def generate_source(code: Code, name: str = "f") -> str:
    """Python source of a function ``name(x)`` equivalent to the verified ``code``."""
    if not name.isidentifier():
        raise InternalError(f"bad function name {name!r}")
    gen = _Generator(code)
    body: list[str] = []
    gen.run(0, len(code), _Expr("x"), [], body, 1, tail=True)
    return "\n".join([f"def {name}(x):", *body, ""])


def compile_code(code: Code) -> Callable[[Value], Value]:
    """Compile verified code to a Python function running with empty builtins."""
    source = generate_source(code)
    namespace: dict[str, Any] = {"__builtins__": {}, "_T": TRUE, "_F": FALSE, "_trap": _raise_trap}
    exec(compile(source, "<hotswap fast path>", "exec"), namespace)
    fn: Callable[[Value], Value] = namespace["f"]
    return fn
