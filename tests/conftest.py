"""Test configuration: Hypothesis profiles.

Locally every run draws new examples, to keep finding bugs. Under CI (``CI=true``) the examples
are derived from each test's name, so a landing is never blocked by a property failure nobody
has seen before, and no deadline applies, since CI machines are shared and slow unevenly.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
