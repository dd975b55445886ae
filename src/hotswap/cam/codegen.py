"""The fast path: verified CAM code turned into Python source, compiled once.

Code is executed symbolically at generation time (docs/design.md, "The CAM and the fast path";
docs/bytecode.md, section 9.4): the register and stack hold symbolic values, so projections of
known pairs and cases of known injections vanish, and only primitives, real branches and result
tuples are emitted. A branch whose join ends the function returns from each arm; other joins
assign the arms' results to shared variables, keeping whatever structure both arms agree on.

Fuel (docs/bytecode.md, "Costs"): the generated function ``f(x, _f)`` takes the fuel left and
returns ``(result, fuel left)``. Costs known at generation time are added up along each path and
taken in one subtraction just before anything that could trap, at the end of each arm, at each
fold iteration and before returning; a subtraction that leaves less than nothing raises
:class:`OutOfFuel`. Nothing observable happens between two such points, so a run traps out of
fuel exactly when the reference VM does, and otherwise uses exactly the fuel it uses.

Folds become Python ``for`` loops over the list, with the state in a variable and ``break``
for an early ``inr``; a fold of fixed cost per element is also charged once for the whole list
when the fuel covers it, and a list accumulator only appended to is built in place
(:meth:`_Generator.fold`; docs/bytecode.md, section 11.7). Generated code reads the vectors'
and maps' own slots (``_n``, ``_root``, ``_tail``, ``_small``, ``_index``) for lengths and
iteration rather than calling their Python methods.

Safety: the source is produced from *verified* typed code alone; identifiers come from a counter;
literals are emitted only from exact ints; operators come from fixed tables; nothing from the
module (names, strings) is spliced as text: text literals and empty collections are constants
in the function's namespace; the code runs with empty builtins; nesting is capped by the
verifier, so Python's parser and compiler stay within their limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType
from typing import Any

from hotswap.cam.instructions import Code, Opcode
from hotswap.cam.limits import DEFAULT_FUEL
from hotswap.errors import InternalError, Trap
from hotswap.lang import ints, prims
from hotswap.lang.check import MAX_ELEMENTS, MAX_STR_LEN
from hotswap.lang.evaluate import FALSE, TRUE, Value
from hotswap.lang.persistent import EMPTY_LIST, EMPTY_MAP, SMALL, small_map
from hotswap.lang.terms import TRAPPING, V1_OPS, Op
from hotswap.lang.types import ListT
from hotswap.lang.vector import of_list


class OutOfFuel(Exception):
    """Raised by generated code when the fuel runs out; callers turn it into a trap."""


class _Abort(Exception):
    """A fold's specialised form does not apply to its body: the general form is emitted."""


class _Long(Exception):
    """Raised in a fold's copy with its fuel taken up front, when a concatenation there makes
    text of :data:`prims.TEXT_CHUNK` code points or more (whose cost is not the fixed 1 the
    copy was charged for): the fold starts again, metered (:meth:`_Generator.fold`)."""


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


@dataclass(frozen=True, slots=True)
class _Build:
    """The accumulator of a fold that starts from the empty list and only appends to it: a
    Python ``list`` in variable ``var``, made a persistent list once after the loop. Valid only
    while ``gen`` is the list's current generation (:attr:`_Generator.builds`): each append
    makes a new one, so an older version of the accumulator can never be used. Anything but an
    append to it or handing it to the next iteration raises :class:`_Abort`."""

    var: str
    gen: int


_Sym = _Expr | _Pair | _Inj | _Cond | _Dist | _Build
_UNIT = _Expr("()")
#: Symbolic trees or condition texts larger than this are bound to a variable, so that sharing
#: (PUSH then CONS duplicates a value) can never blow up the generated source.
_INLINE_LIMIT = 48

_BINARY = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*", Op.FLOORDIV: "//", Op.MOD: "%"}
_COMPARE = {Op.LT: "<", Op.LE: "<=", Op.EQ: "==", Op.NE: "!=", Op.GT: ">", Op.GE: ">="}
_TRAPS: list[Trap] = [ints.overflow(op) for op in Op] + [ints.division_by_zero(op) for op in Op]


