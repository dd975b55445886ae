"""Types of the core language: Unit, Int, products and sums.

``Bool`` is ``Unit + Unit`` with false the left injection.

Types are hash-consed: constructing a type equal to a live one returns that very object, so
structural equality is identity and costs O(1), whatever the type's size. This matters because
types arriving in modules are DAGs: ``t1 = t0 x t0, t2 = t1 x t1, ...`` is tiny as a DAG but
exponential as a tree, and a naive recursive ``==``, ``hash`` or ``str`` on it would never end.
Every type records its ``depth`` and tree ``size`` (saturating) so that the verifier can cap both
before anything walks a value of that type, and a Merkle ``identity``: SHA-256 of ``00`` (Unit),
``01`` (Int), or a tag byte (``02`` product, ``03`` sum) followed by the digests of the two
components (docs/bytecode.md, "Type identity"), stable across processes and languages.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from typing import Any, ClassVar, Self

#: Sizes saturate here; anything this large is rejected by the verifier long before.
SIZE_CAP = 1 << 40

_lock = threading.Lock()


class _TypeBase:
    __slots__ = ("__weakref__", "depth", "digest", "size")
    depth: int
    size: int
    digest: bytes

    def __setattr__(self, name: str, value: object) -> None:
        msg = f"types are immutable: cannot set {name}"
        raise AttributeError(msg)

    def _init(self, depth: int, size: int, digest: bytes) -> None:
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "size", min(size, SIZE_CAP))
        object.__setattr__(self, "digest", digest)

    @property
    def identity(self) -> str:
        """Hex SHA-256 Merkle identity of the type."""
        return self.digest.hex()

    def __str__(self) -> str:
        return render_type(self)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return render_type(self)  # type: ignore[arg-type]


class UnitT(_TypeBase):
    """The type with one value, ``()``."""

    __slots__ = ()
    _instance: ClassVar[UnitT | None] = None

    def __new__(cls) -> UnitT:
        if cls._instance is None:
            t = object.__new__(cls)
            t._init(0, 1, hashlib.sha256(b"\x00").digest())
            cls._instance = t
        return cls._instance

    def __reduce__(self) -> tuple[Any, ...]:
        return (UnitT, ())


class IntT(_TypeBase):
    """Signed 64-bit integers; any result outside the range traps."""

    __slots__ = ()
    _instance: ClassVar[IntT | None] = None

    def __new__(cls) -> IntT:
        if cls._instance is None:
            t = object.__new__(cls)
            t._init(0, 1, hashlib.sha256(b"\x01").digest())
            cls._instance = t
        return cls._instance

    def __reduce__(self) -> tuple[Any, ...]:
        return (IntT, ())


class _Binary(_TypeBase):
    __slots__ = ("left", "right")
    __match_args__ = ("left", "right")
    left: Type
    right: Type
    _tag: ClassVar[bytes]
    _table: ClassVar[weakref.WeakValueDictionary[tuple[int, int], Any]]

    def __new__(cls, left: Type, right: Type) -> Self:
        if not (isinstance(left, _TypeBase) and isinstance(right, _TypeBase)):
            msg = f"components of a type must be types, got {left!r} and {right!r}"
            raise TypeError(msg)
        key = (id(left), id(right))  # children are interned, so ids identify them
        with _lock:
            t: Self | None = cls._table.get(key)
            if t is None:
                t = object.__new__(cls)
                object.__setattr__(t, "left", left)
                object.__setattr__(t, "right", right)
                t._init(
                    1 + max(left.depth, right.depth),
                    1 + left.size + right.size,
                    hashlib.sha256(cls._tag + left.digest + right.digest).digest(),
                )
                cls._table[key] = t
        return t

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.left, self.right))


class Prod(_Binary):
    """``A x B``: pairs, represented as Python 2-tuples ``(a, b)``."""

    __slots__ = ()
    _tag = b"\x02"
    _table: ClassVar[weakref.WeakValueDictionary[tuple[int, int], Any]] = (
        weakref.WeakValueDictionary()
    )


class Sum(_Binary):
    """``A + B``: tagged values, represented as ``(0, a)`` (left) or ``(1, b)`` (right)."""

    __slots__ = ()
    _tag = b"\x03"
    _table: ClassVar[weakref.WeakValueDictionary[tuple[int, int], Any]] = (
        weakref.WeakValueDictionary()
    )


Type = UnitT | IntT | Prod | Sum

UNIT: Type = UnitT()
INT: Type = IntT()
BOOL: Type = Sum(UNIT, UNIT)

#: Longest rendering of a type in messages; larger types are elided.
RENDER_LIMIT = 160


def render_type(t: Type, limit: int = RENDER_LIMIT) -> str:
    """``Unit``, ``Int``, ``Bool``, ``(A x B)``, ``(A + B)``, elided with ``...`` past ``limit``."""
    out: list[str] = []
    length = 0
    stack: list[Type | str] = [t]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            piece = item
        elif item is BOOL:
            piece = "Bool"
        elif isinstance(item, UnitT):
            piece = "Unit"
        elif isinstance(item, IntT):
            piece = "Int"
        else:
            op = " x " if isinstance(item, Prod) else " + "
            stack.extend((")", item.right, op, item.left))
            piece = "("
        out.append(piece)
        length += len(piece)
        if length > limit:
            out.append("...")
            break
    return "".join(out)


def type_depth(t: Type) -> int:
    """Height of the type tree: 0 for Unit and Int."""
    return t.depth


def type_identity(t: Type) -> str:
    """Hex SHA-256 Merkle identity: ``H(0)`` Unit, ``H(1)`` Int, ``H(tag || H(a) || H(b))``."""
    return t.identity
