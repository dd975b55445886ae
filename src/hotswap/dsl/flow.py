"""Flow analysis of a function's syntax: which statements may return, which names a block
assigns (on some path or on every path), which it reads.

Pure functions of the syntax tree; the statement compiler uses them to decide how an ``if`` or
``match`` continues (a join point, or the rest copied into the branches) and which variables a
join point carries.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Container, Sequence

#: Statements that leave the block they are in: the function, the iteration or the loop.
EXITS = (ast.Return, ast.Raise, ast.Continue, ast.Break)

#: Methods that change a list or dict in place; ``xs.append(x)`` as a statement assigns xs.
MUTATING_METHODS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "pop",
        "remove",
        "reverse",
        "sort",
        "clear",
        "update",
        "setdefault",
        "popitem",
    }
)


def returns(stmt: ast.stmt) -> bool:
    """Whether ``stmt`` contains an exit anywhere (``return``, ``raise``, ``continue``,
    ``break``)."""
    return any(isinstance(n, EXITS) for n in ast.walk(stmt))


def loop_returns(stmt: ast.For) -> bool:
    """Whether the body of a loop holds a ``return`` (its own or a nested loop's)."""
    return any(isinstance(n, ast.Return) for b in stmt.body for n in ast.walk(b))


def always_returns(stmts: list[ast.stmt]) -> bool:
    """Whether every path through ``stmts`` ends in an exit (a match is exhaustive, or it is
    rejected)."""
    for stmt in stmts:
        match stmt:
            case ast.Return() | ast.Raise() | ast.Continue() | ast.Break():
                return True
            case ast.If(body=body, orelse=orelse) if always_returns(body) and always_returns(
                orelse
            ):
                return True
            case ast.Match(cases=cases) if all(always_returns(c.body) for c in cases):
                return True
            case _:
                pass
    return False


def falling_through(branches: list[list[ast.stmt]]) -> int:
    """How many of ``branches`` may fall off their end."""
    return sum(1 for b in branches if not always_returns(b))


def mutated(stmt: ast.stmt) -> str | None:
    """The name a statement changes in place: ``d[k] = v``, ``d[k] += v``, ``del d[k]``,
    ``xs.append(x)`` (and the other mutating methods)."""
    match stmt:
        case ast.Assign(targets=[ast.Subscript(value=ast.Name(id=name))]):
            return name
        case ast.AugAssign(target=ast.Subscript(value=ast.Name(id=name))):
            return name
        case ast.Delete(targets=[ast.Subscript(value=ast.Name(id=name))]):
            return name
        case ast.Expr(value=ast.Call(func=ast.Attribute(value=ast.Name(id=name), attr=attr))):
            return name if attr in MUTATING_METHODS else None
    return None


_SCOPES = (ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp, ast.Lambda)


def walk(node: ast.AST) -> list[ast.AST]:
    """``ast.walk`` that does not enter comprehensions and lambdas (their own scopes)."""
    found: list[ast.AST] = []
    todo = deque([node])  # breadth first, in ast.walk's order
    while todo:
        n = todo.popleft()
        found.append(n)
        todo.extend(c for c in ast.iter_child_nodes(n) if not isinstance(c, _SCOPES))
    return found


def assigned(stmts: list[ast.stmt]) -> list[str]:
    """Names assigned anywhere in ``stmts`` (not pattern captures), in order of appearance; a
    list or dict changed in place counts as assigned."""
    names: list[str] = []
    for stmt in stmts:
        for node in walk(stmt):
            match node:
                case ast.Name(id=name, ctx=ast.Store()) if name not in names:
                    names.append(name)
                case ast.stmt() if (changed := mutated(node)) is not None and changed not in names:
                    names.append(changed)
    return names


def definitely_assigned(stmts: list[ast.stmt]) -> set[str]:
    """Names assigned on every path through ``stmts``."""
    names: set[str] = set()
    for stmt in stmts:
        match stmt:
            case ast.Assign() | ast.AugAssign() | ast.AnnAssign(value=ast.expr()) | ast.Expr():
                names.update(assigned([stmt]))
            case ast.Delete():
                names.update(assigned([stmt]))
            case ast.If(body=body, orelse=orelse):  # a branch that returns does not count
                names |= _intersection(
                    [definitely_assigned(b) for b in (body, orelse) if not always_returns(b)]
                )
            case ast.Match(cases=cases):  # a case that runs has bound all its captures
                names |= _intersection(
                    [
                        set(pattern_captures(c.pattern)) | definitely_assigned(c.body)
                        for c in cases
                        if not always_returns(c.body)
                    ]
                )
            case _:
                pass
    return names


def joined(
    branches: list[list[ast.stmt]], captures: list[list[str]], bound: Container[str]
) -> tuple[str, ...]:
    """The names a join point after ``branches`` carries: those the branches assign (and
    ``captures``, the names each branch's pattern binds) that are bound on every path that falls
    through, each by the branch itself or, when in ``bound``, from before."""
    names: list[str] = []
    for captured, branch in zip(captures, branches, strict=True):
        names.extend(n for n in [*captured, *assigned(branch)] if n not in names)
    definite = _intersection(
        [
            set(captured) | definitely_assigned(branch)
            for captured, branch in zip(captures, branches, strict=True)
            if not always_returns(branch)
        ]
    )
    return tuple(n for n in names if n in bound or n in definite)


def loaded(stmts: Sequence[ast.stmt]) -> set[str]:
    """Names ``stmts`` read (``x += 1`` reads x)."""
    names: set[str] = set()
    for stmt in stmts:
        for node in ast.walk(stmt):
            match node:
                case ast.Name(id=name, ctx=ast.Load()) | ast.AugAssign(target=ast.Name(id=name)):
                    names.add(name)
    return names


def read_before_assigned(stmts: Sequence[ast.stmt]) -> set[str]:
    """Names ``stmts`` may read before assigning them (a compound statement reads all it reads)."""
    live: set[str] = set()
    done: set[str] = set()
    for stmt in stmts:
        live |= loaded([stmt]) - done
        done |= definitely_assigned([stmt])
    return live


def match_captures(stmt: ast.Match) -> list[str]:
    """Names bound by the case patterns of a match."""
    return [name for case in stmt.cases for name in pattern_captures(case.pattern)]


def pattern_captures(pattern: ast.pattern) -> list[str]:
    """Names a pattern binds."""
    return [
        node.name
        for node in ast.walk(pattern)
        if isinstance(node, ast.MatchAs | ast.MatchStar) and node.name is not None
    ]


def _intersection(sets: list[set[str]]) -> set[str]:
    return set.intersection(*sets) if sets else set()