#: Primitives whose variable cost is the length of their argument, or of its second component.
_COUNTED_ARG = frozenset({Op.MAP_KEYS, Op.MAP_VALUES, Op.MAP_ITEMS})
_COUNTED = _COUNTED_ARG | {Op.LIST_CONCAT, Op.MAP_MERGE}
#: Primitives of format 2 that never trap and cost a fixed 1: their cost is carried to the next
#: subtraction, like that of any other such instruction (docs/bytecode.md, section 11.7).
_QUIET = frozenset(
    {Op.STR_LEN, Op.INT_TO_STR, Op.LIST_LEN, Op.MAP_LEN, Op.MAP_GET, Op.MAP_DELETE, Op.MAP_CONTAINS}
)
#: Map primitives done inline on a small map's ``dict`` (:meth:`_Generator.small_map_op`).
_SMALL_MAP_OPS = frozenset(
    {Op.MAP_GET, Op.MAP_INDEX, Op.MAP_CONTAINS, Op.MAP_INSERT, Op.MAP_DELETE}
)


def _out_of_range(x: str) -> str:
    """The test that the int in ``x`` is outside the core's range: two comparisons with
    ``SMALL_INT``, which CPython specialises, before the two with the range's own bounds, which
    it does not (about 11 ns against 33 for the range's alone, by ``timeit``)."""
    small = ints.SMALL_INT
    return f"not -{small} <= {x} <= {small} and not {ints.INT_MIN} <= {x} <= {ints.INT_MAX}"


#: The most code points ``INT_TO_STR`` gives (``str(INT_MIN)``).
_INT_TEXT = len(str(ints.INT_MIN))
#: A concatenation whose result is known, when the code is generated, to hold at most this
#: many code points allocates too little to need a comparison of the fuel after it.
_SHORT_TEXT = 1024


def _raise_trap(index: int) -> None:
    t = _TRAPS[index]
    raise Trap(t.kind, str(t))


def _out_of_fuel() -> None:
    raise OutOfFuel


def _size(s: _Sym) -> int:
    return s.size if isinstance(s, _Pair | _Inj | _Dist) else 1


def _holds_build(s: _Sym) -> bool:
    match s:
        case _Build():
            return True
        case _Pair(left, right, _):
            return _holds_build(left) or _holds_build(right)
        case _Inj(_, payload, _):
            return _holds_build(payload)
        case _Dist(env, _, _):
            return _holds_build(env)
    return False


#: Fold bodies of at most this many instructions, with no fold inside, get the specialised
#: forms (a list accumulator built in place; fuel charged once for the whole loop): each is a
#: second copy of the body in the generated source.
_FAST_FOLD_LIMIT = 512


