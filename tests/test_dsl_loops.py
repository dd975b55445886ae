"""Loops: for over lists, dicts, ranges, strs, enumerate, zip and reversed, with loop-carried
variables, if, continue, break and return inside, and in-place changes of fresh local copies;
each machine compared with its plain Python function on random inputs, traps included."""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_oracle import CompiledFunction, agrees, agrees_from_a_random_state, values
from hotswap.dsl import Machine, compile_source, machine
from hotswap.dsl.combinators import fold_nesting
from hotswap.errors import SourceError, Trap


class Rejected(Exception):
    """Raised by the machines below."""


@dataclass(frozen=True)
class Find:
    target: int


@dataclass(frozen=True)
class Scan:
    limit: int


@dataclass(frozen=True)
class Range:
    start: int
    end: int


@dataclass(frozen=True)
class Tally:
    words: list[str]


@machine(init=[])
def search(cmd: Find | Scan | Range | Tally, xs: list[int]) -> tuple[list[int], int | str]:
    """break, continue, return inside loops; nested loops; range; enumerate; reversed."""
    match cmd:
        case Find(target):
            for i, x in enumerate(xs):
                if x == target:
                    return xs, i  # early return from inside the loop
            return xs + [target], -1  # noqa: RUF005 - as users write it
        case Scan(limit):
            total = 0
            count = 0
            for x in xs:
                if x < 0:
                    continue
                if total + x > limit:
                    break
                total += x
                count += 1
            return xs[count:], total
        case Range(a, b):
            if b - a > 50:
                raise Rejected(f"range of {b - a}")
            found = 0
            for i in range(a, b):
                for x in reversed(xs):
                    if x == i:
                        found += 1
                        break
                    if x > 100:
                        return xs, f"big {x} at {i}"
            return xs, found
        case Tally(words):
            seen: dict[str, int] = {}
            for w in words:
                if not w:
                    continue
                seen[w] = seen.get(w, 0) + 1
            out = ""
            for w, n in seen.items():
                out = out + f"{w}{n}"
            return [len(w) for w in words], out


@dataclass(frozen=True)
class Book:
    title: str
    copies: int


@dataclass(frozen=True)
class Library:
    books: dict[str, Book]
    loans: list[str]


@dataclass(frozen=True)
class Lend:
    ids: list[str]


@dataclass(frozen=True)
class Restock:
    amount: int


@dataclass(frozen=True)
class Report: ...


@machine(init=Library({}, []))
def library(cmd: Lend | Restock | Report, lib: Library) -> tuple[Library, str]:
    """In-place changes of fresh copies, raise in a loop, dict iteration."""
    match cmd:
        case Lend(ids):
            books = dict(lib.books)
            loans = list(lib.loans)
            for book_id in ids:
                book = books.get(book_id)
                if book is None:
                    raise Rejected(f"no book {book_id}")
                if book.copies == 0:
                    continue
                books[book_id] = replace(book, copies=book.copies - 1)
                loans.append(book_id)
            return Library(books, loans), f"{len(loans) - len(lib.loans)} lent"
        case Restock(amount):
            books = dict(lib.books)
            for key in books:
                books[key] = replace(books[key], copies=books[key].copies + amount)
            return replace(lib, books=books), "restocked"
        case Report():
            lines: list[str] = []
            for key, book in lib.books.items():
                lines.append(f"{key}:{book.title}x{book.copies}")
            lines.sort()
            return lib, "; ".join(lines)


@machine(init={})
def matrix(cmd: tuple[int, int], grid: dict[int, list[int]]) -> tuple[dict[int, list[int]], int]:
    """Nested loops over dicts of lists, zip, early return through two loops."""
    row, value = cmd
    cells = [*grid[row], value] if row in grid else [value]
    grid = grid | {row: cells}
    best = 0
    for r, line in grid.items():
        for a, b in itertools.pairwise(line):
            if a == b == value:
                return grid, -r
            best = max(best, a - b)
    return grid, best


MACHINES: list[Machine[..., Any]] = [search, library, matrix]


