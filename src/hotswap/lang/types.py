"""Types of the core language: Unit, Int, Str, products, sums, lists and maps.

``Bool`` is ``Unit + Unit`` with false the left injection. ``Str`` (text), ``List A`` and
``Map K V`` are the variable-size types of module format 2 (docs/bytecode.md, "Types"); a map's
key type contains no list or map.

Types are hash-consed: constructing a type equal to a live one returns that very object, so
structural equality is identity and costs O(1), whatever the type's size. This matters because
types arriving in modules are DAGs: ``t1 = t0 x t0, t2 = t1 x t1, ...`` is tiny as a DAG but
exponential as a tree, and a naive recursive ``==``, ``hash`` or ``str`` on it would never end.
Every type records its ``depth`` and tree ``size`` (saturating) so that the verifier can cap both
before anything walks a value of that type, and a Merkle ``identity``: SHA-256 of ``00`` (Unit),
``01`` (Int), ``04`` (Str), or a tag byte (``02`` product, ``03`` sum, ``05`` list, ``06`` map)
followed by the digests of the components (docs/bytecode.md, "Type identity"), stable across
processes and languages.
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


class StrT(_TypeBase):
    """Text: a sequence of Unicode code points (stored as UTF-8, no surrogates)."""

    __slots__ = ()
    _instance: ClassVar[StrT | None] = None

    def __new__(cls) -> StrT:
        if cls._instance is None:
            t = object.__new__(cls)
            t._init(0, 1, hashlib.sha256(b"\x04").digest())
            cls._instance = t
        return cls._instance

    def __reduce__(self) -> tuple[Any, ...]:
        return (StrT, ())


class ListT(_TypeBase):
    """``List A``: immutable sequences of values of type ``A``."""

    __slots__ = ("elem",)
    __match_args__ = ("elem",)
    elem: Type
    _table: ClassVar[weakref.WeakValueDictionary[int, ListT]] = weakref.WeakValueDictionary()

    def __new__(cls, elem: Type) -> ListT:
        if not isinstance(elem, _TypeBase):
            msg = f"the element of a list type must be a type, got {elem!r}"
            raise TypeError(msg)
        with _lock:
            t = cls._table.get(id(elem))
            if t is None:
                t = object.__new__(cls)
                object.__setattr__(t, "elem", elem)
                t._init(
                    1 + elem.depth, 1 + elem.size, hashlib.sha256(b"\x05" + elem.digest).digest()
                )
                cls._table[id(elem)] = t
        return t

    def __reduce__(self) -> tuple[Any, ...]:
        return (ListT, (self.elem,))


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


class MapT(_Binary):
    """``Map K V``: immutable maps that remember insertion order, as Python's ``dict`` does.

    ``left`` is the key type, ``right`` the value type; the key type holds no list or map
    (:func:`is_key_type`), which the type checker and the verifier enforce where maps are made.
    """

    __slots__ = ()
    _tag = b"\x06"
    _table: ClassVar[weakref.WeakValueDictionary[tuple[int, int], Any]] = (
        weakref.WeakValueDictionary()
    )

    def __new__(cls, key: Type, value: Type) -> MapT:
        if isinstance(key, _TypeBase) and not is_key_type(key):
            msg = f"a map's key type may not hold a list or a map, got {key}"
            raise TypeError(msg)
        return super().__new__(cls, key, value)

    @property
    def key(self) -> Type:
        return self.left

    @property
    def value(self) -> Type:
        return self.right


Type = UnitT | IntT | StrT | Prod | Sum | ListT | MapT

UNIT: Type = UnitT()
INT: Type = IntT()
STR: Type = StrT()
BOOL: Type = Sum(UNIT, UNIT)


def is_key_type(t: Type) -> bool:
    """Whether ``t`` may key a map: it contains no list and no map (types are DAGs: memoised)."""
    return _key_ok(t, {})


def _key_ok(t: Type, seen: dict[int, bool]) -> bool:
    if isinstance(t, ListT | MapT):
        return False
    if not isinstance(t, Prod | Sum):
        return True
    known = seen.get(id(t))
    if known is None:
        known = seen[id(t)] = _key_ok(t.left, seen) and _key_ok(t.right, seen)
    return known


def is_v1_type(t: Type) -> bool:
    """Whether ``t`` is made of Unit, Int, products and sums only (module format 1)."""
    return _v1_ok(t, {})


def _v1_ok(t: Type, seen: dict[int, bool]) -> bool:
    if isinstance(t, UnitT | IntT):
        return True
    if not isinstance(t, Prod | Sum):  # MapT is neither
        return False
    known = seen.get(id(t))
    if known is None:
        known = seen[id(t)] = _v1_ok(t.left, seen) and _v1_ok(t.right, seen)
    return known


#: Longest rendering of a type in messages; larger types are elided.
RENDER_LIMIT = 160


def render_type(t: Type, limit: int = RENDER_LIMIT) -> str:
    """``Unit``, ``Int``, ``Str``, ``Bool``, ``(A x B)``, ``(A + B)``, ``List A``, ``Map K V``,
    elided with ``...`` past ``limit``."""
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
        elif isinstance(item, StrT):
            piece = "Str"
        elif isinstance(item, ListT):
            stack.extend((")", item.elem))
            piece = "(List "
        elif isinstance(item, MapT):
            stack.extend((")", item.right, " ", item.left))
            piece = "(Map "
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