class _Generator:
    def __init__(self, code: Code, metered: bool = True) -> None:
        self.code = code
        self.metered = metered
        self.counter = 0
        #: Namespace constants: text literals and primitive implementations.
        self.constants: dict[str, object] = {}
        self._texts: dict[str, str] = {}
        #: While a fold body is generated for its form with fuel charged up front: the fixed
        #: costs taken so far (anything else, a variable cost, a real branch, a nested fold or
        #: a ``FAIL``, raises :class:`_Abort`).
        self.tally: list[int] | None = None
        #: Whether the fold body being generated with its fuel up front has a concatenation
        #: whose text is only known to be short once it is made (it raises :class:`_Long`).
        self.guarded = False
        #: Whether every append to a list accumulator in the fold body being generated with its
        #: fuel up front appends text known to hold under :data:`prims.TEXT_CHUNK` code points.
        self.short_appends = True
        #: Lists made by such folds: the expression true when each of their items is such a
        #: text, which the cost of sorting them needs to know (``LIST_SORT``, :meth:`prim2`).
        self.short_items: dict[str, str] = {}
        #: The current generation of each list accumulator being built (:class:`_Build`).
        self.builds: dict[str, int] = {}
        #: Accumulators being built that get one append per run of their fold's body: they
        #: never reach the length limit (the fold's list is within it), so it is not checked.
        self.single: set[str] = set()
        #: The most code points the text in a variable (or text constant) can hold, where the
        #: code shows a bound: text literals, ``INT_TO_STR`` and concatenations of those.
        self.text_bound: dict[str, int] = {}
        #: Variables holding the list of a map's keys, values or items (``MAP_KEYS``...): the
        #: variable the map's ``_small`` was read into (None when it is large) and what to
        #: iterate instead of the list when it is not None.
        self.map_lists: dict[str, tuple[str, str]] = {}
        #: The line making each of those lists, and the line to put in its place when every
        #: use of the list is one of a fold's that reads the dict (:func:`_generate`).
        self.lazy: dict[str, tuple[str, str]] = {}

    def text_constant(self, text: str) -> str:
        name = self._texts.get(text)
        if name is None:
            name = self._texts[text] = f"_s{len(self._texts)}"
            self.constants[name] = text
            self.text_bound[name] = len(text)
        return name

    def prim_function(self, op: Op, table: str) -> str:
        name = f"_{table}{op.value}"
        if name not in self.constants:
            self.constants[name] = (prims.IMPL if table == "p" else prims.COST)[op]
        return name

    def flush(
        self, pending: int, out: list[str], indent: str, extra: str = "", check: bool = False
    ) -> None:
        """Take ``pending`` (and the cost expression ``extra``) from the fuel; with ``check``,
        then stop if it ran out. Without, the fuel may go below zero until the next check: only
        bounded work runs in between, and a trap raised meanwhile is turned into ``out_of_fuel``
        by the function's handler when the fuel is already negative (section 11.7)."""
        if self.tally is not None:
            if extra:
                raise _Abort
            self.tally[0] += pending
            return
        if not self.metered or (pending == 0 and not extra):
            return
        amount = f"{pending} + {extra}" if extra else str(pending)
        out.append(f"{indent}_f -= {amount}")
        if check:
            out.append(f"{indent}if _f < 0: _oof()")

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
            case _Build():
                raise _Abort
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
            case _Build():
                raise _Abort
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
            case _Build():
                raise _Abort
        raise InternalError(f"truth of {s!r}")

    # -- instructions -------------------------------------------------------------------------

    def prim2(
        self, op: Op, reg: _Sym, out: list[str], indent: str, pending: int
    ) -> tuple[_Sym, int]:
        """A format 2 primitive: a call of its implementation, after its cost is taken (or,
        for one that cannot trap and costs 1, with its cost carried on); the result and the
        fuel still to take."""
        if op is Op.STR_CONCAT:  # inline: a + b, then its cost, then the limit (the VM's order)
            a, b = self.operands(reg, out, indent)
            name = self.fresh()
            out.append(f"{indent}{name} = {a} + {b}")
            bound = self.text_bound.get(a, -1), self.text_bound.get(b, -1)
            known = bound[0] + bound[1] if min(bound) >= 0 else None
            if known is not None and known < prims.TEXT_CHUNK:  # costs 1: carried on
                self.text_bound[name] = known
                return _Expr(name), pending + 1
            if self.tally is not None:  # fuel up front: its cost is 1 only while text is short
                out.append(f"{indent}if _len({name}) >= {prims.TEXT_CHUNK}: raise _Long")
                self.text_bound[name] = prims.TEXT_CHUNK - 1
                self.guarded = True
                return _Expr(name), pending + 1
            # checked: text is what a run could pile up (65,536 instructions of megabyte texts
            # in one stretch) before the next comparison; short text is not
            short = known is not None and known <= _SHORT_TEXT
            extra = f"_len({name}) // {prims.TEXT_CHUNK}"
            self.flush(pending + 1, out, indent, extra, check=not short)
            if known is not None:
                self.text_bound[name] = known
            if known is None or known > MAX_STR_LEN:
                limit = f"_len({name}) > {MAX_STR_LEN}"
                out.append(f"{indent}if {limit}: {self.prim_function(op, 'p')}(({a}, {b}))")
            return _Expr(name), 0
        if op is Op.LIST_APPEND and isinstance(acc := self.project(reg, 0), _Build):
            if self.builds.get(acc.var) != acc.gen:  # an older version of the list
                raise _Abort
            b = self.named(self.project(reg, 1), out, indent)
            if self.text_bound.get(b, prims.TEXT_CHUNK) >= prims.TEXT_CHUNK:
                self.short_appends = False
            left = pending + 1
            if acc.var not in self.single:
                self.flush(left, out, indent)
                limit = f"_len({acc.var}) >= {MAX_ELEMENTS}"
                out.append(f"{indent}if {limit}: {self.prim_function(op, 'p')}(({acc.var}, {b}))")
                left = 0
            out.append(f"{indent}{acc.var}.append({b})")
            self.builds[acc.var] = acc.gen + 1
            return _Build(acc.var, acc.gen + 1), left
        if op is Op.LIST_APPEND:  # inline: its cost, the limit, then xs.append(x)
            a, b = self.operands(reg, out, indent)
            self.flush(pending + 1, out, indent)
            limit = f"{a}._n >= {MAX_ELEMENTS}"
            out.append(f"{indent}if {limit}: {self.prim_function(op, 'p')}(({a}, {b}))")
            name = self.fresh()
            out.append(f"{indent}{name} = {a}.append({b})")
            return _Expr(name), 0
        if op in _SMALL_MAP_OPS:
            return self.small_map_op(op, reg, out, indent, pending)
        arg = self.named(reg, out, indent)
        if op in prims.CHARGED:  # the cost and the result in one call, in the VM's order
            if self.tally is not None:
                raise _Abort
            cost, name = self.fresh(), self.fresh()
            fn = f"_x{op.value}"
            self.constants[fn] = prims.CHARGED[op]
            hint = ""  # a sort of text known short needs no measuring (prims._sort_charged)
            if op is Op.LIST_SORT and arg in self.short_items:
                hint = f", {self.short_items[arg]}"
            out.append(f"{indent}{cost}, {name} = {fn}({arg}, _f - {pending + 1}{hint})")
            self.flush(pending + 1, out, indent, cost, check=True)
            return _Expr(name), 0
        small = None
        if op in _COUNTED:  # the cost is a length: inline
            if op in _COUNTED_ARG:
                small = self.fresh()
                extra = self.map_len(arg, small)
            elif op is Op.LIST_CONCAT:
                extra = f"{arg}[1]._n"
            else:
                extra = self.map_len(f"{arg}[1]")
        else:
            extra = f"{self.prim_function(op, 'c')}({arg}, _f)" if op in prims.COST else ""
        left = pending + 1
        if op not in _QUIET:
            self.flush(left, out, indent, extra, check=bool(extra))
            left = 0
        if op in (Op.EQUAL, Op.NOT_EQUAL):  # computed once, here, where it is charged
            word = "==" if op is Op.EQUAL else "!="
            name = self.fresh()
            out.append(f"{indent}{name} = {arg}[0] {word} {arg}[1]")
            return _Cond(name), left
        name = self.fresh()
        made = f"{name} = {self.prim_function(op, 'p')}({arg})"
        out.append(f"{indent}{made}")
        if small is not None and self.metered:  # a fold may read the small map's dict instead
            view = {Op.MAP_KEYS: small, Op.MAP_VALUES: f"{small}.values()"}
            self.map_lists[name] = (small, view.get(op, f"{small}.items()"))
            self.lazy[name] = (f"{indent}{made}", f"{indent}if {small} is None: {made}")
        if op is Op.INT_TO_STR:
            self.text_bound[name] = _INT_TEXT
        return _Expr(name), left

    def named(self, s: _Sym, out: list[str], indent: str) -> str:
        """``s`` as a name or a constant (bound to a fresh variable otherwise)."""
        text = self.text(s)
        if text.isidentifier():
            return text
        name = self.fresh()
        out.append(f"{indent}{name} = {text}")
        return name

    def small_map_op(
        self, op: Op, reg: _Sym, out: list[str], indent: str, pending: int
    ) -> tuple[_Sym, int]:
        """A map primitive on a small map of unmeasured size done inline on its ``dict``
        (what ``OMap``'s method does, without the calls), its implementation called for any
        other map; charged as the call would be."""
        m, k = self.named(self.project(reg, 0), out, indent), self.project(reg, 1)
        x = None
        if op is Op.MAP_INSERT:
            x = self.named(self.project(k, 1), out, indent)
            k = self.project(k, 0)
        key = self.named(k, out, indent)
        call = f"{self.prim_function(op, 'p')}(({m}, {f'({key}, {x})' if x else key}))"
        left = pending + 1
        if op not in _QUIET:
            self.flush(left, out, indent)
            left = 0
        name, small = self.fresh(), self.fresh()
        test = f"({small} := {m}._small) is not None"
        if op is Op.MAP_CONTAINS:
            out.append(f"{indent}{name} = ({key} in {small}) if {test} else ({key} in {m})")
            return _Cond(name), left
        if op is Op.MAP_GET:
            got = self.fresh()
            found = (
                f"(_NOTHING if ({got} := {small}.get({key}, _MISSING)) is _MISSING else (1, {got}))"
            )
            out.append(f"{indent}{name} = {found} if {test} else {call}")
        elif op is Op.MAP_INDEX:
            got = self.fresh()
            found = (
                f"({got} if ({got} := {small}.get({key}, _MISSING)) is not _MISSING else {call})"
            )
            out.append(f"{indent}{name} = {found} if {test} else {call}")
        else:  # MAP_INSERT and MAP_DELETE make a new dict
            if op is Op.MAP_INSERT:
                fits = f"(_len({small}) < {SMALL} or {key} in {small})"
                change = f"{name}[{key}] = {x}"
            else:
                fits = f"{key} in {small}"
                change = f"del {name}[{key}]"
            out.append(f"{indent}if {test} and {m}._size < 0 and {fits}:")
            out.append(f"{indent}    {name} = {small}.copy()")
            out.append(f"{indent}    {change}")
            made = f"_small_map({name})"
            if op is Op.MAP_DELETE:  # its last entry deleted: the empty map
                made = f"{made} if {name} else _EM"
            out.append(f"{indent}    {name} = {made}")
            out.append(f"{indent}else:")
            out.append(f"{indent}    {name} = {call}")
        return _Expr(name), left

    def map_len(self, m: str, small: str | None = None) -> str:
        """The length of the map in expression ``m``, without a call of a Python method (its
        ``_small`` left in variable ``small``)."""
        small = small or self.fresh()
        return f"(_len({small}) if ({small} := {m}._small) is not None else _len({m}._index))"

    def operands(self, reg: _Sym, out: list[str], indent: str) -> tuple[str, str]:
        """The two components of the pair in ``reg``, each a name or a constant (bound to a
        fresh variable otherwise), without building the pair."""
        return self.named(self.project(reg, 0), out, indent), self.named(
            self.project(reg, 1), out, indent
        )

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
        out.append(f"{indent}if {_out_of_range(name)}: _trap({list(Op).index(op)})")
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
        pending: int = 0,
        after: int = 0,
    ) -> tuple[_Sym | None, int]:
        """Emit code[start:stop]; return the final register (None if every path returned) and
        the fuel its path has cost since the last subtraction.

        ``tail`` says that reaching ``stop`` ends the function: the result is returned here,
        after taking ``after`` more, the cost of what runs between ``stop`` and the end (the
        JMP that ends each enclosing arm 0)."""
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
                ends = tail and end == stop
                joined = self.branch(
                    reg, env, arms, stack, out, depth, ends, pending + 1, after if ends else 0
                )
                if joined is None:
                    return None, 0
                reg, pc, pending = joined, end, 0
                continue
            if op is Opcode.FOLD:
                assert isinstance(arg, int)
                reg = self.fold(pc, pc + 1 + arg, reg, stack, out, depth, pending + 1)
                pc, pending = pc + 2 + arg, 0
                continue
            if op is Opcode.PRIM and isinstance(arg, Op) and arg not in V1_OPS:
                reg, pending = self.prim2(arg, reg, out, indent, pending)
            elif op is Opcode.PRIM and arg in TRAPPING:
                self.flush(pending + 1, out, indent)
                reg, pending = self.simple(op, arg, reg, stack, out, indent), 0
            elif op is Opcode.FAIL:
                if self.tally is not None:
                    raise _Abort
                self.flush(pending + 1, out, indent)
                out.append(f"{indent}_fail({self.text(reg)})")
                # What follows is dead code; a name (not ``None``, whose ``None[0]`` Python's
                # compiler warns about) keeps any expression built on it quiet.
                reg, pending = _Expr("_dead"), 0
            else:
                reg = self.simple(op, arg, reg, stack, out, indent)
                pending += 1
            pc += 1
        if tail:
            self.flush(pending + after, out, indent)
            if self.metered:  # every path checks before it returns
                out.append(f"{indent}if _f < 0: _oof()")
            fuel = ", _f" if self.metered else ""
            out.append(f"{indent}return {self.text(reg)}{fuel}")
            return None, 0
        return reg, pending

    def fold(
        self,
        pc: int,
        next_pc: int,
        reg: _Sym,
        stack: list[_Sym],
        out: list[str],
        depth: int,
        pending: int,
    ) -> _Sym:
        """Emit a fold as a ``for`` loop; ``pending`` includes the FOLD's own cost.

        A body with no fold inside (and at most :data:`_FAST_FOLD_LIMIT` instructions) may get
        two specialisations, each tried and dropped when the body does not fit (:class:`_Abort`):

        - an accumulator that starts as the empty list and is only appended to is a Python
          ``list``, appended in place, made a persistent list once after the loop;
        - a body that never stops the fold early and whose every run costs the same fixed
          amount ``K`` (no variable cost, no real branch, no ``FAIL``) runs in a second copy
          with no fuel taken inside, chosen when the fuel left covers ``K`` times the list's
          length: then the VM cannot run out inside the fold, so a trap raised there is the
          trap it raises, and the fuel after it is the same. Otherwise the loop with a
          subtraction and a comparison per iteration runs, and runs out where the VM does.
          A concatenation of text of unknown length may be in that copy: its cost is the fixed
          1 while the text is under ``TEXT_CHUNK`` code points, and a longer one raises
          :class:`_Long`, which abandons the copy (the body is pure) for the metered loop,
          from the first element, with the fuel and the accumulator as they were."""
        if not self.metered:
            raise InternalError("code with a fold has no unmetered form")
        if self.tally is not None:  # no nested fold in a body whose fuel is taken up front
            raise _Abort
        indent = "    " * depth
        self.flush(pending, out, indent)
        rest = self.project(reg, 1)
        env, items, acc = self.project(reg, 0), self.project(rest, 0), self.project(rest, 1)
        env = self.bind(env, out, indent)
        items_text = self.text(items)
        if not items_text.isidentifier():
            name = self.fresh()
            out.append(f"{indent}{name} = {items_text}")
            items_text = name
        # a list of at most 32 elements is its tail alone (hotswap.lang.vector): a tuple
        elements = f"({items_text} if {items_text}._root else {items_text}._tail)"
        count = f"{items_text}._n"
        if items_text in self.map_lists:  # a small map's dict, without the list made of it
            small, view = self.map_lists[items_text]
            elements = f"({view} if {small} is not None else {elements})"
            count = f"(_len({small}) if {small} is not None else {count})"
        code = self.code
        innermost = next_pc - pc - 1 <= _FAST_FOLD_LIMIT and all(
            code[i].op is not Opcode.FOLD for i in range(pc + 1, next_pc)
        )
        build = innermost and isinstance(acc, _Expr) and acc.text == "_EL" and not _holds_build(env)
        acc_var, result, item = self.fresh(), self.fresh(), self.fresh()

        def body(building: bool, tally: list[int] | None) -> tuple[list[str], _Sym]:
            """The loop's body and its final register; raises :class:`_Abort` if it does not
            fit the form asked for."""
            lines: list[str] = []
            start_acc: _Sym = _Expr(acc_var)
            if building:
                self.builds[acc_var] = 0
                start_acc = _Build(acc_var, 0)
            start = _Pair(env, _Pair(_Expr(item), start_acc, 3), 2 + _size(env) + 3)
            saved, self.tally = self.tally, tally
            try:
                r, left = self.run(pc + 1, next_pc, start, list(stack), lines, depth + 1, False)
                if r is None:
                    raise InternalError("a fold's body returned from the function")
                if tally is not None:
                    tally[0] += left + 1  # + 1: the NEXT
                    if not (isinstance(r, _Inj) and r.tag == 0):
                        raise _Abort
                else:
                    self.flush(left + 1, lines, inner, check=True)  # + 1: the NEXT
            finally:
                self.tally = saved
            if building and not (
                isinstance(r, _Inj)
                and r.tag == 0
                and r.payload == _Build(acc_var, self.builds[acc_var])
            ):
                raise _Abort
            return lines, r

        inner = "    " * (depth + 1)
        try:
            lines, r = body(build, None)
        except _Abort:
            if not build:
                raise
            build = False
            lines, r = body(False, None)
        if build and self.builds[acc_var] == 1:  # one append per run: the limit is never hit
            self.single.add(acc_var)
            lines, r = body(True, None)
        initial = "[]" if build else self.text(acc)
        short_when: str | None = None
        out.append(f"{indent}{acc_var} = {initial}")
        known = isinstance(r, _Inj) and r.tag == 0
        if known and innermost:
            try:
                tally = [0]
                self.guarded, self.short_appends = False, True
                fast, fast_r = body(build, tally)
            except _Abort:
                pass
            else:
                if not build:
                    assert isinstance(fast_r, _Inj)
                    fast.append(f"{inner}{acc_var} = {self.text(fast_r.payload)}")
                elif not fast:  # a body with nothing to do once its fuel is taken in bulk
                    fast.append(f"{inner}pass")
                left = self.fresh()
                out.append(f"{indent}{left} = _f - {tally[0]} * {count}")
                if self.guarded:  # text made too long for the fixed cost: metered, again
                    ran = self.fresh()
                    short_when = ran if build and self.short_appends else None
                    out.append(f"{indent}{ran} = {left} >= 0")
                    out.append(f"{indent}if {ran}:")
                    out.append(f"{inner}try:")
                    out.append(f"{inner}    for {item} in {elements}:")
                    out.extend(["        " + line for line in fast])
                    out.append(f"{inner}except _Long:")
                    out.append(f"{inner}    {ran} = False")
                    out.append(f"{inner}    {acc_var} = {initial}")
                    out.append(f"{inner}else:")
                    out.append(f"{inner}    _f = {left}")
                    out.append(f"{indent}if not {ran}:")
                else:
                    out.append(f"{indent}if {left} >= 0:")
                    out.append(f"{inner}_f = {left}")
                    out.append(f"{inner}for {item} in {elements}:")
                    out.extend(["    " + line for line in fast])
                    out.append(f"{indent}else:")
                indent, inner = inner, inner + "    "
                lines = ["    " + line for line in lines]
        out.append(f"{indent}for {item} in {elements}:")
        if isinstance(r, _Inj) and r.tag == 0:
            if not build:
                lines.append(f"{inner}{acc_var} = {self.text(r.payload)}")
            out.extend(lines or [f"{inner}pass"])
            if not build:
                return _Inj(0, _Expr(acc_var), 2)
            made = self.fresh()
            out.append(f"{'    ' * depth}{made} = _mklist({acc_var})")
            if short_when is not None:
                self.short_items[made] = short_when
            return _Inj(0, _Expr(made), 2)
        if isinstance(r, _Inj):
            lines.append(f"{inner}{result} = (1, {self.text(r.payload)})")
            lines.append(f"{inner}break")
        else:
            name = self.text(r)
            if not name.isidentifier():
                name = self.fresh()
                lines.append(f"{inner}{name} = {self.text(r)}")
            lines.append(f"{inner}if {name}[0]:")
            lines.append(f"{inner}    {result} = {name}")
            lines.append(f"{inner}    break")
            lines.append(f"{inner}{acc_var} = {name}[1]")
        out.extend(lines)
        out.append(f"{indent}else:")
        out.append(f"{indent}    {result} = (0, {acc_var})")
        return _Expr(result)

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
            case Opcode.STR:
                assert isinstance(arg, str)
                return _Expr(self.text_constant(arg))
            case Opcode.EMPTY:
                return _Expr("_EL" if isinstance(arg, ListT) else "_EM")
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
        pending: int,
        after: int = 0,
    ) -> _Sym | None:
        """Emit a CASE (``env`` None) or BRANCH; ``tail`` says the join ends the function.
        ``pending`` (including the branch's own cost) is carried into each arm; each arm takes
        its fuel before the join."""
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
            jmp = 0 if reg.tag else 1  # arm 0 ends with its JMP
            known, left = self.run(
                lo, hi, payload(), stack, out, depth, tail, pending, after + jmp if tail else 0
            )
            if known is not None:  # arm 0 also runs its JMP
                self.flush(left + jmp, out, "    " * depth)
            return known
        if self.tally is not None:  # the runs of the body would not all cost the same
            raise _Abort
        if isinstance(reg, _Expr) and not reg.text.isidentifier():
            name = self.fresh()
            out.append(f"{'    ' * depth}{name} = {reg.text}")
            reg = _Expr(name)
        condition = self.truth(reg)
        p0 = p1 = payload()
        body0: list[str] = []
        body1: list[str] = []
        after0, after1 = (after + 1, after) if tail else (0, 0)  # + 1: arm 0's JMP
        builds = dict(self.builds)
        r0, left0 = self.run(
            arm0[0], arm0[1], p0, list(stack), body0, depth + 1, tail, pending, after0
        )
        builds0, self.builds = self.builds, builds
        r1, left1 = self.run(
            arm1[0], arm1[1], p1, list(stack), body1, depth + 1, tail, pending, after1
        )
        for var, gen in builds0.items():  # a list appended to differently in each arm
            if self.builds.get(var) != gen:  # is no version of the accumulator after both
                self.builds[var] = -1
        inner = "    " * (depth + 1)
        if r0 is not None:
            self.flush(left0 + 1, body0, inner)  # + 1: arm 0's JMP
        if r1 is not None:
            self.flush(left1, body1, inner)
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


