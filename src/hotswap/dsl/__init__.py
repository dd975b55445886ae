"""Typed Python to core terms: machines and migrations written as ordinary annotated functions.

The compiler reads a function's syntax with :mod:`ast` and emits terms of :mod:`hotswap.lang`;
the decorated function stays plain Python, the oracle its compiled form is tested against.
``docs/dsl.md`` describes the supported subset and the translation. Layout, one idea a module:

    source        finding a function's definition, errors with a caret
    schema        Python types as named core types; Python <-> core values
    annotations   annotation syntax and type objects -> schemas
    env           the context: variables as projection paths
    expressions   expressions -> terms (bidirectional typing, coercion into unions)
    patterns      match patterns read against a schema
    matching      match -> decision tree, exhaustiveness and reachability
    statements    blocks, assignment, if/match with join points, inlined calls
    compiler      entry points: functions, machines, migrations
    names         the names custom section and the nominal upgrade lint
    display       values shown and parsed by Python name
    api           @machine, @migration, compile_source
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
