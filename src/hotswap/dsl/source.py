"""Source text of machines: finding a function's definition and reporting errors at a position.

Every error in a machine's source is a :class:`hotswap.errors.SourceError` carrying the file,
line and column and the offending line, which the error renders with a caret under the column
(lark's style). Columns are counted in characters, not the UTF-8 bytes ``ast`` reports.
"""

from __future__ import annotations

import ast
import itertools
import linecache
from dataclasses import dataclass
from functools import lru_cache
from types import FunctionType

from hotswap.errors import SourceError

_counter = itertools.count(1)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """The text of one file (or one string of source), split into lines."""

    filename: str
    lines: tuple[str, ...]

    def line(self, lineno: int) -> str:
        if 1 <= lineno <= len(self.lines):
            return self.lines[lineno - 1].rstrip("\r\n")
        return ""

    def error(self, node: ast.AST | None, message: str) -> SourceError:
        """A :class:`SourceError` at ``node`` (at the start of the file if ``node`` is None)."""
        lineno = getattr(node, "lineno", 0) if node is not None else 0
        byte_col = getattr(node, "col_offset", 0) if node is not None else 0
        text = self.line(lineno)
        column = len(text.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))
        return SourceError(
            message, filename=self.filename, line=lineno, column=column, source_line=text
        )


@dataclass(frozen=True, slots=True)
class FunctionSource:
    """A function's definition: the file it is in and its ``def`` node."""

    file: SourceFile
    node: ast.FunctionDef


@lru_cache(maxsize=64)
def _parse(filename: str, text: str) -> ast.Module | None:
    try:
        return ast.parse(text, filename=filename)
    except (SyntaxError, ValueError):
        return None


def _first_line(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    return min([d.lineno for d in node.decorator_list] + [node.lineno])


def function_source(fn: FunctionType) -> FunctionSource:
    """Locate ``fn``'s ``def`` in its file; :class:`SourceError` if the source is unavailable.

    The whole file is parsed (and cached), so positions are the file's own and nested functions
    (machines defined inside tests) keep their real columns.
    """
    code = fn.__code__
    filename = code.co_filename
    lines = tuple(linecache.getlines(filename, fn.__globals__))
    file = SourceFile(filename, lines)
    tree = _parse(filename, "".join(lines)) if lines else None
    if tree is not None:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name == fn.__name__
                and _first_line(node) == code.co_firstlineno
            ):
                if isinstance(node, ast.AsyncFunctionDef):
                    raise file.error(node, f"async function {fn.__name__} cannot be a machine")
                return FunctionSource(file, node)
    name = getattr(fn, "__qualname__", fn.__name__)
    msg = (
        f"the source of {name} is not available (define machines in a file, or use "
        "hotswap.dsl.compile_source for source text)"
    )
    raise SourceError(msg, filename=filename, line=code.co_firstlineno)


def register_source(text: str, filename: str | None = None) -> SourceFile:
    """Make ``text`` visible to :mod:`linecache` (and so to :mod:`inspect` and tracebacks).

    Without a ``filename`` a unique ``<hotswap-source-N>`` is chosen.
    """
    name = filename if filename is not None else f"<hotswap-source-{next(_counter)}>"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    # An entry whose mtime is None is never invalidated by linecache.checkcache.
    linecache.cache[name] = (len(text), None, lines, name)
    return SourceFile(name, tuple(lines))
