"""Response bodies that are not bytes, from real worker processes (tests/workers/body_apps.py),
WSGI on the default thread pool and inline, and ASGI, seen from the engine side: a str, an int
or a strided view is the app's error and gets a 500 with the reason logged (it used to end in
the framing, after the response's state had moved: the session was never answered); any other
bytes-like object is sent as its bytes, counted in bytes (an array's view used to be framed by
its item count, which desynchronised the whole connection). Each case is followed by a normal
request on the same connection, which must still be answered."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from tests.plugins.worker import Engine
from tests.test_chaos import get, started

WSGI = "tests.workers.body_apps:wsgi_app"
ASGI = "tests.workers.body_apps:asgi_app"
APPS = [pytest.param((WSGI,), id="wsgi-pool"), pytest.param((WSGI, "--threads", "0"),
                                                              id="wsgi-inline"),
        pytest.param((ASGI,), id="asgi")]
ARRAY = struct.pack("=II", 1, 2)


@pytest.mark.parametrize("target", APPS)
@pytest.mark.parametrize(("path", "reason"), [("/str", "must be bytes, not str"),
                                              ("/int", "must be bytes, not int"),
                                              ("/strided", "not a strided view")])
async def test_a_body_that_is_not_bytes_gets_a_500(
    target: tuple[str, ...], path: str, reason: str, engine: Engine,
    chaos_worker: Callable[..., Any],
) -> None:  # fmt: skip
    worker = await started(engine, chaos_worker, *target)
    status, _ = await get(engine, path)
    assert status == 500
    assert await get(engine, "/quick") == (200, b"ok")
    assert reason in worker.text


@pytest.mark.parametrize("target", APPS)
@pytest.mark.parametrize("path", ["/array", "/array-view"])
async def test_any_other_bytes_like_body_is_sent_as_its_bytes(
    target: tuple[str, ...], path: str, engine: Engine, chaos_worker: Callable[..., Any],
) -> None:  # fmt: skip
    await started(engine, chaos_worker, *target)
    assert await get(engine, path) == (200, ARRAY)
    assert await get(engine, "/quick") == (200, b"ok")
