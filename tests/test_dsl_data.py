"""Strings, lists and dicts in machines: annotations, literals, operators, indexing, methods,
builtins and raise, each compiled and compared with the plain Python function on random inputs,
traps included (a KeyError is missing_key, an IndexError index_error, a raise is raised)."""

from __future__ import annotations

import ast
import itertools
import textwrap
from dataclasses import dataclass
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_oracle import (
    CompiledFunction,
    agrees,
    agrees_from_a_random_state,
    compiled_outcome,
    values,
)
from hotswap.cam.limits import DEFAULT_FUEL
from hotswap.cam.module import format_version
from hotswap.dsl import Machine, compile_function, compile_source, machine
from hotswap.dsl.annotations import schema_of_annotation, schema_of_type
from hotswap.errors import SourceError
from hotswap.lang.types import INT, STR, UNIT, ListT, MapT, Prod, Sum
from hotswap.names.schema import (
    DictSchema,
    IntSchema,
    ListSchema,
    NoneSchema,
    RecordSchema,
    SchemaProblem,
    StrSchema,
    UnionSchema,
    core_type,
    to_core,
)

# --- annotations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    sku: str
    qty: int


@dataclass(frozen=True)
class Cart:
    lines: dict[str, Line]
    log: list[str]
    owner: Optional[str]  # noqa: UP045 - Optional is accepted too


def test_annotations_read_str_list_and_dict() -> None:
    """``str``, ``list[T]``, ``dict[K, V]`` in records, unions and Optional."""
    schema = schema_of_type(Cart)
    line = Prod(STR, INT)
    assert core_type(schema) == Prod(MapT(STR, line), Prod(ListT(STR), Sum(STR, UNIT)))
    assert isinstance(schema, RecordSchema)
    owner = schema.fields[2].schema
    assert owner == UnionSchema((StrSchema(), NoneSchema()))
    node = ast.parse("dict[str, list[int]] | str | None", mode="eval").body
    parsed = schema_of_annotation(node, {"dict": dict, "list": list, "str": str, "int": int}.get)
    assert parsed == UnionSchema(
        (DictSchema(StrSchema(), ListSchema(IntSchema())), StrSchema(), NoneSchema())
    )


@pytest.mark.parametrize(
    ("annotation", "fragment"),
    [
        ("str | str", "appears twice"),
        ("list[int] | list[str]", "cannot be told apart"),
        ("dict[list[int], int]", "may not hold a list"),
        ("dict[str]", "dict takes a key and a value type"),
        ("list[int, int]", "list takes one item type"),
    ],
)
def test_ambiguous_or_malformed_collection_annotations_are_rejected(
    annotation: str, fragment: str
) -> None:
    node = ast.parse(annotation, mode="eval").body
    names = {"dict": dict, "list": list, "str": str, "int": int}
    with pytest.raises(SchemaProblem, match=fragment):
        schema_of_annotation(node, names.get)


# --- machines, each compared with its plain function ------------------------------------------


class OutOfStock(Exception):
    """A machine's own exception class."""


@dataclass(frozen=True)
class Put:
    key: str
    value: int


@dataclass(frozen=True)
class Take:
    key: str


@dataclass(frozen=True)
class Peek:
    key: str


@dataclass(frozen=True)
class Total: ...


Command = Put | Take | Peek | Total


@machine(init={})
def store(cmd: Command, items: dict[str, int]) -> tuple[dict[str, int], int | str | None]:
    """Dict operations: get with and without a default, |, {**d, k: v}, d[k], in, len."""
    match cmd:
        case Put(key, value):
            if value < 0:
                raise OutOfStock(f"cannot put {value} of {key!s}")
            if key in items:
                return items | {key: items[key] + value}, items.get(key)
            return {**items, key: value}, len(items)
        case Take(key):
            left = items[key] - 1  # KeyError: missing_key
            if left == 0:
                return {k: v for k, v in items.items() if k != key}, None
            return items | {key: left}, left
        case Peek(key):
            return items, items.get(key, -1)
        case Total():
            return items, f"{sum(items.values())} in {len(items)}: {', '.join(items)}"


