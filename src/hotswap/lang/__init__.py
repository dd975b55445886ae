"""What a machine means: types, terms, type checking, optimisation and the reference evaluator.

This layer is pure: it never does I/O.
"""