def _generate(code: Code, name: str, metered: bool = True) -> tuple[str, dict[str, object]]:
    if not name.isidentifier():
        raise InternalError(f"bad function name {name!r}")
    gen = _Generator(code, metered)
    body: list[str] = []
    if not metered:
        gen.run(0, len(code), _Expr("x"), [], body, 1, tail=True)
        return "\n".join([f"def {name}(x):", *body, ""]), gen.constants
    gen.run(0, len(code), _Expr("x"), [], body, 2, tail=True)
    handler = ["    except _Trap:", "        if _f < 0: _oof()", "        raise"]
    source = "\n".join([f"def {name}(x, _f):", "    try:", *body, *handler, ""])
    return _lazy_lists(source, gen), gen.constants


def _lazy_lists(source: str, gen: _Generator) -> str:
    """Make the list of a small map's keys, values or items (``MAP_KEYS``...) only when the map
    is large, where every use of the list is a fold's that reads the map's dict instead when it
    is small (:meth:`_Generator.fold`): the list's variable is then read nowhere else."""
    if not gen.lazy:
        return source
    uses: dict[str, int] = {}
    for word in re.findall(r"\bv[0-9]+\b", source):
        if word in gen.lazy:
            uses[word] = uses.get(word, 0) + 1
    lines = source.split("\n")
    for var, (line, lazy) in gen.lazy.items():
        loops = source.count(f" is not None else ({var} if {var}._root else {var}._tail))")
        counts = source.count(f" is not None else {var}._n)")
        if uses.get(var, 0) == 1 + 3 * loops + counts:  # the line making it, and the folds'
            lines[lines.index(line)] = lazy
    return "\n".join(lines)


