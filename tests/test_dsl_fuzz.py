"""Mutated machine sources: the compiler answers with a machine or with a SourceError, never
with a Python exception, and whatever compiles still means what its Python means."""

from __future__ import annotations

import inspect
import tokenize
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotswap.dsl import Machine, compile_source
from hotswap.errors import SourceError
from hotswap.examples import bank, breaker, counter
from strategies import mutated_sources, outcome, python_outcome, python_values

EXAMPLES: list[ModuleType] = [counter, bank, breaker]
SOURCES = {m.__name__.rsplit(".", 1)[-1]: inspect.getsource(m) for m in EXAMPLES}


def mutants() -> st.SearchStrategy[str]:
    """An example's source with one to three small edits (``strategies.mutated_sources``)."""
    return mutated_sources(SOURCES, (tokenize.NAME, tokenize.OP, tokenize.NUMBER), 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
            inp = data.draw(python_values(m.input_schema, small=True))
            state = data.draw(python_values(m.state_schema, small=True))
            assert outcome(m.run, inp, state) == python_outcome(m.__wrapped__, inp, state)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_example_sources_compile_from_text(name: str) -> None:
    """Each example compiles from its source text alone, to the same modules."""
    found = compile_source(SOURCES[name])
    module = next(m for m in EXAMPLES if m.__name__.endswith(name))
    for key, value in found.items():
        assert value.identity == getattr(module, key).identity
