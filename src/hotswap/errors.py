"""The error tree: one root, a branch per layer.

Every error hotswap raises on purpose derives from :class:`HotswapError`. Anything else escaping
the library is a bug.
"""

from __future__ import annotations


class HotswapError(Exception):
    """Root of every error hotswap raises on purpose."""


class InternalError(HotswapError):
    """A broken invariant inside hotswap: this is a bug, please report it."""

    def __init__(self, message: str) -> None:
        super().__init__(f"internal error (this is a bug, please report it): {message}")


# --- lang -----------------------------------------------------------------------------------


class LanguageError(HotswapError):
    """A problem with a term of the core language."""


class TermTypeError(LanguageError):
    """A term does not have the type its context requires.

    ``term`` is the offending subterm, ``expected`` and ``actual`` the types (either may be a
    description such as ``"a product"`` when no single type is expected).
    """

    def __init__(self, term: object, expected: object, actual: object, detail: str = "") -> None:
        self.term = term
        self.expected = expected
        self.actual = actual
        msg = f"{detail or 'type mismatch'} in {term}: expected {expected}, got {actual}"
        super().__init__(msg)


class ValueTypeError(LanguageError):
    """A value does not belong to the type it is claimed to have."""


class Trap(HotswapError):
    """A run of a machine failed.

    A trap fails one step: the state is unchanged and the caller receives this error. ``kind``
    is a stable machine-readable word, one of:

    - ``"overflow"``: integer arithmetic left the signed 64-bit range;
    - ``"division_by_zero"``: ``//`` or ``%`` by zero;
    - ``"index_error"``: a list or str index out of range (Python's ``IndexError``);
    - ``"missing_key"``: a dict key that is not there (Python's ``KeyError``);
    - ``"raised"``: the machine raised an exception (``raise E(message)``: ``E: message``);
    - ``"too_large"``: a str, list or dict would pass its size limit, or a new state its
      byte limit;
    - ``"out_of_fuel"``: the run used all of its fuel budget.
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trap) and (self.kind, str(self)) == (other.kind, str(other))

    def __hash__(self) -> int:
        return hash((self.kind, str(self)))


# --- cam ------------------------------------------------------------------------------------


class BytecodeError(HotswapError):
    """Bytes that are not a valid module, function or value: the reason names what is wrong."""


class DecodeError(BytecodeError):
    """Malformed or non-canonical bytes."""


class VerifyError(BytecodeError):
    """Well-formed code that the verifier rejects (ill-typed, unbalanced, too large)."""


class LimitError(VerifyError):
    """Code or types beyond a static limit of the bytecode (size, nesting, depth): valid in
    principle, but too big to run safely."""


# --- dsl ------------------------------------------------------------------------------------


class SourceError(HotswapError):
    """A machine's Python source uses something outside the supported subset, or is mistyped.

    Carries the position and renders the offending line with a caret.
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str = "<source>",
        line: int = 0,
        column: int = 0,
        source_line: str = "",
    ) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column
        self.source_line = source_line
        text = f"{filename}:{line}:{column + 1}: {message}"
        if source_line:
            text += f"\n    {source_line}\n    {' ' * column}^"
        super().__init__(text)


# --- protocol, node, client -----------------------------------------------------------------


class ProtocolError(HotswapError):
    """A violation of the wire protocol."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class NodeError(HotswapError):
    """A request to a node failed; ``code`` is the protocol's error code.

    For a program to act on without parsing the message: ``running`` and ``generation`` are
    the code and generation the machine runs (set with ``wrong_version``), ``trap`` the kind
    of trap (``overflow``, ``division_by_zero``) when code ran and trapped."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        running: str | None = None,
        generation: int | None = None,
        trap: str | None = None,
    ) -> None:
        self.code = code
        self.running = running
        self.generation = generation
        self.trap = trap
        super().__init__(message)


class UpgradeRejected(NodeError):
    """The node refused an upgrade; nothing changed. ``reason`` says why."""

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        running: str | None = None,
        generation: int | None = None,
        trap: str | None = None,
    ) -> None:
        self.reason = reason
        super().__init__(code, reason, running=running, generation=generation, trap=trap)


class StepTrapped(NodeError, Trap):
    """An input's step trapped on the node (code ``trap``): the machine's state is unchanged.
    It is a :class:`Trap` (``kind``, the message) and a :class:`NodeError` (``code``)."""

    def __init__(self, kind: str, message: str) -> None:
        HotswapError.__init__(self, message)  # both bases' fields, set here: no diamond calls
        self.code, self.running, self.generation, self.trap = "trap", None, None, kind
        self.kind = kind

    __eq__ = Trap.__eq__
    __hash__ = Trap.__hash__


class StoreError(HotswapError):
    """The node's persistent store is unusable or inconsistent."""
