"""Continuations of a block: what falling off its end means.

``Return``: the function's implicit ``return None``. A join point: hand the variables an
``if``/``match`` assigned, as a tuple, to the code after it. While the branches are compiled, a
:class:`JoinPoint` collects what reaches it; once they are, :meth:`JoinPoint.close` gives the
:class:`Join`, the value the code after the ``if``/``match`` is compiled from.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotswap.errors import InternalError
from hotswap.lang.terms import Inl, Term
from hotswap.lang.types import UNIT
from hotswap.names.schema import Schema


@dataclass(frozen=True, slots=True)
class Return:
    """Falling off the end returns None, which must fit ``schema``."""

    schema: Schema


class JoinPoint:
    """Falling off the end yields the tuple of ``names``: the continuation of the branches of an
    ``if`` or ``match`` while they are compiled, which records every branch end reaching it.

    With ``result`` (the function's return schema) the join also takes returns: the branches
    then yield a sum ``result + vars``, a ``return e`` giving ``e ; inl[vars]`` and falling off
    ``vars ; inr[result]``. The type ``vars`` is known only once every end is compiled, so each
    ``inl`` is first a placeholder (:meth:`mark`), substituted afterwards."""

    __slots__ = ("_arrivals", "_marks", "names", "result")

    def __init__(self, names: tuple[str, ...], result: Schema | None = None) -> None:
        self.names = names
        self.result = result
        self._arrivals: list[tuple[Schema, ...]] = []
        self._marks: list[Term] = []

    def arrive(self, schemas: tuple[Schema, ...]) -> None:
        """A branch falls off its end here, with the ``names`` at these schemas."""
        self._arrivals.append(schemas)

    def mark(self) -> Term:
        """A placeholder for ``inl[vars]``, the injection of a returned value."""
        if self.result is None:
            raise InternalError("return inside a join point")
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
    returns (with ``result``, see :class:`JoinPoint`)."""

    names: tuple[str, ...]
    arrivals: tuple[tuple[Schema, ...], ...]
    result: Schema | None
    marks: tuple[Term, ...]


Continuation = Return | JoinPoint
