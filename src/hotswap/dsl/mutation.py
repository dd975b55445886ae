"""In-place changes of lists and dicts: accepted on a local that holds a copy of its own,
rejected on anything that may be shared, with the immutable form to write instead.

Values in the core are immutable, so ``xs.append(x)`` compiles to ``xs = xs + [x]``: a new
list bound to the same name. That means what Python means only when no other name, field or
collection holds the same list: then nobody can tell the difference. So a name ``N`` may be
changed in place when (the *aliasing rules*, checked on the syntax of the whole function):

- ``N`` is not a parameter (a parameter's value, such as a field of the state, may be shared
  with the caller), and the assignment to ``N`` that the change sees is a *fresh* value: a
  literal or a comprehension, ``list(...)``, ``dict(...)``, ``sorted(...)``, ``x.copy()``, a
  slice, or ``a + b`` / ``a | b`` (which build new objects); any other assignment (a field,
  a call's result, a loop variable) must come after every change, as an escape must;
- wherever ``N``'s value *escapes* (is stored: assigned to another name, put in a record, a
  tuple, a list or a dict, passed to a function), no change of ``N`` can follow while ``N``
  still holds that value: no path of the control flow (``if``/``match`` branches, ``break``,
  ``continue``, a loop's back edge) leads from the escape to a change without a fresh
  assignment of ``N`` on the way; an escape in a ``return`` leads nowhere. Reading ``N``
  (``N[k]``, ``len(N)``, ``k in N``, ``N.get(k)``, ``N + ys``, ``sorted(N)``, a loop over it) is
  no escape;
- a loop over ``N`` does not change ``N`` (Python would fail, or iterate what it appends),
  except ``N[k] = v`` for the loop's own key ``k`` of a dict.

The changes::

    N[k] = v            N = <N, <k, v>> ; map_insert         (lists: list_set; v runs first)
    N[k] += v           N[k] = N[k] + v
    del N[k]            N = <N, k> ; <id, map_index> ; fst ; map_delete   (a missing key traps)
    N.append(x)         N = <N, x> ; list_append             N.extend(ys)  N = N + ys
    N.insert(i, x)      N = N[:i] + [x] + N[i:]              N.sort()      N = sorted(N)
    N.update(e)         N = N | e                            N.clear()     N = [] / {}
    N.pop()/N.pop(i)    del N[-1] / del N[i]                 d.pop(k)      del d[k]
    N += ys, N |= e     N = N + ys, N = N | e
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from hotswap.dsl import flow, inference
from hotswap.dsl.annotations import dict_schema
from hotswap.dsl.combinators import coercion, if_then_else
from hotswap.dsl.data import prim
from hotswap.dsl.env import Env, Ref, seq
from hotswap.dsl.expressions import place
from hotswap.dsl.joins import Continuation
from hotswap.errors import SourceError
from hotswap.lang.ints import INT_MAX
from hotswap.lang.optimise import may_trap
from hotswap.lang.terms import FST, ID, SND, Empty, Fanout, Lit, Op, Prim, Term
from hotswap.names.schema import (
    INT_SCHEMA,
    DictSchema,
    IntSchema,
    ListSchema,
    RecordSchema,
    Schema,
    SchemaProblem,
    StrSchema,
    TupleSchema,
    UnionSchema,
    components,
    core_type,
    describe,
)

if TYPE_CHECKING:
    from hotswap.dsl.dispatch import FunctionCompiler
    from hotswap.dsl.functions import DslFunction

_FRESH_CALLS = frozenset({"list", "dict", "sorted"})
_READING_CALLS = frozenset(
    {
        "len",
        "sorted",
        "sum",
        "min",
        "max",
        "any",
        "all",
        "list",
        "dict",
        "str",
        "enumerate",
        "zip",
        "reversed",
    }
)
_READING_METHODS = frozenset(
    {"get", "keys", "values", "items", "copy", "count", "index", "startswith", "endswith", "join"}
)


class Aliasing:
    """The aliasing rules of the module doc, for one function's syntax."""

    def __init__(self, node: ast.FunctionDef, function: DslFunction | None = None) -> None:
        self.node = node
        self.function = function
        self.params = {a.arg for a in node.args.args}
        self.parent: dict[ast.AST, ast.AST] = {}
        for n in ast.walk(node):
            for child in ast.iter_child_nodes(n):
                self.parent[child] = n

    def ancestors(self, node: ast.AST) -> list[ast.AST]:
        found = []
        while node in self.parent:
            node = self.parent[node]
            found.append(node)
        return found

    @cached_property
    def bindings(self) -> dict[str, list[ast.AST]]:
        """Every node binding each name (assignments, loop targets, captures...)."""
        found: dict[str, list[ast.AST]] = {}
        for n in ast.walk(self.node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                found.setdefault(n.id, []).append(n)
            elif isinstance(n, ast.MatchAs | ast.MatchStar) and n.name is not None:
                found.setdefault(n.name, []).append(n)
        return found

    def fresh_binding(self, target: ast.AST) -> bool:
        """Whether the binding ``target`` is ``N = <fresh value>``."""
        parent = self.parent.get(target)
        match parent:
            case ast.Assign(targets=[t], value=value) if t is target:
                return fresh(value)
            case ast.AnnAssign(target=t, value=value) if t is target and value is not None:
                return fresh(value)
            case ast.AugAssign(target=t) if t is target:
                return True  # N += ys changes N in place: a mutation, checked as one
        return False

    def problem(self, name: str, site: ast.stmt, schema: Schema | None = None) -> str | None:
        """Why changing ``name`` in place at ``site`` may be seen through another reference
        (None when it cannot)."""
        if name in self.params:
            return f"{name} is a parameter, whose value may be shared with the caller"
        for binding in self.bindings.get(name, []):
            if not self.fresh_binding(binding) and not self._harmless(
                binding, site, name, returned=False
            ):
                line = getattr(binding, "lineno", 0)
                parent = self.parent.get(binding)
                if isinstance(parent, ast.Assign | ast.AnnAssign) and parent.value is not None:
                    shown = ast.unparse(parent.value)
                    return (
                        f"{name} = {shown} on line {line} may share the value of {shown} "
                        f"(copy it: {name} = {_copy_of(shown, schema)})"
                    )
                return f"{name} is bound on line {line} to a value that may be shared"
        if self._rebound_in_comprehension(name):
            return f"{name} is also a comprehension variable"
        for loop in self.ancestors(site):
            if (
                isinstance(loop, ast.For)
                and _iterates(loop.iter, name)
                and not _own_key(site, loop, name)
            ):
                return (
                    f"the loop on line {loop.lineno} iterates over {name}, which must not "
                    "change while it runs (loop over a copy: list(...) or dict(...))"
                )
        for use in self._escapes(name):
            if self._harmless(use, site, name):
                continue
            shown = ast.unparse(self._context(use))
            return (
                f"{name}'s value is stored on line {use.lineno} ({shown}) and would change "
                f"with it ({name} is not assigned a fresh value on every path from there to here)"
            )
        return None

    def _rebound_in_comprehension(self, name: str) -> bool:
        return any(
            isinstance(n, ast.comprehension)
            and any(isinstance(t, ast.Name) and t.id == name for t in ast.walk(n.target))
            for n in ast.walk(self.node)
        )

    def _context(self, use: ast.AST) -> ast.AST:
        """What to show of where ``use`` keeps the value: its whole expression, or the whole
        assignment when it is the value assigned (``snapshot = items``, not ``items``)."""
        node = use
        while node in self.parent and not isinstance(self.parent[node], ast.stmt):
            node = self.parent[node]
        stmt = self.parent.get(node)
        if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is node:
            return stmt
        return node

    def _escapes(self, name: str) -> list[ast.Name]:
        uses: list[ast.Name] = []
        for n in ast.walk(self.node):
            if (
                isinstance(n, ast.Name)
                and n.id == name
                and isinstance(n.ctx, ast.Load)
                and not self._reading(n)
            ):
                uses.append(n)
        return uses

    def _reading(self, use: ast.Name) -> bool:
        """Whether this load of a name only reads the value (no other reference to it stays)."""
        parent = self.parent.get(use)
        match parent:
            case ast.Attribute(value=v) if v is use:
                call = self.parent.get(parent)
                return isinstance(call, ast.Call) and call.func is parent
            case ast.Subscript(value=v) if v is use:
                return True
            case ast.Compare() | ast.BinOp() | ast.FormattedValue():
                return True
            case ast.Call(func=ast.Name(id=f), args=args) if f in _READING_CALLS:
                return any(a is use for a in args)
            case ast.Call(func=func):
                return self._returns_no_collection(func)
            case ast.For(iter=i) | ast.comprehension(iter=i) if i is use:
                return True
            case ast.Dict(keys=keys, values=values):
                return any(k is None and v is use for k, v in zip(keys, values, strict=True))
            case ast.Starred():
                return isinstance(self.parent.get(parent), ast.List)
            case ast.Expr() | ast.UnaryOp(op=ast.Not()):
                return True
        return self._tested(use)

    def _tested(self, node: ast.AST) -> bool:
        """Whether ``node`` is a condition (``if xs:``), only tested for emptiness."""
        parent = self.parent.get(node)
        match parent:
            case ast.If(test=t) | ast.IfExp(test=t) | ast.While(test=t) if t is node:
                return True
            case ast.comprehension(ifs=ifs):
                return any(i is node for i in ifs)
            case ast.match_case(guard=g) if g is node:
                return True
            case ast.BoolOp():
                return self._tested(parent)
        return False

    def _returns_no_collection(self, func: ast.expr) -> bool:
        """Whether ``func`` is a DSL function whose result holds no list or dict: it cannot
        hand back (or keep) the value it is given, since it cannot change its parameters."""
        if self.function is None:
            return False
        from hotswap.dsl.expressions import static  # noqa: PLC0415 - expressions is above us
        from hotswap.dsl.functions import DslFunction, dsl_function  # noqa: PLC0415
        from hotswap.dsl.source import function_source  # noqa: PLC0415

        fn = dsl_function(static(self.function, func))
        if fn is None:
            return False
        try:
            returns = DslFunction(fn, function_source(fn)).signature.returns
        except SourceError:
            return False
        return not _holds_collection(returns)

    @cached_property
    def graph(self) -> _Graph:
        """The control flow of the function's statements."""
        return _Graph(self.node.body)

    def _harmless(self, use: ast.AST, site: ast.stmt, name: str, returned: bool = True) -> bool:
        """Whether the escape ``use`` (or a binding of ``name`` to a value that may be shared)
        cannot be followed by the change at ``site`` while ``name`` still holds that value: on
        every path from it to the change (through ``if``/``match`` branches, around loops) a
        fresh assignment of ``name`` runs in between."""
        if returned and any(isinstance(a, ast.Return) for a in self.ancestors(use)):
            return True
        start = self._point(use)
        end = self._point(site)
        if start is None or end is None:
            return False
        if isinstance(start, ast.stmt) and _fresh_assignment(start, name):
            return True  # N = [N, ...]: the old value escapes, N holds a new one
        return not self.graph.reaches(start, end, lambda n: _fresh_assignment(n, name))

    def _point(self, node: ast.AST) -> ast.AST | None:
        """The point of the control flow graph that runs ``node``."""
        for n in [node, *self.ancestors(node)]:
            if n in self.graph.succ:
                return n
        return None


class _Graph:
    """The control flow graph of a function body, one point per simple statement, per ``if``
    test, ``match`` subject and case (pattern and guard), ``for`` iterable and ``for`` target
    (bound on each iteration), with the back edges of loops and the exits of ``break``,
    ``continue``, ``return`` and ``raise``."""

    def __init__(self, body: list[ast.stmt]) -> None:
        self.succ: dict[ast.AST, set[ast.AST]] = {}
        self._block(body, set(), None)

    def reaches(self, start: ast.AST, end: ast.AST, kills: Callable[[ast.stmt], bool]) -> bool:
        """Whether ``end`` can run after ``start`` on a path through no point where ``kills``."""
        seen: set[ast.AST] = set()
        todo = list(self.succ.get(start, ()))
        while todo:
            n = todo.pop()
            if n is end:
                return True
            if n in seen or (isinstance(n, ast.stmt) and kills(n)):
                continue
            seen.add(n)
            todo.extend(self.succ.get(n, ()))
        return False

    def _block(
        self,
        stmts: Sequence[ast.stmt],
        follow: set[ast.AST],
        loop: tuple[ast.AST, set[ast.AST]] | None,
    ) -> set[ast.AST]:
        """Add ``stmts``, followed by ``follow``; the points that run first."""
        entry = set(follow)
        for stmt in reversed(stmts):
            entry = self._stmt(stmt, entry, loop)
        return entry

    def _stmt(
        self,
        stmt: ast.stmt,
        follow: set[ast.AST],
        loop: tuple[ast.AST, set[ast.AST]] | None,
    ) -> set[ast.AST]:
        match stmt:
            case ast.If(body=body, orelse=orelse):
                taken = self._block(body, follow, loop) | self._block(orelse, follow, loop)
                self.succ[stmt] = taken
            case ast.For(target=target, body=body, orelse=orelse):
                after = self._block(orelse, follow, loop)
                self.succ[target] = set()  # first, so that the body's back edges find it
                self.succ[target] = self._block(body, {target}, (target, set(follow))) | after
                self.succ[stmt] = {target}
            case ast.While(body=body, orelse=orelse):
                self.succ[stmt] = set()
                after = self._block(orelse, follow, loop)
                self.succ[stmt] = self._block(body, {stmt}, (stmt, set(follow))) | after
            case ast.Match(cases=cases):
                following: set[ast.AST] = set(follow)  # no case matches
                for case in reversed(cases):
                    self.succ[case] = self._block(case.body, follow, loop) | following
                    following = {case}
                self.succ[stmt] = following
            case ast.Return() | ast.Raise():
                self.succ[stmt] = set()
            case ast.Break():
                self.succ[stmt] = set(loop[1]) if loop is not None else set()
            case ast.Continue():
                self.succ[stmt] = {loop[0]} if loop is not None else set()
            case _:
                # other compound statements (not in the DSL): each of their blocks may run,
                # then what follows
                inner: set[ast.AST] = set(follow)
                for block in _blocks(stmt):
                    inner |= self._block(block, follow, loop)
                for handler in getattr(stmt, "handlers", []):
                    self.succ[handler] = self._block(handler.body, follow, loop)
                    inner.add(handler)
                self.succ[stmt] = inner
        return {stmt}


def _holds_collection(s: Schema) -> bool:
    match s:
        case ListSchema() | DictSchema():
            return True
        case TupleSchema() | RecordSchema():
            return any(_holds_collection(x) for x in components(s))
        case UnionSchema(alternatives):
            return any(_holds_collection(a) for a in alternatives)
    return False


def _blocks(owner: ast.AST) -> list[list[ast.stmt]]:
    blocks = []
    for field in ("body", "orelse", "finalbody"):
        value = getattr(owner, field, None)
        if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
            blocks.append(value)
    return blocks


def _fresh_assignment(stmt: ast.stmt, name: str) -> bool:
    match stmt:
        case ast.Assign(targets=[ast.Name(id=n)], value=value) if n == name:
            return fresh(value)
        case ast.AnnAssign(target=ast.Name(id=n), value=value) if n == name and value:
            return fresh(value)
    return False


def fresh(value: ast.expr) -> bool:
    """Whether ``value`` is syntactically a new object, shared with nothing."""
    match value:
        case ast.List() | ast.Dict() | ast.ListComp() | ast.DictComp() | ast.Constant():
            return True
        case ast.Call(func=ast.Name(id=f)) if f in _FRESH_CALLS:
            return True
        case ast.Call(func=ast.Attribute(attr="copy"), args=[]):
            return True
        case ast.BinOp(op=ast.Add() | ast.BitOr()):
            return True
        case ast.Subscript(slice=ast.Slice()):
            return True
        case ast.IfExp(body=a, orelse=b):
            return fresh(a) and fresh(b)
    return False


def _iterates(node: ast.expr, name: str) -> bool:
    """Whether a loop over ``node`` iterates ``name`` itself (not a copy of it)."""
    match node:
        case ast.Name(id=n):
            return n == name
        case ast.Call(func=ast.Attribute(value=ast.Name(id=n), attr="keys" | "values" | "items")):
            return n == name
        case ast.Call(func=ast.Name(id="enumerate" | "zip" | "reversed"), args=args):
            return any(_iterates(a, name) for a in args)
    return False


def _own_key(site: ast.stmt, loop: ast.For, name: str) -> bool:
    """``d[k] = v`` in ``for k in d`` (or ``for k, v in d.items()``): an existing key."""
    match site:
        case ast.Assign(targets=[ast.Subscript(slice=ast.Name(id=key))]):
            pass
        case _:
            return False
    match loop.target, loop.iter:
        case ast.Name(id=k), (ast.Name() | ast.Call(func=ast.Attribute(attr="keys"))):
            return k == key
        case ast.Tuple(elts=[ast.Name(id=k), _]), ast.Call(func=ast.Attribute(attr="items")):
            return k == key
    return False


def _copy_of(shown: str, schema: Schema | None) -> str:
    if isinstance(schema, ListSchema):
        return f"list({shown})"
    if isinstance(schema, DictSchema):
        return f"dict({shown})"
    return f"list({shown}) or dict({shown})"


# --- compiling the changes ------------------------------------------------------------------


def in_place(c: FunctionCompiler, stmt: ast.AugAssign, env: Env) -> bool:
    """Whether ``N += e`` / ``N |= e`` changes a list or dict in place (Python's ``+=``)."""
    target = stmt.target
    assert isinstance(target, ast.Name)
    ref = env.vars.get(target.id)
    if ref is None:
        return False
    return isinstance(ref.schema, ListSchema | DictSchema) and isinstance(
        stmt.op, ast.Add | ast.BitOr
    )


def statement(
    c: FunctionCompiler,
    stmt: ast.stmt,
    rest: Sequence[ast.stmt],
    env: Env,
    k: Continuation,
) -> Term:
    """A change in place of a list or dict held by a local name, as a new value bound to it."""
    name = flow.mutated(stmt)
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        name = stmt.target.id
    if name is None:
        raise c.error(stmt, shared_message(c, stmt, env))
    ref = env.vars.get(name)
    base = _base(stmt)
    if ref is None:
        place(c, ast.copy_location(ast.Name(name, ast.Load()), base), env)  # the right error
        raise c.error(base, f"{name} is not a local list or dict")
    if not isinstance(ref.schema, ListSchema | DictSchema):
        raise c.error(base, f"{name} is {describe(ref.schema)}, which cannot change in place")
    problem = c.function.aliasing.problem(name, stmt, ref.schema)
    if problem is not None:
        shown = ast.unparse(stmt).splitlines()[0]
        msg = f"{shown} changes {name} in place, but {problem}: {hint(stmt, ref.schema)}"
        raise c.error(stmt, msg)
    if c.tentative.get(name) == ref.schema:
        needed = _needed(c, stmt, ref.schema, env)
        if needed is not None:
            inference.learned(c, name, ref.schema, needed)
    term = _new_value(c, stmt, ref, env)
    inner, new = env.push(ref.schema)
    declared = env.declared.get(name)
    if declared is not None and declared != ref.schema:
        widen = coercion(ref.schema, declared)
        if widen is None:
            raise c.error(stmt, f"{name} is declared {describe(declared)}")
        inner, new = env.push(declared)
        term = seq(term, widen)
    return seq(Fanout(ID, term), c.block(rest, inner.bind(name, new), k, stmt))


def _needed(c: FunctionCompiler, stmt: ast.stmt, schema: Schema, env: Env) -> Schema | None:
    """The schema a tentative ``[]`` or ``{}`` needs for this change to type (None: unknown)."""

    def of(node: ast.expr) -> Schema | None:
        try:
            return c.synth(node, env, None).schema
        except SourceError:
            return None

    match stmt:
        case ast.Expr(value=ast.Call(func=ast.Attribute(attr="append"), args=[item])):
            found = of(item)
            return None if found is None else ListSchema(found)
        case ast.Expr(value=ast.Call(func=ast.Attribute(attr="insert"), args=[_, item])):
            found = of(item)
            return None if found is None else ListSchema(found)
        case ast.Expr(value=ast.Call(func=ast.Attribute(attr="extend" | "update"), args=[other])):
            return of(other)
        case ast.AugAssign(target=ast.Name(), value=other):
            return of(other)
        case ast.Assign(targets=[ast.Subscript(slice=key)], value=value) if isinstance(
            schema, DictSchema
        ):
            k, v = of(key), of(value)
            if k is None or v is None:
                return None
            try:
                return dict_schema(k, v)
            except SchemaProblem:
                return None
    return None


def _base(stmt: ast.stmt) -> ast.expr:
    match stmt:
        case (
            ast.Assign(targets=[ast.Subscript(value=v)])
            | ast.Delete(targets=[ast.Subscript(value=v)])
        ):
            return v
        case ast.AugAssign(target=ast.Subscript(value=v)):
            return v
        case ast.AugAssign(target=t):
            return t
        case ast.Expr(value=ast.Call(func=ast.Attribute(value=v))):
            return v
    raise AssertionError(stmt)


def _new_value(c: FunctionCompiler, stmt: ast.stmt, ref: Ref, env: Env) -> Term:
    """The term computing the name's new value, in Python's order of evaluation."""
    from hotswap.dsl import loops  # noqa: PLC0415 - loops builds on data, which we use too

    schema = ref.schema
    current = env.read(ref)
    match stmt:
        case ast.Assign(targets=[ast.Subscript(slice=key)], value=value):
            return _store(c, schema, current, key, value, env, stmt)
        case ast.AugAssign(target=ast.Subscript(value=base, slice=key) as target, op=op):
            load = ast.copy_location(ast.Subscript(base, key, ast.Load()), target)
            combined = ast.copy_location(ast.BinOp(load, op, stmt.value), stmt)
            return _store(c, schema, current, key, combined, env, stmt, value_first=False)
        case ast.Delete(targets=[ast.Subscript(slice=key)]):
            return _delete(c, schema, current, key, env)
        case ast.AugAssign(op=op, value=value):
            if isinstance(schema, ListSchema) and isinstance(op, ast.Add):
                extra = loops.to_list(c, value, env, schema)
                if extra.schema != schema:
                    raise c.error(value, f"+= adds {describe(extra.schema)} to {describe(schema)}")
                return prim(Op.LIST_CONCAT, current, extra.term)
            if isinstance(schema, DictSchema) and isinstance(op, ast.BitOr):
                other = c.expr(value, env, schema, "the right operand of |=")
                return prim(Op.MAP_MERGE, current, other.term)
        case ast.Expr(value=ast.Call(func=ast.Attribute(attr=method), args=args, keywords=kws)):
            return _method(c, stmt, schema, current, method, args, kws, env)
    raise c.error(stmt, f"{ast.unparse(stmt)} is not supported on {describe(schema)}")


def _store(
    c: FunctionCompiler,
    schema: Schema,
    current: Term,
    key: ast.expr,
    value: ast.expr,
    env: Env,
    stmt: ast.stmt,
    value_first: bool = True,
) -> Term:
    """``N[k] = v``: Python evaluates ``v``, then ``k``; ``N[k] += e`` reads ``N[k]`` first."""
    if isinstance(key, ast.Slice):
        raise c.error(key, "assigning to a slice is not supported: build the new list")
    if isinstance(schema, DictSchema):
        k = c.expr(key, env, schema.key, "a dict key").term
        v = c.expr(value, env, schema.value, "the value stored").term
        op = Op.MAP_INSERT
    else:
        assert isinstance(schema, ListSchema)
        k = c.expr(key, env, INT_SCHEMA, "a list index").term
        v = c.expr(value, env, schema.item, "the item stored").term
        op = Op.LIST_SET
    if value_first and may_trap(k) and may_trap(v):
        # <v, <N, k>> then rearranged: v runs first, as in Python
        return seq(
            Fanout(v, Fanout(current, k)),
            Fanout(seq(SND, FST), Fanout(seq(SND, SND), FST)),
            Prim(op),
        )
    return seq(Fanout(current, Fanout(k, v)), Prim(op))


def _delete(c: FunctionCompiler, schema: Schema, current: Term, key: ast.expr, env: Env) -> Term:
    """``del N[k]``: a missing key (an index out of range) traps, as Python raises."""
    if isinstance(key, ast.Slice):
        raise c.error(key, "deleting a slice is not supported: build the new list")
    if isinstance(schema, DictSchema):
        k = c.expr(key, env, schema.key, "a dict key").term
        check = Fanout(ID, Prim(Op.MAP_INDEX))
        return seq(Fanout(current, k), check, FST, Prim(Op.MAP_DELETE))
    i = c.expr(key, env, INT_SCHEMA, "a list index").term
    return seq(Fanout(current, i), remove_at())


def remove_at() -> Term:
    """``List A x Int -> List A``: ``xs`` without ``xs[i]`` (traps index_error as ``del``)."""
    checked = seq(Fanout(ID, Prim(Op.LIST_INDEX)), FST)
    xs, i = FST, SND
    length = prim(Op.LIST_LEN, xs)
    negative = prim(Op.LT, i, Lit(0))
    at = if_then_else(negative, prim(Op.ADD, length, i), i)
    # (xs, j) with j the index from the start: xs[:j] + xs[j + 1:]
    before = prim(Op.LIST_SLICE, FST, Lit(0), SND)
    after = prim(Op.LIST_SLICE, FST, prim(Op.ADD, SND, Lit(1)), Lit(INT_MAX))
    return seq(checked, Fanout(xs, at), prim(Op.LIST_CONCAT, before, after))


def _method(
    c: FunctionCompiler,
    stmt: ast.stmt,
    schema: Schema,
    current: Term,
    method: str,
    args: list[ast.expr],
    keywords: list[ast.keyword],
    env: Env,
) -> Term:
    from hotswap.dsl import loops  # noqa: PLC0415 - loops builds on data, which we use too

    shown = f"{method}()"
    if any(isinstance(a, ast.Starred) for a in args) or (keywords and method != "sort"):
        raise c.error(stmt, f"{shown} takes positional arguments only here")

    def arity(*counts: int) -> None:
        if len(args) not in counts:
            raise c.error(stmt, f"{shown} takes {' or '.join(map(str, counts))} arguments")

    if isinstance(schema, ListSchema):
        match method:
            case "append":
                arity(1)
                x = c.expr(args[0], env, schema.item, "the item appended").term
                return prim(Op.LIST_APPEND, current, x)
            case "extend":
                arity(1)
                extra = loops.to_list(c, args[0], env, schema)
                if extra.schema != schema:
                    raise c.error(
                        args[0], f"extend() adds {describe(extra.schema)} to {describe(schema)}"
                    )
                return prim(Op.LIST_CONCAT, current, extra.term)
            case "insert":
                arity(2)
                i = c.expr(args[0], env, INT_SCHEMA, "the index of insert()").term
                x = c.expr(args[1], env, schema.item, "the item inserted").term
                # <N, <i, x>> ; N[:i] + [x] + N[i:]
                n, at, item = FST, seq(SND, FST), seq(SND, SND)
                head = prim(Op.LIST_APPEND, prim(Op.LIST_SLICE, n, Lit(0), at), item)
                tail = prim(Op.LIST_SLICE, n, at, Lit(INT_MAX))
                return seq(Fanout(current, Fanout(i, x)), prim(Op.LIST_CONCAT, head, tail))
            case "pop":
                arity(0, 1)
                i = Lit(-1) if not args else c.expr(args[0], env, INT_SCHEMA, "the index").term
                return seq(Fanout(current, i), remove_at())
            case "sort":
                if args:
                    raise c.error(stmt, "sort() takes only reverse= here")
                if not isinstance(schema.item, IntSchema | StrSchema):
                    raise c.error(stmt, f"sort() sorts lists of int or str, not {describe(schema)}")
                reverse = False
                for kw in keywords:
                    if kw.arg != "reverse" or not (
                        isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, bool)
                    ):
                        raise c.error(kw, "sort() takes only reverse=True or reverse=False")
                    reverse = kw.value.value
                term = prim(Op.LIST_SORT, current)
                return seq(term, loops.reverse_list(schema)) if reverse else term
            case "reverse":
                arity(0)
                return seq(current, loops.reverse_list(schema))
            case "clear":
                arity(0)
                return Empty(core_type(schema))
    if isinstance(schema, DictSchema):
        match method:
            case "update":
                arity(1)
                other = c.expr(args[0], env, schema, "the argument of update()").term
                return prim(Op.MAP_MERGE, current, other)
            case "pop":
                arity(1, 2)
                k = c.expr(args[0], env, schema.key, "the key of pop()").term
                if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is None:
                    # d.pop(k, None) as a statement: delete k if it is there (Python's idiom;
                    # the None it may return is dropped, so its type does not matter)
                    return seq(Fanout(current, k), Prim(Op.MAP_DELETE))
                if len(args) == 2:
                    default = c.expr(args[1], env, schema.value, "the default of pop()").term
                    return seq(Fanout(Fanout(current, k), default), FST, Prim(Op.MAP_DELETE))
                check = Fanout(ID, Prim(Op.MAP_INDEX))
                return seq(Fanout(current, k), check, FST, Prim(Op.MAP_DELETE))
            case "clear":
                arity(0)
                return Empty(core_type(schema))
    raise c.error(stmt, _unsupported_method(stmt, schema, method, args))


