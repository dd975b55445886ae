"""Mutated sources of the examples with strings, lists, dicts and loops: the compiler answers
with a machine or with a SourceError, never with another exception, and whatever compiles still
means what its Python means (traps included)."""

from __future__ import annotations

import inspect
import tokenize
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl_oracle import agrees, values
from hotswap.dsl import Machine, Migration, compile_source
from hotswap.errors import SourceError
from hotswap.examples import cart, leaderboard, sessions
from strategies import mutated_sources

EXAMPLES: list[ModuleType] = [cart, leaderboard, sessions]
SOURCES = {m.__name__.rsplit(".", 1)[-1]: inspect.getsource(m) for m in EXAMPLES}


def mutants() -> st.SearchStrategy[str]:
    """An example's source with one to three small edits, string literals among the words
    swapped in, replacements twice as likely (``strategies.mutated_sources``)."""
    return mutated_sources(
        SOURCES, (tokenize.NAME, tokenize.OP, tokenize.NUMBER, tokenize.STRING), 2
    )


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
