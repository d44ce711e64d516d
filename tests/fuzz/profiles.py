"""Hypothesis settings for the fuzz package: a bounded "ci" run and an on-demand "long" run.

The profile is picked by ``EDGEWARD_FUZZ`` (``ci`` by default, ``long`` for long runs), and
``EDGEWARD_FUZZ_EXAMPLES=N`` sets the number of examples of either outright. The
settings are applied per test through :func:`fuzz_settings` rather than loaded as the global
profile, so collecting this package never changes how the rest of the suite's properties run.

There is no deadline: examples that hit the size caps take longer than tiny ones, and a timing
threshold would make the outcome depend on machine load. The "ci" profile keeps no example
database (each run explores afresh); "long" keeps one under ``.hypothesis/`` (ignored by git),
so a failure found in a long run is replayed first by the next one.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

_SUPPRESSED = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
    HealthCheck.filter_too_much,
]

settings.register_profile(
    "edgeward-fuzz-ci",
    max_examples=500,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=_SUPPRESSED,
    print_blob=True,
)
settings.register_profile(
    "edgeward-fuzz-long",
    max_examples=20_000,
    deadline=None,
    database=DirectoryBasedExampleDatabase(".hypothesis/fuzz"),
    derandomize=False,
    suppress_health_check=_SUPPRESSED,
    print_blob=True,
)

PROFILE = (
    "edgeward-fuzz-long" if os.environ.get("EDGEWARD_FUZZ", "ci").lower() == "long" else "edgeward-fuzz-ci"
)
BASE = settings.get_profile(PROFILE)
if os.environ.get("EDGEWARD_FUZZ_EXAMPLES", "").isdigit():
    # A run of any length on demand: the examples of a weight-1 target.
    BASE = settings(BASE, max_examples=int(os.environ["EDGEWARD_FUZZ_EXAMPLES"]))


def fuzz_settings(weight: float = 1.0) -> settings:
    """The profile's settings with ``weight`` times its number of examples (cheap targets get more)."""
    return settings(BASE, max_examples=max(10, int(BASE.max_examples * weight)))
