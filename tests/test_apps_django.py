"""The Django example through the dev runtime's HTTP front, via wsgi.py and asgi.py, compared
with Django's test client."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

import examples.django_project.wsgi  # noqa: F401  (configures Django for the test client)
from django.test import Client
from tests.plugins.apps import assert_same_response

TOKEN = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture(params=["wsgi", "asgi"])
async def client(request: pytest.FixtureRequest, app_runtime: Any) -> Any:
    """An httpx client talking to the Django example, served through wsgi.py or asgi.py."""
    runtime = await app_runtime(f"examples.django_project.{request.param}:application")
    async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as c:
        yield c


def reference(path: str) -> Any:
    """The same GET through Django's own test client."""
    response = Client(enforce_csrf_checks=True).get(path)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    if hasattr(response, "close"):
        response.close()
    return response, body


class TestDjangoExample:
    @pytest.mark.parametrize("path", ["/", "/api/items/42/?q=find", "/stream/?n=9", "/file/",
                                      "/no/such/page/"])
    async def test_get_matches_test_client(self, client: Any, path: str) -> None:
        """Plain, JSON, streaming, file and 404 responses equal the test client's."""
        real = await client.get(path)

        ref, body = reference(path)
        assert_same_response(real, ref.status_code, ref.headers, body)

    async def test_form_with_csrf_round_trip(self, client: Any) -> None:
        """The form page sets a CSRF cookie; posting it back with the token is accepted."""
        page = await client.get("/form/")
        token = TOKEN.search(page.content)
        assert page.status_code == 200 and token is not None

        accepted = await client.post("/form/", data={
            "csrfmiddlewaretoken": token.group(1).decode(), "name": "Ann", "message": "hi",
        })

        assert accepted.status_code == 200
        assert accepted.json() == {"thanks": "Ann"}

    async def test_post_without_csrf_token_is_forbidden(self, client: Any) -> None:
        """Without the token Django's CSRF middleware answers 403, as under the test client."""
        real = await client.post("/form/", data={"name": "Ann", "message": "hi"})

        ref = Client(enforce_csrf_checks=True).post("/form/", {"name": "Ann", "message": "hi"})
        assert real.status_code == ref.status_code == 403

    async def test_admin_login_page_renders(self, client: Any) -> None:
        """The admin login page renders with its form, as under the test client."""
        real = await client.get("/admin/login/")

        ref, body = reference("/admin/login/")
        assert real.status_code == ref.status_code == 200
        assert real.headers["content-type"] == ref.headers["content-type"]
        assert b'id="login-form"' in real.content and b'id="login-form"' in body
