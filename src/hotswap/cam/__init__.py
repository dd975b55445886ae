"""How a machine runs: CAM instructions, the compiler from terms, the verifier, the reference VM,
the fast path (verified code turned into Python source), and the canonical module format.

This layer is pure: it never does network I/O.
"""