@pytest.mark.parametrize("m", MACHINES, ids=lambda m: m.name)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_machine_agrees_with_python(m: Machine[..., Any], data: st.DataObject) -> None:
    agrees_from_a_random_state(m, data)


def test_lend_refuses_an_unknown_book_and_keeps_the_state() -> None:
    lib = Library({"b1": Book("Dune", 1)}, [])
    assert library.run(Lend(["b1", "b1"]), lib) == (
        Library({"b1": Book("Dune", 0)}, ["b1"]),
        "1 lent",
    )
    with pytest.raises(Trap) as trap:
        library.run(Lend(["b1", "zz"]), lib)
    assert trap.value.kind == "raised"
    assert str(trap.value) == "Rejected: no book zz"


def test_a_loop_compiles_to_a_fold() -> None:
    assert fold_nesting(search.compiled.step) == 2


# --- functions with loops -----------------------------------------------------------------------


def first_repeat(xs: list[int]) -> int | None:
    seen: list[int] = []
    for x in xs:
        if x in seen:
            return x
        seen.append(x)
    return None


def running(xs: list[int]) -> list[int]:
    out = []  # type: ignore[var-annotated]  # the DSL finds the type in the return
    total = 0
    for x in xs:
        total = total + x
        out = out + [total]  # noqa: RUF005 - as users write it
    return out


