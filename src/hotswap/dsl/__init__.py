"""Typed Python to core terms: machines and migrations written as ordinary annotated functions.

The compiler reads a function's syntax with :mod:`ast` and emits terms of :mod:`hotswap.lang`;
the decorated function stays plain Python, the oracle its compiled form is tested against.
``docs/dsl.md`` describes the supported subset and the translation. Layout, one idea a module:

    source        finding a function's definition, errors with a caret
    annotations   annotation syntax and type objects -> schemas
    functions     a DSL function's definition, scope and signature; the compilation session
    env           the context: variables as projection paths
    combinators   the term shapes emitted: injections, branching, coercion into unions
    dispatch      the compiler of one function: the one dispatch over statements, expressions
                  and calls, handing each construct to the module below that compiles it
    expressions   expressions -> terms (bidirectional typing, coercion into unions)
    calls         record construction, replace, abs/min/max, inlined calls of DSL functions
    statements    blocks, assignment, if/match with join points
    joins         continuations of a block: return, join points and what reached them
    flow          flow analysis of the syntax: what returns, what is assigned or read
    patterns      match patterns read against a schema
    matching      match -> decision tree, exhaustiveness and reachability
    compiler      entry points: functions, machines, migrations (checked terms)
    derive        migrations derived from the names of the old and new state types
    api           @machine, @migration, compile_source

Schemas (Python types as named core types), the names custom section, the nominal upgrade lint
and values shown by Python name live in :mod:`hotswap.names`; they are re-exported here.
"""

from hotswap.dsl.api import Machine, Migration, compile_source, machine, migration
from hotswap.dsl.compiler import (
    CompiledFunction,
    CompiledMachine,
    CompiledMigration,
    compile_function,
    compile_machine,
    compile_migration,
)
from hotswap.names.display import parse, parse_python, render, render_python
from hotswap.names.lint import nominal_differences
from hotswap.names.schema import (
    BoolSchema,
    Field,
    IntSchema,
    NoneSchema,
    RecordSchema,
    Schema,
    TupleSchema,
    UnionSchema,
    core_type,
    describe,
    from_core,
    to_core,
)
from hotswap.names.section import decode_names, encode_names, names_for

__all__ = [
    "BoolSchema",
    "CompiledFunction",
    "CompiledMachine",
    "CompiledMigration",
    "Field",
    "IntSchema",
    "Machine",
    "Migration",
    "NoneSchema",
    "RecordSchema",
    "Schema",
    "TupleSchema",
    "UnionSchema",
    "compile_function",
    "compile_machine",
    "compile_migration",
    "compile_source",
    "core_type",
    "decode_names",
    "describe",
    "encode_names",
    "from_core",
    "machine",
    "migration",
    "names_for",
    "nominal_differences",
    "parse",
    "parse_python",
    "render",
    "render_python",
    "to_core",
]
