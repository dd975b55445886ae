"""Test configuration: Hypothesis profiles.

Locally every run draws new examples, to keep finding bugs. Under CI (``CI=true``) the examples
are derived from each test's name, so a landing is never blocked by a property failure nobody
has seen before, and no deadline applies, since CI machines are shared and slow unevenly.
A property without its own count draws 60 examples (Hypothesis's default is 100), which keeps
the whole suite within its three minutes; ``make fuzz`` and the long runs go further.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True, max_examples=60)
#: ``HYPOTHESIS_EXAMPLES=2000 pytest ...`` for a longer run of the properties that use the default.
settings.register_profile(
    "dev", deadline=None, max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "60"))
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
