"""Flow analysis of a function's syntax: which statements may return, which names a block
assigns (on some path or on every path), which it reads.

Pure functions of the syntax tree; the statement compiler uses them to decide how an ``if`` or
``match`` continues (a join point, or the rest copied into the branches) and which variables a
join point carries.
"""

from __future__ import annotations

import ast
from collections.abc import Container, Sequence


def returns(stmt: ast.stmt) -> bool:
    """Whether ``stmt`` contains a return anywhere."""
    return any(isinstance(n, ast.Return) for n in ast.walk(stmt))


def always_returns(stmts: list[ast.stmt]) -> bool:
    """Whether every path through ``stmts`` ends in a return (a match is exhaustive, or it is
    rejected)."""
    for stmt in stmts:
        match stmt:
            case ast.Return():
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


def assigned(stmts: list[ast.stmt]) -> list[str]:
    """Names assigned anywhere in ``stmts`` (not pattern captures), in order of appearance."""
    names: list[str] = []
    for stmt in stmts:
        for node in ast.walk(stmt):
            match node:
                case ast.Name(id=name, ctx=ast.Store()) if name not in names:
                    names.append(name)
    return names


def definitely_assigned(stmts: list[ast.stmt]) -> set[str]:
    """Names assigned on every path through ``stmts``."""
    names: set[str] = set()
    for stmt in stmts:
        match stmt:
            case ast.Assign() | ast.AugAssign() | ast.AnnAssign(value=ast.expr()):
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