def generate_source(code: Code, name: str = "f", metered: bool = True) -> str:
    """Python source of a function ``name(x, _f)`` equivalent to the verified ``code``: it
    returns ``(result, fuel left)`` and raises :class:`OutOfFuel` when ``_f`` runs out.
    Unmetered (``name(x)``, only for :func:`has_static_cost` code), it returns the result."""
    return _generate(code, name, metered)[0]


def has_static_cost(code: Code) -> bool:
    """Whether every instruction of ``code`` costs exactly 1 (no fold, no primitive with a
    variable cost): then no run costs more than the verifier's step bound, and a budget of at
    least that bound can never run out, so the unmetered form gives the same results."""
    for instr in code:
        if instr.op is Opcode.FOLD:
            return False
        if instr.op is Opcode.PRIM and instr.arg in prims.COST:
            return False
    return True


def compile_unmetered(code: Code) -> Callable[[Value], Value]:
    """Compile :func:`has_static_cost` code to ``f(x) -> result``, which takes no fuel."""
    if not has_static_cost(code):
        raise InternalError("only code of static cost has an unmetered form")
    source, constants = _generate(code, "f", metered=False)
    fn: Callable[[Value], Value] = _exec(source, constants)
    return fn


Metered = Callable[[Value, int], tuple[Value, int]]


