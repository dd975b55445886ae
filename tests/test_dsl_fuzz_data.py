"""Mutated sources of the examples with strings, lists, dicts and loops: the compiler answers
with a machine or with a SourceError, never with another exception, and whatever compiles still
means what its Python means (traps included)."""

from __future__ import annotations

import inspect
import io
import re
import tokenize
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl_oracle import agrees, values
from hotswap.dsl import Machine, Migration, compile_source
from hotswap.errors import SourceError
from hotswap.examples import cart, leaderboard, sessions

EXAMPLES: list[ModuleType] = [cart, leaderboard, sessions]
SOURCES = {m.__name__.rsplit(".", 1)[-1]: inspect.getsource(m) for m in EXAMPLES}


def _tokens(text: str) -> list[str]:
    kinds = (tokenize.NAME, tokenize.OP, tokenize.NUMBER, tokenize.STRING)
    return [
        t.string for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type in kinds
    ]


@st.composite
def mutants(draw: st.DrawFn) -> str:
    """An example's source with one to three small edits: a line dropped or duplicated, or one
    word, operator or literal replaced by another from the same file."""
    text = SOURCES[draw(st.sampled_from(sorted(SOURCES)))]
    words = sorted(set(_tokens(text)))
    for _ in range(draw(st.integers(1, 3))):
        lines = text.splitlines(keepends=True)
        kind = draw(st.sampled_from(["drop", "duplicate", "replace", "replace"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "drop":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        else:
            found = list(re.finditer(r"\w+|[^\w\s]+", lines[i]))
            if found:
                m = draw(st.sampled_from(found))
                word = draw(st.sampled_from(words))
                lines[i] = lines[i][: m.start()] + word + lines[i][m.end() :]
        text = "".join(lines)
    return text


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=mutants(), data=st.data())
def test_mutated_sources_compile_or_raise_source_errors(source: str, data: st.DataObject) -> None:
    """Only a SourceError escapes (an InternalError or any other exception is a bug); a mutant
    that compiles agrees with its Python function."""
    try:
        found = compile_source(source)
    except SourceError:
        return
    for m in found.values():
        if isinstance(m, Machine):
            inp = data.draw(values(m.input_schema, size=2))
            state = data.draw(values(m.state_schema, size=2))
            agrees(m, inp, state)
        elif isinstance(m, Migration):
            agrees(m, data.draw(values(m.schemas["old"], size=2)))
