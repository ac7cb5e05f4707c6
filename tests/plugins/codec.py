"""Shared pytest fixtures: codec.

`decoder_cls` runs a test once per decoder implementation (the C one and the Python reference),
so both are held to one suite (docs/design.md §7.1). Both are always tested, whatever
COCAINE_HTTP_PUREPYTHON says (that switch only picks `cocaine_http.codec.Decoder`), and the C
build is required: a missing extension fails the C parameter instead of skipping it.
"""

from __future__ import annotations

from typing import Any

import pytest

from cocaine_http.codec import _python

IMPLEMENTATIONS = ["c", "python"]


def load_decoder(name: str) -> type[Any]:
    """The decoder class of one implementation (ImportError if the C build is missing)."""
    if name == "python":
        return _python.Decoder
    from cocaine_http.codec import _c

    return _c.Decoder


@pytest.fixture(params=IMPLEMENTATIONS)
def decoder_cls(request: pytest.FixtureRequest) -> type[Any]:
    """Each decoder implementation in turn."""
    return load_decoder(request.param)


@pytest.fixture
def c_decoder_cls() -> type[Any]:
    """The C decoder class (fails, never skips, when the extension is not built)."""
    return load_decoder("c")