@dataclass(frozen=True)
class Word:
    text: str


@dataclass(frozen=True)
class Cut:
    start: int
    end: int


@dataclass(frozen=True)
class At:
    index: int


@machine(init="")
def text(cmd: Word | Cut | At, s: str) -> tuple[str, str | int]:
    """Text: concatenation, slices with omitted bounds, indexing, comparisons, substrings,
    startswith/endswith, str(), f-strings of ints, strs and bools."""
    match cmd:
        case Word(w):
            if w == "":
                return s, s[:1] + s[-1:]
            if w < s:
                return w + " " + s, len(w)
            if w in s:
                return s, str(s.startswith(w) or s.endswith(w))
            return s + w, f"{w!s}:{len(s)}:{w >= s}"
        case Cut(a, b):
            return s[a:b], s[a:] + "|" + s[:b] + str(a)
        case At(i):
            return s, s[i]  # IndexError: index_error


@dataclass(frozen=True)
class Push:
    value: int


@dataclass(frozen=True)
class Pop: ...


@dataclass(frozen=True)
class Stats: ...


@dataclass(frozen=True)
class Window:
    start: int
    end: int


@machine(init=[])
def numbers(
    cmd: Push | Pop | Stats | Window | At, xs: list[int]
) -> tuple[list[int], int | str | list[int] | tuple[int, int, int, bool, bool]]:
    """Lists: literals, +, indexing (also negative), slices, len, in, sorted, sum, min, max,
    any, all, comprehensions, == on lists."""
    match cmd:
        case Push(v):
            if v in xs:
                return xs, str([v, -v] == [x for x in xs if x == v])
            return [*xs, v], len(xs) + 1
        case Pop():
            if xs == []:
                raise OutOfStock("pop from empty list")
            return xs[:-1], xs[-1]
        case Stats():
            return xs, (sum(xs), min(xs), max(xs), any(x < 0 for x in xs), all(x > -5 for x in xs))
        case Window(a, b):
            return sorted(xs[a:b]), [x * 2 for x in xs[a:] if x % 2 == 0] + xs[:b]
        case At(i):
            return xs, xs[i]


MACHINES: list[Machine[..., Any]] = [store, text, numbers]


@pytest.mark.parametrize("m", MACHINES, ids=lambda m: m.name)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_machine_agrees_with_python(m: Machine[..., Any], data: st.DataObject) -> None:
    """Random inputs from random states: the compiled step and the plain function agree."""
    agrees_from_a_random_state(m, data)


def test_raise_traps_with_the_class_and_message() -> None:
    assert compiled_outcome(store.run, Put("a", -2), {}) == (
        "trap",
        "raised",
        "OutOfStock: cannot put -2 of a",
    )
    assert compiled_outcome(numbers.run, Pop(), []) == (
        "trap",
        "raised",
        "OutOfStock: pop from empty list",
    )
    assert compiled_outcome(numbers.run, Stats(), []) == (
        "trap",
        "raised",
        "ValueError: min() arg is an empty sequence",
    )
    assert compiled_outcome(store.run, Take("zz"), {}) == ("trap", "missing_key")


def test_a_helper_called_as_a_statement_runs_and_may_raise() -> None:
    """``check(n)`` alone on its line: evaluated for its trap, its result dropped."""
    source = textwrap.dedent(
        """
        def check(n: int) -> None:
            if n < 0:
                raise ValueError(f"negative: {n}")

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            check(inp)
            check(s - inp)
            return s + inp, s
        """
    )
    m = compile_source(source)["m"]
    assert isinstance(m, Machine)
    assert agrees(m, 2, 5) == ("ok", (7, 5))
    assert agrees(m, -1, 5) == ("trap", "raised", "ValueError: negative: -1")
    assert agrees(m, 6, 5) == ("trap", "raised", "ValueError: negative: -1")