def compile_metered(code: Code) -> Metered:
    """Compile verified code to ``f(x, fuel) -> (result, fuel left)``, with empty builtins."""
    source, constants = _generate(code, "f")
    fn: Metered = _exec(source, constants)
    return fn


#: The file name generated code is compiled under.
SOURCE_NAME = "<hotswap fast path>"


def _compile_here(source: str) -> CodeType:
    return compile(source, SOURCE_NAME, "exec", dont_inherit=True)  # no __future__ of ours


#: Turns generated source into a code object. Python's ``compile`` holds the GIL for the whole
#: of it (half a second for a function at the instruction limit), so a node, whose event loop
#: must keep serving while an upgrade's modules load on a worker thread, compiles large sources
#: in a child process instead (:func:`set_compiler`, ``hotswap.node.compiling``).
_compiler: Callable[[str], CodeType] = _compile_here


def set_compiler(compiler: Callable[[str], CodeType] | None) -> None:
    """Compile generated source with ``compiler`` (None: Python's ``compile``, here). It must
    return what ``compile(source, SOURCE_NAME, "exec", dont_inherit=True)`` would, or raise
    what it would."""
    global _compiler  # noqa: PLW0603 - one way of compiling per process
    _compiler = _compile_here if compiler is None else compiler


def _exec(source: str, constants: dict[str, object]) -> Any:
    namespace: dict[str, Any] = {
        "__builtins__": {},
        "_T": TRUE,
        "_F": FALSE,
        "_trap": _raise_trap,
        "_oof": _out_of_fuel,
        "_Trap": Trap,
        "_Long": _Long,
        "_fail": prims.fail,
        "_len": len,
        "_EL": EMPTY_LIST,
        "_EM": EMPTY_MAP,
        "_small_map": small_map,
        "_MISSING": prims.MISSING,
        "_NOTHING": prims.NOTHING,
        "_mklist": of_list,  # a Python list made a persistent list (a fold's accumulator)
        **constants,
    }
    exec(_compiler(source), namespace)
    return namespace["f"]


def out_of_fuel(budget: int) -> Trap:
    return Trap("out_of_fuel", f"the run used all of its {budget} units of fuel")


def compile_code(code: Code, fuel: int = DEFAULT_FUEL) -> Callable[[Value], Value]:
    """Compile verified code to a Python function of one value, run with ``fuel``."""
    metered = compile_metered(code)

    def run(x: Value) -> Value:
        try:
            return metered(x, fuel)[0]
        except OutOfFuel:
            raise out_of_fuel(fuel) from None

    return run
