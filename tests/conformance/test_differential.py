"""The same requests to each app behind the real tornado proxy and under `cocaine-http dev`:
status, headers as the client received them, and body must match, but for the differences
docs/dev-runtime.md lists (each asserted as such in differential.view)."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conformance.client import ClientTimeout, ConnectionDropped, node_get, request
from tests.conformance.differential import (
    CASES,
    DIFFERENCES,
    NO_BODY,
    Case,
    app_headers,
    view,
)
from tests.conformance.realruntime import REPO


def _both(fronts, case: Case, **kwargs):
    urls = fronts(case.app)
    return {front: request(url, case.method, case.target, headers=case.headers, body=case.body,
                           **kwargs) for front, url in urls.items()}


def _fixer(fronts, case: Case):
    ports = [int(re.search(r":(\d+)/", url).group(1)) for url in fronts(case.app).values()]

    def fix(text: str) -> str:
        for port in ports:
            text = text.replace(f"127.0.0.1:{port}", "127.0.0.1:<port>")
        for pattern in case.masks:
            text = re.sub(pattern, "<masked>", text)
        return text

    return fix


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_same_reply_behind_both_fronts(fronts, case):
    replies = _both(fronts, case)
    fix = _fixer(fronts, case)
    head = case.method == "HEAD"
    real, dev = (view(replies[f], case, f, head, fix) for f in ("real", "dev"))
    # The case names exactly the differences it shows (view asserted each of them).
    assert ("no-body-length" in case.expect) == (head or real.status in NO_BODY)

    if "header-order" in case.expect:
        # header-order: tornado rebuilds the request headers (its own order and case); the
        # app must still see the same set, and no cookie copy among them.
        assert (real.status, dev.status) == (200, 200), (real.body, dev.body)
        seen_real, seen_dev = (app_headers(v.body) for v in (real, dev))
        assert seen_real == seen_dev
        assert not {n for n, _ in seen_real} & {"x-forwarded-for", "plain", "", "a:b", "q"}
        assert [v for n, v in seen_real if n == "host"] == ["127.0.0.1:<port>"]
        body_real, body_dev = (json.loads(v.body) for v in (real, dev))
        for body in (body_real, body_dev):
            body.pop("headers")
        assert body_real == body_dev
        real.body = dev.body = b""
    assert (real.status, real.headers) == (dev.status, dev.headers)
    assert real.body == dev.body


def test_every_case_names_only_documented_differences():
    for case in CASES:
        assert set(case.expect) <= set(DIFFERENCES), case.id


def test_differences_are_documented():
    """Every id in DIFFERENCES is a row of docs/dev-runtime.md, and every row is here."""
    text = (REPO / "docs" / "dev-runtime.md").read_text()
    section = text.split("## Differences from the real runtime", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, re.M))
    assert documented == set(DIFFERENCES)


def test_twenty_concurrent_requests(fronts):
    """20 requests at once to each front, to a WSGI and an ASGI app, same answers."""
    def fetch(args):
        app, target = args
        replies = {f: request(url, "GET", target) for f, url in fronts(app).items()}
        return {f: (r.status, r.body) for f, r in replies.items()}

    jobs = [("flask", f"/json?i={i}") if i % 2 else ("rawasgi", f"/stream?n={i}")
            for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(fetch, jobs))

    for (app, target), result in zip(jobs, results):
        assert result["real"] == result["dev"], (app, target)
        assert result["real"][0] == 200


@pytest.mark.parametrize("app, target", [("rawasgi", "/fail-after"),
                                         ("rawwsgi", "/raise-after")])
def test_failure_after_the_head(fronts, app, target):
    """error-after-head: tornado buffers, so it can still answer 502; the dev front already
    sent the head and drops the connection after the partial body, as the native proxy does."""
    urls = fronts(app)

    real = request(urls["real"], "GET", target)
    with pytest.raises(ConnectionDropped, match="mid-body"):
        request(urls["dev"], "GET", target)

    assert real.status == 502
    assert real.body.startswith(b"Application error: ")
    assert real.framing == [(b"content-length", str(len(real.body)).encode())]


#: Statuses missing from Python 2's httplib.responses (a sample: the common ones).
UNKNOWN = [207, 226, 308, 418, 422, 425, 428, 429, 431, 451]


def test_unknown_statuses_hang_behind_tornado_and_warn_under_dev(fronts, dev):
    """unknown-status: the real proxy never answers them (a short timeout shows it); the dev
    front answers and logs a WARNING that names the status."""
    urls = fronts("rawasgi")

    def real_outcome(status):
        try:
            return request(urls["real"], "GET", f"/status/{status}", timeout=3).status
        except ClientTimeout:
            return "timeout"

    with ThreadPoolExecutor(len(UNKNOWN)) as pool:
        real = list(pool.map(real_outcome, UNKNOWN))
    answered = [request(urls["dev"], "GET", f"/status/{s}").status for s in UNKNOWN]

    assert real == ["timeout"] * len(UNKNOWN)
    assert answered == UNKNOWN
    log = dev("rawasgi").log()
    for status in UNKNOWN:
        assert re.search(rf"WARNING.*status {status}, which the v0.11 tornado proxy cannot", log)


@pytest.mark.parametrize("app, target, status", [
    ("flask", "/error", 418),  # the example's error handler answers 418
    ("fastapi", "/items/not-a-number", 422),  # FastAPI's validation errors
])
def test_example_statuses_the_proxy_cannot_answer(fronts, app, target, status):
    urls = fronts(app)

    with pytest.raises(ClientTimeout):
        request(urls["real"], "GET", target, timeout=3)
    assert request(urls["dev"], "GET", target).status == status


def test_dev_warning_list_is_python2_httplib(py2_statuses):
    from cocaine_http.dev.front import TORNADO_STATUSES

    assert TORNADO_STATUSES == py2_statuses


def test_node_http_reads_every_app_behind_both_fronts(fronts):
    """Node's http parser is strict (a doubled Content-Length is HPE_UNEXPECTED_CONTENT_LENGTH):
    one GET per route of every app, through both fronts."""
    routes = {"flask": ["/", "/json", "/stream", "/download?size=100000", "/redirect"],
              "djwsgi": ["/", "/file/", "/stream/"], "djasgi": ["/", "/file/", "/stream/"],
              "fastapi": ["/", "/stream"],
              "rawasgi": ["/hop", "/big?size=300000", "/status/204", "/cookies"],
              "rawwsgi": ["/framing", "/generator", "/write", "/empty"]}
    urls = [base + route for app, paths in routes.items() for base in fronts(app).values()
            for route in paths]

    results = node_get(urls)

    failed = {url: r for url, r in results.items() if "error" in r}
    assert failed == {}
    assert len(results) == len(urls)


@pytest.mark.parametrize("app, target", [("flask", "/stream?n=20"), ("rawasgi", "/big?size=70000"),
                                         ("djasgi", "/")])
def test_http10_client(fronts, app, target):
    """http10-close-delimited: to an HTTP/1.0 client tornado answers HTTP/1.0 with its
    Content-Length; the dev front cannot chunk for 1.0, so it sends no framing header and
    ends the body by closing the connection (h11's rule, as any streaming front must)."""
    urls = fronts(app)

    real = request(urls["real"], "GET", target, version="1.0")
    dev = request(urls["dev"], "GET", target, version="1.0")

    assert (real.http_version, dev.http_version) == (b"1.0", b"1.1")
    assert real.framing == [(b"content-length", str(len(real.body)).encode())]
    assert dev.framing == []
    assert dev.all("connection") == ["close"]
    assert (real.status, real.body) == (dev.status, dev.body)