def test_get_gives_the_optional_union() -> None:
    assert store.output_schema == UnionSchema((IntSchema(), StrSchema(), NoneSchema()))
    assert store.run(Put("a", 1), {"a": 2}) == ({"a": 3}, 2)


# --- small functions: each construct ----------------------------------------------------------


def first_word(s: str) -> str:
    for i, ch in enumerate(s):
        if ch == " ":
            return s[:i]
    return s


def count_chars(s: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ch in s:
        counts = counts | {ch: counts.get(ch, 0) + 1}
    return counts


def pairs(xs: list[int], ys: list[str]) -> list[tuple[int, str]]:
    return [(x, y) for x, y in zip(xs, ys, strict=False) if x > 0]


def ranked(scores: dict[str, int]) -> list[str]:
    return [f"{name}={scores[name]}" for name in sorted(scores, reverse=True)]


def best(scores: dict[str, int]) -> str:
    top = max(scores.values())
    return min(name for name, score in scores.items() if score == top)


def nested(rows: list[list[int]]) -> list[int]:
    return [x for row in rows for x in row if x != 0]


def keyed(xs: list[str]) -> dict[str, int]:
    return {x: len(x) for x in xs if x}


def lookup(d: dict[str, list[int]], k: str, i: int) -> int:
    return d[k][i]


def label(name: str, nick: str | None) -> str:
    """``or`` on strs, ``is None`` narrowing, a conditional of two types."""
    if nick is not None and nick:
        return f"{nick} ({name or 'anonymous'})"
    shown = nick if nick is not None else None
    return (name or "anonymous") + ("?" if shown is None else shown)


def smallest_word(words: list[str], extra: str) -> str:
    if not words:
        return min(extra, "zz", extra + "a")
    return max(min(words), extra)


def steps(xs: list[int], ys: list[str]) -> list[int]:
    diffs = [b - a for a, b in itertools.pairwise(xs)]
    return diffs + [x for x, y in zip(xs, ys, strict=False) if y]


def get_both(d: dict[str, int | None], k: str) -> tuple[int | None, int | None, bool]:
    return d.get(k), d.get(k, 7), d.get(k) is None


def nested_get(d: dict[str, dict[str, int]], a: str, b: str) -> int:
    inner = d.get(a)
    if inner is None or b not in inner:
        return -1
    return inner[b]


FUNCTIONS: dict[Any, tuple[st.SearchStrategy[Any], ...]] = {
    first_word: (values(StrSchema()),),
    count_chars: (values(StrSchema()),),
    pairs: (values(ListSchema(IntSchema())), values(ListSchema(StrSchema()))),
    ranked: (values(DictSchema(StrSchema(), IntSchema())),),
    best: (values(DictSchema(StrSchema(), IntSchema())),),
    nested: (values(ListSchema(ListSchema(IntSchema()))),),
    keyed: (values(ListSchema(StrSchema())),),
    lookup: (
        values(DictSchema(StrSchema(), ListSchema(IntSchema()))),
        values(StrSchema()),
        st.integers(-4, 4),
    ),
    label: (values(StrSchema()), st.none() | values(StrSchema())),
    smallest_word: (values(ListSchema(StrSchema())), values(StrSchema())),
    steps: (values(ListSchema(IntSchema())), values(ListSchema(StrSchema()))),
    get_both: (
        st.dictionaries(st.sampled_from("ab"), st.none() | st.integers(0, 3)),
        st.sampled_from("abc"),
    ),
    nested_get: (
        st.dictionaries(
            st.sampled_from("ab"), st.dictionaries(st.sampled_from("xy"), st.integers(0, 3))
        ),
        st.sampled_from("abc"),
        st.sampled_from("xyz"),
    ),
}


_COMPILED = {fn: CompiledFunction(fn) for fn in FUNCTIONS}


@pytest.mark.parametrize("fn", list(FUNCTIONS), ids=lambda f: f.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_function_agrees_with_python(fn: Any, data: st.DataObject) -> None:
    args = [data.draw(s) for s in FUNCTIONS[fn]]
    agrees(_COMPILED[fn], *args)


def test_compiled_function_is_well_typed() -> None:
    for fn in FUNCTIONS:
        compiled = compile_function(fn)
        assert compiled.codomain == core_type(compiled.signature.returns)


# --- errors -----------------------------------------------------------------------------------

HEADER = """\
from dataclasses import dataclass, replace

@dataclass(frozen=True)
class S:
    items: dict[str, int]
    xs: list[int]

"""

ERRORS = {
    "empty list without a type": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            return s, len([])
        """,
        "the item type of [] is not known here",
    ),
    "format spec": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, str]:
            return s, f"{inp:>5}"
        """,
        "format specs",
    ),
    "comparing different types": (
        """
        @machine(init=0)
        def m(inp: str, s: int) -> tuple[int, bool]:
            return s, inp == s
        """,
        "== compares values of one type, but these are str and int",
    ),
    "a view is not a list": (
        """
        @machine(init=0)
        def m(inp: dict[str, int], s: int) -> tuple[int, list[str]]:
            return s, inp.keys()
        """,
        "is a view, not a list",
    ),
    "sorted with a key": (
        """
        @machine(init=0)
        def m(inp: list[int], s: int) -> tuple[int, list[int]]:
            return s, sorted(inp, key=abs)
        """,
        "sorted() takes no key=",
    ),
    "sorted of records": (
        """
        @machine(init=0)
        def m(inp: list[tuple[int, int]], s: int) -> tuple[int, list[tuple[int, int]]]:
            return s, sorted(inp)
        """,
        "sorted() sorts lists of int or str",
    ),
    "slice step": (
        """
        @machine(init=0)
        def m(inp: list[int], s: int) -> tuple[int, list[int]]:
            return s, inp[::2]
        """,
        "slices with a step",
    ),
    "raise a non-exception": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            raise S({}, [])
        """,
        "S is not an exception class",
    ),
    "raise with two arguments": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            raise ValueError("a", "b")
        """,
        "one message argument at most",
    ),
    "exception with its own init": (
        """
        class Odd(Exception):
            def __init__(self, n: int) -> None:
                super().__init__(f"odd {n}")

        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            raise Odd(inp)
        """,
        "has its own __init__",
    ),
    "view stored": (
        """
        @machine(init=0)
        def m(inp: dict[str, int], s: int) -> tuple[int, int]:
            ks = inp.keys()
            return s, len(ks)
        """,
        "is a view, not a list",
    ),
    "or on an optional": (
        """
        @machine(init=0)
        def m(inp: dict[str, str], s: int) -> tuple[int, str]:
            return s, inp.get("k") or "none"
        """,
        "inp.get('k') is str | None, which is not a condition: write x = inp.get('k'), then "
        "x if x is not None else 'none' (or inp.get('k', \"\") or 'none', which also replaces "
        "an empty value, as or does)",
    ),
    "in on an int": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, bool]:
            return s, 1 in inp
        """,
        "in looks into a str, list or dict, not int",
    ),
}


@pytest.mark.parametrize(("snippet", "fragment"), ERRORS.values(), ids=ERRORS.keys())
def test_unsupported_data_code_is_a_source_error(snippet: str, fragment: str) -> None:
    with pytest.raises(SourceError) as error:
        compile_source(HEADER + textwrap.dedent(snippet).lstrip("\n"), "d.py")
    assert fragment in error.value.message, error.value.message


def test_module_format_follows_what_a_machine_uses() -> None:
    """A machine without str, list or dict still writes a module of format 1; one with them,
    format 2."""
    source = """
