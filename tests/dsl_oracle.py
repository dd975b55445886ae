"""The oracle of the DSL's data tests: Python values of schemas with str, list and dict, and the
plain function's outcome with Python's exceptions read as the traps the compiled machine gives.

``d[k]`` on a missing key raises ``KeyError`` in Python and traps ``missing_key`` compiled;
``xs[i]`` out of range raises ``IndexError`` and traps ``index_error``; ``raise E(message)`` (and
``min([])``'s ``ValueError``) raises and traps ``raised`` with ``"E: message"``. Ints follow the
core's rules through :class:`strategies.CheckedInt`, inside lists and dicts too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import FunctionType
from typing import Any

from hypothesis import strategies as st

from hotswap.cam.build import build_function
from hotswap.cam.codegen import compile_code
from hotswap.cam.vm import VM
from hotswap.dsl import Machine, compile_function
from hotswap.errors import Trap
from hotswap.lang.evaluate import evaluate
from hotswap.lang.ints import INT_MAX, INT_MIN
from hotswap.names.schema import (
    BoolSchema,
    DictSchema,
    IntSchema,
    ListSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    StrSchema,
    TupleSchema,
    UnionSchema,
    from_core,
    nest_values,
    to_core,
)
from strategies import CheckedInt

#: Short texts over a small alphabet, so that keys collide and substrings are found.
texts = st.text(alphabet="abcé ", max_size=5)


def values(s: Schema, size: int = 4) -> st.SearchStrategy[Any]:
    """Python values of ``s`` (records with classes): small ints mostly, sometimes at the
    edges of the 64-bit range; lists and dicts of at most ``size`` entries."""
    match s:
        case IntSchema():
            return st.one_of(
                st.integers(-20, 20), st.sampled_from([INT_MAX, INT_MIN, INT_MAX - 1, 2**62])
            )
        case BoolSchema():
            return st.booleans()
        case NoneSchema():
            return st.none()
        case StrSchema():
            return texts
        case ListSchema(item):
            return st.lists(values(item, size), max_size=size)
        case DictSchema(key, value):
            return st.dictionaries(values(key, size), values(value, size), max_size=size)
        case TupleSchema(items):
            return st.tuples(*(values(i, size) for i in items))
        case RecordSchema(fields=fields, cls=cls):
            assert cls is not None
            return st.builds(cls, **{f.name: values(f.schema, size) for f in fields})
        case UnionSchema(alternatives):
            return st.one_of(*(values(a, size) for a in alternatives))
    raise AssertionError(s)


def checked(v: Any) -> Any:
    """``v`` with every int (not bool) a :class:`CheckedInt`, inside collections too."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return CheckedInt(v)
    if isinstance(v, tuple):
        return tuple(checked(x) for x in v)
    if isinstance(v, list):
        return [checked(x) for x in v]
    if isinstance(v, dict):
        return {checked(k): checked(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return type(v)(**{f.name: checked(getattr(v, f.name)) for f in dataclasses.fields(v)})
    return v


def plain(v: Any) -> Any:
    """The inverse of :func:`checked`."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, tuple):
        return tuple(plain(x) for x in v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {plain(k): plain(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return type(v)(**{f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)})
    return v


Outcome = tuple[Any, ...]


def _trap(t: Trap) -> Outcome:
    # index and key traps are compared by kind: Python's messages are its own
    if t.kind in ("index_error", "missing_key"):
        return ("trap", t.kind)
    return ("trap", t.kind, str(t))


def compiled_outcome(run: Callable[..., Any], *args: Any) -> Outcome:
    """``("ok", result)`` or the trap a compiled path gives."""
    try:
        return ("ok", run(*args))
    except Trap as t:
        return _trap(t)


def python_outcome(fn: Callable[..., Any], *args: Any) -> Outcome:
    """What the plain function does, Python's exceptions read as traps."""
    try:
        return ("ok", plain(fn(*(checked(a) for a in args))))
    except Trap as t:
        return _trap(t)
    except KeyError:
        return ("trap", "missing_key")
    except IndexError:
        return ("trap", "index_error")
    except Exception as e:  # noqa: BLE001 - a raise in the machine: the trap it must give
        name = type(e).__name__
        message = f"{name}: {e.args[0]}" if e.args and e.args[0] != "" else name
        return ("trap", "raised", message)


def agrees(m: Any, *args: Any) -> Outcome:
    """Run ``m`` (a machine or migration) compiled and plain, demand one outcome, return it.
    The arguments are copied for the plain run, which may change its own copies."""
    expected = python_outcome(m.__wrapped__, *args)
    got = compiled_outcome(m.run, *args)
    assert got == expected, f"{m.name}{args}: compiled {got}, Python {expected}"
    return got


class CompiledFunction:
    """A plain DSL helper, compiled with ``compile_function`` and run three ways: the reference
    evaluator, the VM and the fast path, which must agree (traps included) on every call."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.__wrapped__ = fn
        self.name = fn.__name__
        assert isinstance(fn, FunctionType)
        self.compiled = compile_function(fn)
        sig = self.compiled.signature
        self.params = [s for _, s in sig.params]
        self.returns = sig.returns
        built = build_function(self.compiled.term, self.compiled.domain, self.compiled.codomain)
        self._vm = VM(built.code)
        self._fast = compile_code(built.code)

    def run(self, *args: Any) -> Any:
        core = nest_values([to_core(s, a) for s, a in zip(self.params, args, strict=True)])
        results = [
            compiled_outcome(lambda v: evaluate(self.compiled.term, v), core),
            compiled_outcome(self._vm.run, core),
            compiled_outcome(self._fast, core),
        ]
        assert results[1] == results[0], f"VM: {results[1]}, evaluator: {results[0]}"
        assert results[2] == results[0], f"fast path: {results[2]}, evaluator: {results[0]}"
        kind, *rest = results[0]
        if kind == "trap":
            raise Trap(rest[0], rest[1] if len(rest) > 1 else "")
        return from_core(self.returns, rest[0])


def agrees_from_a_random_state(m: Machine[..., Any], data: st.DataObject, steps: int = 3) -> None:
    """A random state, then ``steps`` random inputs, each step checked by :func:`agrees` and
    the next starting from the state it left (or the same state after a trap)."""
    state = data.draw(values(m.state_schema))
    for _ in range(steps):
        inp = data.draw(values(m.input_schema))
        result = agrees(m, inp, state)
        if result[0] == "ok":
            state = result[1][0]
