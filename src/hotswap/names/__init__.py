"""Types by their Python names: schemas, the ``names`` custom section, display and the lint.

A module's identity covers only its structure; the Python names of its types (record and field
names, the order of a union's cases) travel beside it in the ``names`` custom section. This
package reads and writes that section and uses it, without any Python classes, to show and read
values by name and to compare two versions' names. The DSL writes the section, the node shows
its trace with it and the client converts values with it; none of them depends on another for
it.

    schema   Schema trees, their core types, conversion to and from Python values
    section  the section's canonical JSON codec, checked against a module's types
    display  values as Python expressions: render and parse (never eval)
    lint     nominal differences between two versions (``Incr | Count`` to ``Count | Incr``),
             and a migration's names against the states'
    pysource a version's types as importable dataclasses (``hotswap types``)
"""
