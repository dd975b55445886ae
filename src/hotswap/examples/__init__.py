"""Example machines written in the DSL (and, in ``handbuilt``, directly as terms).

* ``counter``: the seed's counter, its version 2 and the migration between them.
* ``bank``: a bank account with deposits, refusable withdrawals and balance queries.
* ``breaker``: a circuit breaker, a version 2 with exponential back-off, and its migration.

Each module is plain Python: import it and call the machines as functions, or use their
compiled form (``.module``, ``.run``).
"""
