"""WebSocket handshakes are refused: a Cocaine session cannot carry a WebSocket, and an app that
saw the handshake as a plain GET would answer it wrongly (404, or a page) without a word."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cocaine_http.dev.profile import Profile
from cocaine_http.errors import BadRequestError
from cocaine_http.http import parse_request
from cocaine_http.http.request import WEBSOCKET_REFUSED
from cocaine_http.protocol.dialect import pack
from tests.plugins.devruntime import wait_for

HANDSHAKE = [[b"Host", b"h"], [b"Connection", b"Upgrade"], [b"Upgrade", b"websocket"],
             [b"Sec-WebSocket-Version", b"13"], [b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZQ=="]]


def test_a_websocket_handshake_is_a_400_with_the_reason() -> None:
    """parse_request refuses it with 400 and a reason that says why."""
    frame = pack([b"GET", b"/ws", b"1.1", HANDSHAKE, b""])

    with pytest.raises(BadRequestError) as caught:
        parse_request(frame)

    assert (caught.value.status, caught.value.reason) == (400, WEBSOCKET_REFUSED)


def test_other_upgrades_are_left_to_the_app() -> None:
    """Only a WebSocket upgrade is refused (an h2c offer is ignored by the app as usual)."""
    frame = pack([b"GET", b"/", b"1.1", [[b"Host", b"h"], [b"Upgrade", b"h2c"]], b""])

    assert parse_request(frame).headers[1] == (b"upgrade", b"h2c")


@pytest.mark.parametrize("target", ["examples.fastapi_app:app", "examples.flask_app.app:app"])
async def test_an_app_under_the_dev_runtime_answers_400_and_the_worker_says_why(
    dev_app_runtime: Any, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The client gets 400 with the reason; the worker logs the refusal."""
    runtime = await dev_app_runtime(target, profile=Profile(log_output=True))
    async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
        response = await client.get("/ws", headers={k.decode(): v.decode()
                                                    for k, v in HANDSHAKE[1:]})

    assert response.status_code == 400
    assert "WebSocket upgrade refused" in response.text
    await wait_for(lambda: any("WebSocket upgrade refused" in r.getMessage()
                               and r.levelname == "WARNING" for r in caplog.records))