def histogram(words: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in words:
        if w in counts:
            counts[w] += 1
        else:
            counts[w] = 1
    return counts


def inverted(d: dict[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for k, v in d.items():
        keys = out.get(v, [])
        out = out | {v: [*keys, k]}
    return out


def drop_small(d: dict[str, int], limit: int) -> dict[str, int]:
    kept = dict(d)
    for k, v in d.items():
        if v < limit:
            del kept[k]
    return kept


def words(s: str) -> list[str]:
    out: list[str] = []
    current = ""
    for ch in s:
        if ch == " ":
            if current:
                out.append(current)
            current = ""
        else:
            current += ch
    if current != "":
        out.append(current)
    return out


def insert_sorted(xs: list[int], x: int) -> list[int]:
    result = list(xs)
    for i, y in enumerate(xs):
        if x < y:
            result.insert(i, x)
            return result
    result.append(x)
    return result


def pop_all(xs: list[int], n: int) -> list[int]:
    ys = list(xs)
    for _ in range(n):
        ys.pop()
    return ys


def triangle(n: int) -> list[list[int]]:
    rows = []
    for i in range(min(n, 6)):
        row = []
        for j in range(i + 1):
            row.append(j)
        rows.append(row)
    return rows


def edits(xs: list[int], i: int, x: int) -> list[int]:
    """Every in-place change of a list, on a fresh copy."""
    ys = xs.copy()
    ys.extend([x, x + 1])
    ys.insert(i, x)
    if ys:
        ys[i % len(ys)] = -x
    ys.sort(reverse=True)
    ys += [i]
    del ys[i]
    ys.pop(0)
    ys.reverse()
    if x > 5:
        ys.clear()
    return ys


def dict_edits(d: dict[str, int], k: str, v: int) -> dict[str, int]:
    e = dict(d)
    e.update({k: v})
    e |= {"z": v}
    e.pop(k)
    e.pop("y", 0)
    e.pop("a", None)  # delete if there
    e[k] = e.get(k, 0) + 1
    if v > 2:
        del e["z"]
    return e


def inferred(xs: list[int]) -> tuple[list[int], dict[int, str]]:
    evens = []
    names = {}
    for x in xs:
        if x % 2 == 0:
            evens.append(x)
        names[x] = str(x)
    return evens, names


@dataclass(frozen=True)
class Num:
    n: int


@dataclass(frozen=True)
class Word:
    s: str


def is_word(x: Num | Word) -> bool:
    match x:
        case Word():
            return True
        case _:
            return False


def mixed(xs: list[Num | Word], limit: int) -> tuple[int, str]:
    """A match with continue, break and return inside a loop inside an if; nested loops
    returning from a helper's test."""
    total = 0
    text = ""
    if limit > 0:
        for x in xs:
            match x:
                case Num(n) if n < 0:
                    continue
                case Num(n):
                    if total + n > limit:
                        break
                    total += n
                case Word(s):
                    if s == "stop":
                        return -1, text
                    text += s
        text = text + "!"
    else:
        for i in range(3):
            for x in xs:
                if is_word(x):
                    return i, "word"
    return total, text


def best_each(d: dict[str, list[int]]) -> dict[str, int]:
    """A variable first None, then an int (int | None, as mypy completes it); continue."""
    out: dict[str, int] = {}
    for k, vs in d.items():
        best = None
        for v in vs:
            if best is None or v > best:
                best = v
        if best is None:
            continue
        out[k] = best
    return out


def first_accented(words: list[str]) -> str:
    for w in words:
        if w:
            for ch in w:
                if ch == "é":
                    return w
        else:
            break
    return "none"


def ranks(names: list[str], first: int) -> list[str]:
    out = [f"{i}. {name}" for i, name in enumerate(names, start=first)]
    for i, name in enumerate(names, 1):
        if name in ("b", "c"):
            out.append(f"{name}@{i}")
    for n in (1, 2):
        out.append(str(n))
    return out


def maybe(flag: bool, n: int) -> int:
    found = None
    if flag:
        found = n
    return -1 if found is None else found


FUNCTIONS: dict[Any, list[st.SearchStrategy[Any]]] = {
    first_repeat: [st.lists(st.integers(-3, 3), max_size=6)],
    running: [values_of := st.lists(st.integers(-5, 5), max_size=6)],
    histogram: [st.lists(st.sampled_from(["a", "b", ""]), max_size=6)],
    inverted: [st.dictionaries(st.sampled_from("abcd"), st.integers(0, 2), max_size=4)],
    drop_small: [st.dictionaries(st.sampled_from("abcd"), st.integers(0, 5)), st.integers(0, 5)],
    words: [st.text(alphabet="ab ", max_size=8)],
    insert_sorted: [st.lists(st.integers(0, 9), max_size=5).map(sorted), st.integers(0, 9)],
    pop_all: [values_of, st.integers(0, 7)],
    triangle: [st.integers(-1, 8)],
    edits: [values_of, st.integers(-7, 7), st.integers(0, 9)],
    dict_edits: [
        st.dictionaries(st.sampled_from("abyz"), st.integers(0, 5)),
        st.sampled_from("abc"),
        st.integers(0, 5),
    ],
    inferred: [values_of],
    mixed: [
        st.lists(
            st.one_of(
                st.builds(Num, st.integers(-3, 5)),
                st.builds(Word, st.sampled_from(["a", "stop", "b"])),
            ),
            max_size=5,
        ),
        st.integers(-2, 8),
    ],
    best_each: [st.dictionaries(st.sampled_from("ab"), st.lists(st.integers(-3, 3), max_size=3))],
    first_accented: [st.lists(st.sampled_from(["", "ab", "é", "xé"]), max_size=4)],
    maybe: [st.booleans(), st.integers(-3, 3)],
    ranks: [st.lists(st.sampled_from("abc"), max_size=4), st.integers(-2, 2)],
}


_COMPILED = {fn: CompiledFunction(fn) for fn in FUNCTIONS}


@pytest.mark.parametrize("fn", list(FUNCTIONS), ids=lambda f: f.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_function_agrees_with_python(fn: Any, data: st.DataObject) -> None:
    args = [data.draw(s) for s in FUNCTIONS[fn]]
    agrees(_COMPILED[fn], *args)


# --- errors -----------------------------------------------------------------------------------

HEADER = """\
from dataclasses import dataclass, replace

@dataclass(frozen=True)
class S:
    items: dict[str, int]
    xs: list[int]

"""

ERRORS = {
    "change of a field in place": (
        """
        @machine(init=S({}, []))
        def m(inp: str, s: S) -> tuple[S, int]:
            s.items[inp] = 1
            return s, 0
        """,
        "s.items may be shared",
        "write items = s.items | {inp: 1}, and build the new s with it "
        "(dataclasses.replace(s, items=items))",
    ),
    "append to a field": (
        """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, int]:
            s.xs.append(inp)
            return s, 0
        """,
        "s.xs may be shared",
        "write xs = s.xs + [inp]",
    ),
    "+= on a field": (
        """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, int]:
            s.xs += [inp]
            return s, 0
        """,
        "s.xs may be shared",
        "write xs = s.xs + [inp], and build the new s with it (dataclasses.replace(s, xs=xs))",
    ),
    "stored by an assignment, then changed": (
        """
        @machine(init=S({}, []))
        def m(inp: str, s: S) -> tuple[S, int]:
            items = dict(s.items)
            snapshot = items
            items[inp] = 1
            return S(snapshot, []), len(items)
        """,
        "items's value is stored on line 11 (snapshot = items)",
        "",
    ),
    "append to a parameter": (
        """
        @machine(init=[])
        def m(inp: int, s: list[int]) -> tuple[list[int], int]:
            s.append(inp)
            return s, 0
        """,
        "s is a parameter",
        "write s = s + [inp]",
    ),
    "+= on a parameter list": (
        """
        @machine(init=[])
        def m(inp: int, s: list[int]) -> tuple[list[int], int]:
            s += [inp]
            return s, 0
        """,
        "s is a parameter",
        "write s = s + [inp]",
    ),
    "alias of a field": (
        """
        @machine(init=S({}, []))
        def m(inp: str, s: S) -> tuple[S, int]:
            items = s.items
            items[inp] = 1
            return s, 0
        """,
        "items = s.items on line 10 may share the value of s.items (copy it: "
        "items = dict(s.items))",
        "write items = items | {inp: 1}",
    ),
    "stored, then changed": (
        """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, int]:
            xs = list(s.xs)
            t = S(s.items, xs)
            xs.append(inp)
            return t, 0
        """,
        "xs's value is stored on line 11",
        "",
    ),
    "changed while looped over": (
        """
        @machine(init=[])
        def m(inp: int, s: list[int]) -> tuple[list[int], int]:
            xs = list(s)
            for x in xs:
                xs.append(x)
            return xs, 0
        """,
        "the loop on line 11 iterates over xs",
        "",
    ),
    "loop variable already bound": (
        """
        @machine(init=0)
        def m(inp: list[int], s: int) -> tuple[int, int]:
            x = 0
            for x in inp:
                s += x
            return s, x
        """,
        "x is already a variable here",
        "",
    ),
    "loop variable after the loop": (
        """
        @machine(init=0)
        def m(inp: list[int], s: int) -> tuple[int, int]:
            for x in inp:
                s += x
            return s, x
        """,
        "x is the loop variable of the for on line 10",
        "",
    ),
    "first assigned in the loop": (
        """
        @machine(init=0)
        def m(inp: list[int], s: int) -> tuple[int, int]:
            for x in inp:
                last = x
            return s, last
        """,
        "last is first assigned inside the for on line 10",
        "",
    ),
    "type changes across iterations": (
        """
        @machine(init=0)
        def m(inp: list[int], s: int) -> tuple[int, int]:
            acc = 0
            for x in inp:
                acc = str(x)
            return s, 0
        """,
        "acc is int when the loop starts but str here",
        "",
    ),
    "while": (
        """
        @machine(init=0)
        def m(inp: int, s: int) -> tuple[int, int]:
            while s > 0:
                s -= 1
            return s, 0
        """,
        "while loops are not supported",
        "",
    ),
    "for else": (
        """
        @machine(init=0)
        def m(inp: list[int], s: int) -> tuple[int, int]:
            for x in inp:
                s += x
            else:
                s = 0
            return s, 0
        """,
        "for ... else is not supported",
        "",
    ),
    "stored, then a fresh value on one path only": (
        """
        @machine(init=[])
        def m(inp: list[int], s: list[list[int]]) -> tuple[list[list[int]], int]:
            rows: list[list[int]] = []
            row: list[int] = []
            for x in inp:
                row.append(x)
                if x == 0:
                    rows.append(row)
                if x == 1:
                    row = []
            return s + rows, len(row)
        """,
        "row's value is stored on line 15 (rows.append(row)) and would change with it (row is "
        "not assigned a fresh value on every path from there to here)",
        "write row = row + [x]",
    ),
    "stored, then continue before the fresh value": (
        """
        @machine(init=[])
        def m(inp: list[int], s: list[list[int]]) -> tuple[list[list[int]], int]:
            rows: list[list[int]] = []
            row: list[int] = []
            for x in inp:
                row.append(x)
                if x == 0:
                    rows.append(row)
                    if len(row) > 2:
                        continue
                    row = []
            return s + rows, len(row)
        """,
        "row's value is stored on line 15",
        "",
    ),
    "stored, then a fresh value in one case of a match": (
        """
        @machine(init=[])
        def m(inp: list[int], s: list[list[int]]) -> tuple[list[list[int]], int]:
            rows: list[list[int]] = []
            row: list[int] = [1]
            match len(inp):
                case 0:
                    rows.append(row)
                case _:
                    row = []
            row.append(2)
            return s + rows, len(row)
        """,
        "row's value is stored on line 14",
        "",
    ),
    "empty list, then an int in the loop": (
        """
        @machine(init=0)
        def m(inp: list[int], s: int) -> tuple[int, int]:
            acc = []
            for x in inp:
                acc = x
            return s, 0
        """,
        "acc is list when the loop starts but int here",
        "",
    ),
    "pop as a value": (
        """
        @machine(init=[])
        def m(inp: int, s: list[int]) -> tuple[list[int], int]:
            xs = list(s)
            last = xs.pop()
            return xs, last
        """,
        "xs.pop() as a value is not supported: write last = xs[-1], then xs.pop() "
        "(or xs = xs[:-1])",
        "",
    ),
    "dict pop with a default as a value": (
        """
        @machine(init=S({}, []))
        def m(inp: str, s: S) -> tuple[S, int]:
            d = dict(s.items)
            v = d.pop(inp, -1)
            return replace(s, items=d), v
        """,
        "d.pop(inp, -1) as a value is not supported: write v = d.get(inp, -1), then "
        "d.pop(inp, -1) as a statement",
        "",
    ),
    "remove": (
        """
        @machine(init=[])
        def m(inp: int, s: list[int]) -> tuple[list[int], int]:
            xs = list(s)
            xs.remove(inp)
            return xs, len(xs)
        """,
        "list[int].remove() is not supported: to drop every item equal to inp, write "
        "xs = [y for y in xs if y != inp]; to drop only the first, as remove() does, write "
        "i = [j for j, y in enumerate(xs) if y == inp][0], then del xs[i]",
        "",
    ),
    "append to an item of a dict": (
        """
        @machine(init={})
        def m(inp: str, s: dict[str, list[int]]) -> tuple[dict[str, list[int]], int]:
            d = dict(s)
            d[inp].append(1)
            return d, 0
        """,
        "d[inp] may be shared",
        "write d[inp] = d[inp] + [1]",
    ),
    "append to an item of a list": (
        """
        @machine(init=[])
        def m(inp: int, s: list[list[int]]) -> tuple[list[list[int]], int]:
            rows = list(s)
            rows[0].append(inp)
            return rows, 0
        """,
        "rows[0] may be shared",
        "write rows[0] = rows[0] + [inp]",
    ),
    "setdefault": (
        """
        @machine(init={})
        def m(inp: str, s: dict[str, list[str]]) -> tuple[dict[str, list[str]], int]:
            d = dict(s)
            d.setdefault(inp[:1], []).append(inp)
            return d, len(d)
        """,
        "setdefault() is not supported: write d[inp[:1]] = d.get(inp[:1], []) + [inp]",
        "",
    ),
}


@pytest.mark.parametrize(("snippet", "fragment", "hint"), ERRORS.values(), ids=ERRORS.keys())
def test_unsupported_loop_code_is_a_source_error(snippet: str, fragment: str, hint: str) -> None:
    with pytest.raises(SourceError) as error:
        compile_source(HEADER + textwrap.dedent(snippet).lstrip("\n"), "l.py")
    message = error.value.message
    assert fragment in message, message
    assert hint in message, message


ACCEPTED = {
    "fresh copy changed then returned": """
        @machine(init=S({}, []))
        def m(inp: str, s: S) -> tuple[S, int]:
            items = dict(s.items)
            items[inp] = len(items)
            return replace(s, items=items), len(items)
        """,
    "stored after the last change": """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, int]:
            xs = list(s.xs)
            xs.append(inp)
            t = S(s.items, xs)
            return t, len(xs)
        """,
    "copied afresh in each iteration": """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, list[list[int]]]:
            rows = []
            for x in s.xs:
                row = [x]
                row.append(inp)
                rows.append(row)
            return s, rows
        """,
    "own key updated while looping": """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, int]:
            items = dict(s.items)
            for k in items:
                items[k] = items[k] + inp
            return S(items, s.xs), 0
        """,
}


@pytest.mark.parametrize("snippet", ACCEPTED.values(), ids=ACCEPTED.keys())
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_changes_of_fresh_copies_are_accepted(snippet: str, data: st.DataObject) -> None:
    found = compile_source(HEADER + textwrap.dedent(snippet).lstrip("\n"))
    m = found["m"]
    assert isinstance(m, Machine)
    agrees(m, data.draw(values(m.input_schema)), data.draw(values(m.state_schema)))


#: Resets of empty collections, a stored row replaced on every path, reversed in zip.
RESETS_AND_ROWS = {
    "empty list reset in a loop": """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, list[int]]:
            acc = []
            for x in s.xs:
                if x < inp:
                    acc = []
                else:
                    acc.append(x)
            return s, acc
        """,
    "empty dict reset in a loop": """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, int]:
            d = {}
            for x in s.xs:
                if x < inp:
                    d = {}
                else:
                    d[x] = inp
            return s, len(d)
        """,
    "empty list on one path of an if": """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, int]:
            if inp > 0:
                row = []
            else:
                row = [inp, 1]
            return s, len(row)
        """,
    "empty list before the loop, a list in it": """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, int]:
            acc = []
            for x in s.xs:
                acc = [x, inp]
            return s, len(acc)
        """,
    "stored, then a fresh value on every path": """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, list[list[int]]]:
            rows: list[list[int]] = []
            row: list[int] = []
            for x in s.xs:
                if x < 0:
                    continue
                row.append(x)
                if x % 3 == inp % 3:
                    rows.append(row)
                    if len(row) > 2:
                        row = [x]
                    else:
                        row = []
            rows.append(row)
            return s, rows
        """,
    "rows of rows, none annotated": """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, int]:
            rows = []
            row = []
            for x in s.xs:
                if x % 4 == inp % 4:
                    rows.append(row)
                    row = []
                else:
                    row.append(x)
            return s, len(rows) * 100 + len(row)
        """,
    "zip with reversed": """
        @machine(init=S({}, []))
        def m(inp: int, s: S) -> tuple[S, list[int]]:
            out = [a - b for a, b in zip(s.xs, reversed(s.xs))]
            for i, x in enumerate(reversed(s.xs), inp % 5):
                out.append(i * x)
            return s, out
        """,
}


@pytest.mark.parametrize("snippet", RESETS_AND_ROWS.values(), ids=RESETS_AND_ROWS.keys())
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_resets_and_fresh_rows_mean_what_python_means(snippet: str, data: st.DataObject) -> None:
    found = compile_source(HEADER + textwrap.dedent(snippet).lstrip("\n"))
    m = found["m"]
    assert isinstance(m, Machine)
    agrees(m, data.draw(values(m.input_schema)), data.draw(values(m.state_schema)))


def test_loops_nested_too_deep_are_a_source_error() -> None:
    """Folds nest at most MAX_FOLD_NESTING deep; deeper is refused before the verifier."""
    body = "total = 0\n"
    indent = ""
    for depth in range(9):
        body += f"{indent}for i{depth} in inp:\n"
        indent += "    "
    body += f"{indent}total += 1\nreturn total, 0\n"
    source = "@machine(init=0)\ndef m(inp: list[int], s: int) -> tuple[int, int]:\n"
    source += textwrap.indent(body, "    ")
    with pytest.raises(SourceError, match="nests its loops 9 deep, more than the 8"):
        compile_source(source)