@machine(init=0)
def old(inp: int, s: int) -> tuple[int, bool]:
    return s + 1, inp == s

@machine(init="")
def new(inp: str, s: str) -> tuple[str, bool]:
    return s + inp, inp == s
"""
    found = compile_source(source)
    assert format_version(found["old"].cam_module) == 1
    assert format_version(found["new"].cam_module) == 2


# --- str methods written in the DSL (hotswap.dsl.textlib) ---------------------------------------


def split_on(s: str, sep: str) -> list[str]:
    return s.split(sep)


def split_words(s: str) -> list[str]:
    return s.split()


def stripped(s: str, chars: str) -> tuple[str, str, str, str]:
    return s.strip(), s.lstrip(chars), s.rstrip(chars), s.strip(chars)


def searched(s: str, sub: str) -> tuple[int, int, str]:
    return s.find(sub), s.count(sub), s.replace(sub, "<>")


def parse_command(line: str) -> str:
    """A user's text processing: split a command line and dispatch on its words."""
    words = line.strip().split()
    if not words:
        return "empty"
    match words[0]:
        case "add" if len(words) == 3:
            return f"{words[1]}+={words[2]}"
        case "del":
            return ",".join(w.strip("é") for w in words[1:])
        case verb:
            return f"unknown {verb!s} ({len(words) - 1} args)"


