"""Test configuration: Hypothesis profiles.

Locally every run draws new examples, to keep finding bugs. Under CI (``CI=true``) the examples
are derived from each test's name, so a landing is never blocked by a property failure nobody
has seen before, and no deadline applies, since CI machines are shared and slow unevenly.
A property without its own count draws 60 examples (Hypothesis's default is 100), which keeps
the whole suite within its three minutes; ``make fuzz`` and the long runs go further.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True, max_examples=60)
#: ``HYPOTHESIS_EXAMPLES=2000 pytest ...`` for a longer run of the properties that use the default.
settings.register_profile(
    "dev", deadline=None, max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "60"))
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` (a minute, some of them) first: with the run spread over the
    cores, one starts on them while the others share the rest, instead of one being left
    with a long test at the end."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
