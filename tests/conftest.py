"""Fixtures shared across the suite live in tests/plugins/, one module per area.

Property tests take their example counts from the Hypothesis profile, never from the test:
`default` for everyday runs, `quick` while iterating, `thorough` for a long hunt. Pick one with
HYPOTHESIS_PROFILE=<name> (or pytest's `--hypothesis-profile <name>`).
"""

import os

from hypothesis import HealthCheck, settings

pytest_plugins = [
    "tests.plugins.codec",
    "tests.plugins.worker",
    "tests.plugins.devruntime",
    "tests.plugins.services",
    "tests.plugins.http",
    "tests.plugins.apps",
    "tests.plugins.py2",
    "tests.plugins.chaos",
    "tests.plugins.proxy",
]

# Oracle and parity tests build large inputs: no deadline, and slow generation is expected.
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("default", max_examples=500, **_COMMON)
settings.register_profile("quick", max_examples=100, **_COMMON)
settings.register_profile("thorough", max_examples=10_000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