_TEXT = st.text(alphabet=" \t\u3000abé-", max_size=8)
TEXT_FUNCTIONS: dict[Any, tuple[st.SearchStrategy[Any], ...]] = {
    split_on: (_TEXT, st.sampled_from(["", " ", "a", "ab", "-é"])),
    split_words: (_TEXT,),
    stripped: (_TEXT, st.sampled_from(["", "a", " é"])),
    searched: (_TEXT, st.sampled_from(["", "a", "ab", " "])),
    parse_command: (st.text(alphabet=" adel", max_size=10) | st.sampled_from(["add x 1"]),),
}
_TEXT_COMPILED = {fn: CompiledFunction(fn) for fn in TEXT_FUNCTIONS}


@pytest.mark.parametrize("fn", list(TEXT_FUNCTIONS), ids=lambda f: f.__name__)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_str_methods_mean_what_python_means(fn: Any, data: st.DataObject) -> None:
    args = [data.draw(s) for s in TEXT_FUNCTIONS[fn]]
    agrees(_TEXT_COMPILED[fn], *args)


def text_statistics(s: str) -> tuple[int, int, int, int, str]:
    return len(s.split(" ")), len(s.split()), s.count("ab"), s.find("zz"), s.replace("b ", "")[-9:]


def test_splitting_and_searching_cost_fuel_linear_in_the_text() -> None:
    """``split``, ``count``, ``find`` and ``replace`` are one primitive each (and a join): the
    fuel of a text twice as long is about twice as much, and a text of 60,000 characters takes
    a small part of the default fuel (with a slice at each index, as they were written once,
    4,500 characters took all of it)."""
    compiled = CompiledFunction(text_statistics)
    used = []
    for n in (5_000, 10_000, 20_000):
        text = "ab " * n + "zz"
        assert compiled.run(text) == text_statistics(text)
        vm = compiled._vm
        vm.run(to_core(StrSchema(), text), DEFAULT_FUEL)
        used.append(vm.statistics().fuel)
    assert used[2] < 2.2 * used[1] < 2.2 * 2.2 * used[0]
    assert used[2] < DEFAULT_FUEL // 10


def stripped_all(s: str) -> tuple[str, str, str]:
    return s.strip(), s.lstrip(), s.rstrip()


def test_stripping_costs_fuel_for_what_it_removes() -> None:
    """Stripping looks at the characters it removes and one more, from either end: a text of
    60,000 characters with nothing to strip takes a small part of the default fuel (walking
    every character, as it did once, took all of it)."""
    compiled = CompiledFunction(stripped_all)
    for text in ("a" * 60_000, " \u3000" + "a b" * 20_000 + "\t\n"):
        assert compiled.run(text) == stripped_all(text)
        compiled._vm.run(to_core(StrSchema(), text), DEFAULT_FUEL)
        assert compiled._vm.statistics().fuel < DEFAULT_FUEL // 5
