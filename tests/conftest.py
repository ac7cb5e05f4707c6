"""Fixtures shared across the suite live in tests/plugins/, one module per area."""

pytest_plugins = [
    "tests.plugins.codec",
    "tests.plugins.worker",
    "tests.plugins.devruntime",
    "tests.plugins.services",
    "tests.plugins.http",
    "tests.plugins.apps",
]