def _unsupported_method(stmt: ast.stmt, schema: Schema, method: str, args: list[ast.expr]) -> str:
    """The error for a change by a method the DSL does not have, with a form that it has."""
    base = ast.unparse(_base(stmt))
    shown = f"{describe(schema)}.{method}() is not supported"
    if method == "remove" and isinstance(schema, ListSchema) and len(args) == 1:
        x = ast.unparse(args[0])
        return (
            f"{shown}: to drop every item equal to {x}, write {base} = [y for y in {base} "
            f"if y != {x}]; to drop only the first, as remove() does, write i = [j for j, y in "
            f"enumerate({base}) if y == {x}][0], then del {base}[i] (which fails with an "
            "index_error where remove() raises ValueError)"
        )
    if method == "popitem" and isinstance(schema, DictSchema) and not args:
        return f"{shown}: write k, v = list({base}.items())[-1], then del {base}[k]"
    return shown


def _setdefault(base: ast.expr) -> tuple[str, str] | None:
    """``d.setdefault(k, v)`` as the base of a change: ``d[k]`` and ``d.get(k, v)``."""
    match base:
        case ast.Call(func=ast.Attribute(value=owner, attr="setdefault"), args=[key, default]):
            o, k = ast.unparse(owner), ast.unparse(key)
            return f"{o}[{k}]", f"{o}.get({k}, {ast.unparse(default)})"
    return None


