"""Continuations of a block: what falling off its end means, and where its exits go.

``Return``: the function's implicit ``return None``. ``LoopBody``: the body of a ``for`` loop,
compiled to the body of a ``fold``; falling off its end (or ``continue``) goes on with the
loop-carried variables. A join point: hand the variables an ``if``/``match`` assigned, as a
tuple, to the code after it. While the branches are compiled, a :class:`JoinPoint` collects what
reaches it; once they are, :meth:`JoinPoint.close` gives the :class:`Join`, the value the code
after the ``if``/``match`` is compiled from.

``Return`` and ``LoopBody`` are *terminal*: a block compiled under one of them computes the
final value of the function or of one iteration, whose type is the terminal's *exit type*
(:func:`exit_type`). An exit (``return``, ``raise``, ``continue``, ``break``) inside a join
point that takes exits computes a value of that type, injected with a placeholder
(:meth:`JoinPoint.mark`) into the join's sum ``exit + vars``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotswap.errors import InternalError
from hotswap.lang.terms import Compose, Inl, Inr, Term
from hotswap.lang.types import UNIT, Sum, Type
from hotswap.names.schema import Schema, core_type


@dataclass(frozen=True, slots=True)
class Return:
    """Falling off the end returns None, which must fit ``schema``."""

    schema: Schema


@dataclass(frozen=True, slots=True, eq=False)
class LoopBody:
    """The body of a ``for`` loop, a fold's body ``E x (A x S) -> S + R``.

    ``names`` are the loop-carried variables (``schemas`` their types), whose tuple is ``S``.
    Without a ``return`` in the loop ``R`` is ``S`` (``break`` stops with the variables);
    with one, ``returns`` is the function's return schema and ``R`` is ``Ret + S``: a return
    stops with ``inl`` of the value, a ``break`` with ``inr`` of the variables.
    """

    names: tuple[str, ...]
    schemas: tuple[Schema, ...]
    state: Type
    returns: Schema | None
    #: The ``for`` statement, for :class:`hotswap.dsl.inference.Widen`.
    node: object = None

    @property
    def stop(self) -> Type:
        """``R``, what an early stop carries."""
        if self.returns is None:
            return self.state
        return Sum(core_type(self.returns), self.state)

    @property
    def exit(self) -> Type:
        """The body's codomain ``S + R``."""
        return Sum(self.state, self.stop)

    def go_on(self) -> Term:
        """``S -> S + R``: the next iteration (falling off the end, ``continue``)."""
        return Inl(self.stop)

    def stop_with_state(self) -> Term:
        """``S -> S + R``: ``break``."""
        if self.returns is None:
            return Inr(self.state)
        return Compose(Inr(core_type(self.returns)), Inr(self.state))

    def stop_with_return(self) -> Term:
        """``Ret -> S + R``: ``return``."""
        if self.returns is None:
            raise InternalError("return in a loop compiled without returns")
        return Compose(Inl(self.state), Inr(self.state))


Terminal = Return | LoopBody


def exit_type(k: Terminal) -> Type:
    """The type of what a block compiled under the terminal ``k`` computes."""
    if isinstance(k, Return):
        return core_type(k.schema)
    return k.exit


class JoinPoint:
    """Falling off the end yields the tuple of ``names``: the continuation of the branches of an
    ``if`` or ``match`` while they are compiled, which records every branch end reaching it.

    With ``terminal`` (the enclosing function or loop body) the join also takes exits: the
    branches then yield a sum ``exit + vars`` (``result`` is the terminal's exit type), an exit
    giving its value ``; inl[vars]`` and falling off ``vars ; inr[result]``. The type ``vars``
    is known only once every end is compiled, so each ``inl`` is first a placeholder
    (:meth:`mark`), substituted afterwards."""

    __slots__ = ("_arrivals", "_marks", "names", "result", "terminal")

    def __init__(self, names: tuple[str, ...], terminal: Terminal | None = None) -> None:
        self.names = names
        self.terminal = terminal
        self.result: Type | None = None if terminal is None else exit_type(terminal)
        self._arrivals: list[tuple[Schema, ...]] = []
        self._marks: list[Term] = []

    def arrive(self, schemas: tuple[Schema, ...]) -> None:
        """A branch falls off its end here, with the ``names`` at these schemas."""
        self._arrivals.append(schemas)

    def mark(self) -> Term:
        """A placeholder for ``inl[vars]``, the injection of an exit's value."""
        if self.result is None:
            raise InternalError("an exit inside a join point that takes none")
        placeholder = Inl(UNIT)
        self._marks.append(placeholder)
        return placeholder

    @property
    def reached(self) -> bool:
        """Whether some branch falls off its end here."""
        return bool(self._arrivals)

    def close(self) -> Join:
        """What reached the join point, once every branch is compiled."""
        return Join(self.names, tuple(self._arrivals), self.result, tuple(self._marks))


@dataclass(frozen=True, slots=True)
class Join:
    """A join point after its branches: ``arrivals`` holds, for each branch end that reaches
    it, the schemas of ``names`` there (they must agree); ``marks`` the placeholders of the
    exits (with ``result``, see :class:`JoinPoint`)."""

    names: tuple[str, ...]
    arrivals: tuple[tuple[Schema, ...], ...]
    result: Type | None
    marks: tuple[Term, ...]


Continuation = Return | LoopBody | JoinPoint


def terminal_of(k: Continuation) -> Terminal:
    """The function or loop body whose value a block under ``k`` contributes to."""
    if isinstance(k, JoinPoint):
        if k.terminal is None:
            raise InternalError("an exit inside a join point that takes none")
        return k.terminal
    return k


def carried_names(k: Continuation) -> tuple[str, ...]:
    """Names whose values falling off a block under ``k`` hands on (they stay live)."""
    if isinstance(k, Return):
        return ()
    names = k.names
    if isinstance(k, JoinPoint) and isinstance(k.terminal, LoopBody):
        names = (*names, *k.terminal.names)
    return names