# --- the immutable forms --------------------------------------------------------------------


def hint(stmt: ast.stmt, schema: Schema | None) -> str:
    """The immutable form of a change in place: ``write items = state.items | {k: v}``."""
    base = _base(stmt)
    shown = ast.unparse(base)
    name = _short_name(base)
    if isinstance(base, ast.Subscript) and not isinstance(base.slice, ast.Slice):
        name = shown  # d[k].append(x): d[k] = d[k] + [x]
    default = _setdefault(base)
    if default is not None:  # d.setdefault(k, []).append(x): d[k] = d.get(k, []) + [x]
        name, shown = default
    is_list = isinstance(schema, ListSchema)
    match stmt:
        case ast.Assign(targets=[ast.Subscript(slice=key)], value=value):
            k, v = ast.unparse(key), ast.unparse(value)
            if is_list:
                form = f"{name} = {shown}[:{k}] + [{v}] + {shown}[{k} + 1:]"
            else:
                form = f"{name} = {shown} | {{{k}: {v}}}"
        case ast.AugAssign(target=ast.Subscript(slice=key), op=op, value=value):
            k, v = ast.unparse(key), ast.unparse(value)
            symbol = _OPS.get(type(op), "+")
            form = f"{name} = {shown} | {{{k}: {shown}[{k}] {symbol} {v}}}"
        case ast.Delete(targets=[ast.Subscript(slice=key)]):
            k = ast.unparse(key)
            form = f"{name} = {{key: v for key, v in {shown}.items() if key != {k}}}"
        case ast.AugAssign(op=op, value=value):
            form = f"{name} = {shown} {_OPS.get(type(op), '+')} {ast.unparse(value)}"
        case ast.Expr(value=ast.Call(func=ast.Attribute(attr=method), args=args)):
            a = [ast.unparse(x) for x in args]
            forms = {
                "append": f"{name} = {shown} + [{', '.join(a)}]",
                "extend": f"{name} = {shown} + {', '.join(a)}",
                "update": f"{name} = {shown} | {', '.join(a)}",
                "sort": f"{name} = sorted({shown})",
                "insert": f"{name} = {shown}[:{a[0]}] + [{a[-1]}] + {shown}[{a[0]}:]"
                if len(a) == 2
                else f"{name} = ...",
                "clear": f"{name} = {'[]' if is_list else '{}'}",
            }
            form = forms.get(method, f"copy it first, {name} = {_copy_of(shown, schema)}")
        case _:
            form = f"{name} = ..."
    if isinstance(base, ast.Attribute):
        owner = ast.unparse(base.value)
        return (
            f"write {form}, and build the new {owner} with it "
            f"(dataclasses.replace({owner}, {base.attr}={name}))"
        )
    return f"write {form}" if not form.startswith("copy") else form


_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%", ast.BitOr: "|"}


def _short_name(base: ast.expr) -> str:
    match base:
        case ast.Name(id=n):
            return n
        case ast.Attribute(attr=a):
            return a
    return "new"


def shared_message(c: FunctionCompiler, stmt: ast.stmt, env: Env) -> str:
    """The error for a change in place of something that is not a local name (a field, an
    item): it may be shared."""
    base = _base(stmt)
    shown = ast.unparse(base)
    schema: Schema | None = None
    try:
        schema = c.synth(base, env, None).schema
    except SourceError:  # the message is only a hint; the change is refused anyway
        schema = None
    if isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute):
        if base.func.attr == "setdefault":
            return f"setdefault() is not supported: {hint(stmt, schema)}"
        return f"{shown} is not a local list or dict, which alone can change in place"
    return (
        f"{shown} may be shared (values here are immutable, and {shown} is part of another "
        f"value): {hint(stmt, schema)}"
    )
