"""`cocaine-http proxy` in front of the real cocaine-runtime v0.11, side by side with the tornado
proxy of cocaine-tools on the same runtime and the same deployed apps (docs/proxy.md).

The same requests go through both proxies and must get the same answers, but for the
differences docs/dev-runtime.md lists for our front (asserted each by `differential.view`, as
for `cocaine-http dev`, which runs the same front) and the forwarded headers our proxy sets.
Then what the tornado proxy gets wrong: statuses Python 2 does not know, whole-reply buffering
(a 1 GiB stream through ours in flat memory; a client that stops reading costs a bounded
buffer), framing headers, and X-Forwarded-* that any client may set. Last, an app redeployed
with `cocaine-http deploy` while our proxy holds a pooled connection to it.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conformance.client import ClientTimeout, ConnectionDropped, Reply, request
from tests.conformance.differential import CASES, NO_BODY, Case, app_headers, view
from tests.conformance.realruntime import PYTHON, REPO, OurProxy, RealRuntime, TornadoProxy

FORWARDING = {"x-forwarded-for", "x-forwarded-proto", "x-real-ip"}
GIB = 1024 ** 3
MIB = 1024 ** 2
#: The proxy's resident memory must stay under this whatever the size of a response.
RSS_BOUND_KIB = 200 * 1024


def _urls(proxy: TornadoProxy, ours: OurProxy, app: str) -> dict[str, str]:
    return {"real": f"{proxy.url}/{app}/http", "ours": f"{ours.url}/{app}/http"}


def _fixer(proxy: TornadoProxy, ours: OurProxy, case: Case) -> Callable[[str], str]:
    def fix(text: str) -> str:
        for port in (proxy.port, ours.port):
            text = text.replace(f"127.0.0.1:{port}", "127.0.0.1:<port>")
        for pattern in case.masks:
            text = re.sub(pattern, "<masked>", text)
        return text

    return fix


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_same_reply_through_both_proxies(proxy, ours, case):
    urls = _urls(proxy, ours, case.app)
    replies = {front: request(url, case.method, case.target, headers=case.headers,
                              body=case.body) for front, url in urls.items()}
    fix = _fixer(proxy, ours, case)
    head = case.method == "HEAD"
    real = view(replies["real"], case, "real", head, fix)
    mine = view(replies["ours"], case, "dev", head, fix)  # the dev front's differences
    assert ("no-body-length" in case.expect) == (head or real.status in NO_BODY)

    if "header-order" in case.expect:
        # The app sees the same header set, plus the forwarded headers our proxy sets from the
        # connection (the tornado proxy sets none).
        assert (real.status, mine.status) == (200, 200), (real.body, mine.body)
        seen_real, seen_mine = (app_headers(v.body) for v in (real, mine))
        assert [h for h in seen_mine if h[0] not in FORWARDING] == seen_real
        assert sorted(h for h in seen_mine if h[0] in FORWARDING) == [
            ("x-forwarded-for", "127.0.0.1"), ("x-forwarded-proto", "http"),
            ("x-real-ip", "127.0.0.1")]
        bodies = [json.loads(v.body) for v in (real, mine)]
        for body in bodies:
            body.pop("headers")
        assert bodies[0] == bodies[1]
        real.body = mine.body = b""
    assert (real.status, real.headers) == (mine.status, mine.headers)
    assert real.body == mine.body


def test_twenty_concurrent_requests(proxy, ours):
    def fetch(job):
        app, target = job
        replies = {f: request(url, "GET", target) for f, url in _urls(proxy, ours, app).items()}
        return {f: (r.status, r.body) for f, r in replies.items()}

    jobs = [("flask", f"/json?i={i}") if i % 2 else ("rawasgi", f"/stream?n={i}")
            for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(fetch, jobs))

    for job, result in zip(jobs, results):
        assert result["real"] == result["ours"], job
        assert result["ours"][0] == 200


@pytest.mark.parametrize("app, target", [("rawasgi", "/fail-after"),
                                         ("rawwsgi", "/raise-after")])
def test_failure_after_the_head(proxy, ours, app, target):
    """error-after-head: the tornado proxy buffers, so it can still answer 502; ours has sent
    the head already and closes the connection after the partial body."""
    urls = _urls(proxy, ours, app)

    real = request(urls["real"], "GET", target)
    with pytest.raises(ConnectionDropped, match="mid-body"):
        request(urls["ours"], "GET", target)

    assert real.status == 502


@pytest.mark.parametrize("status", [308, 422, 429])
def test_statuses_the_tornado_proxy_never_answers(proxy, ours, status):
    urls = _urls(proxy, ours, "rawasgi")

    with pytest.raises(ClientTimeout):
        request(urls["real"], "GET", f"/status/{status}", timeout=3)
    reply = request(urls["ours"], "GET", f"/status/{status}")

    assert reply.status == status
    assert reply.body == b"status\n"


@pytest.mark.parametrize("app, target, status", [("flask", "/error", 418),
                                                 ("fastapi", "/items/not-a-number", 422)])
def test_example_app_statuses(proxy, ours, app, target, status):
    urls = _urls(proxy, ours, app)

    with pytest.raises(ClientTimeout):
        request(urls["real"], "GET", target, timeout=3)
    assert request(urls["ours"], "GET", target).status == status


@pytest.mark.parametrize("app, target", [("rawwsgi", "/framing"), ("rawasgi", "/hop"),
                                         ("rawasgi", f"/big?size={MIB}"),
                                         ("flood", "/flood?size=100000")])
def test_exactly_one_framing_header(ours, app, target):
    """Whatever framing headers the app sends, the client gets one (the front's own)."""
    reply = request(f"{ours.url}/{app}/http", "GET", target)

    assert reply.status == 200
    assert len(reply.framing) == 1, reply.raw_headers
    name, value = reply.framing[0]
    assert name == b"transfer-encoding" and value == b"chunked" or (
        name == b"content-length" and int(value) == len(reply.body))


# -- memory -------------------------------------------------------------------------------------


class RssSampler:
    """Samples a process's RSS every 100 ms in a thread while it runs (a `with` block)."""

    def __init__(self, front: OurProxy) -> None:
        self.front = front
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.front.rss_kib())
            self._stop.wait(0.1)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _open_stream(front: OurProxy, target: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", front.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(f"GET /flood/http{target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                 .encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        assert data, head
        head += data
    return sock, head


def test_a_1gib_stream_goes_through_in_flat_memory(ours):
    """1 GiB from the app reaches the client whole while the proxy's RSS stays bounded:
    the response is streamed, never held (the tornado proxy holds it all)."""
    request(f"{ours.url}/flood/http", "GET", "/flood?size=1000")  # the app's pool is warm
    sock, head = _open_stream(ours, f"/flood?size={GIB}&chunk={256 * 1024}")
    with sock, RssSampler(ours) as rss:
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding: chunked" in head.lower()
        received = len(head) - head.index(b"\r\n\r\n") - 4
        tail = b""
        while True:
            data = sock.recv(1024 * 1024)
            if not data:
                break
            received += len(data)
            tail = (tail + data)[-16:]

    assert tail.endswith(b"\r\n0\r\n\r\n")
    assert received > GIB  # the body and its chunk framing
    assert max(rss.samples) < RSS_BOUND_KIB, (min(rss.samples), max(rss.samples))
    assert len(rss.samples) > 5


def test_a_client_that_stops_reading_costs_a_bounded_buffer(ours):
    """A client that reads the head of a 256 MiB stream and then nothing: the proxy holds at
    most its response buffer (16 MiB by default) for it, then drops the connection once the
    client has been silent for --client-idle-timeout (5 s here); the proxy serves on."""
    sock, _ = _open_stream(ours, f"/flood?size={256 * MIB}&chunk={64 * 1024}")
    before = ours.rss_kib()
    with sock, RssSampler(ours) as rss:
        time.sleep(7)  # not reading, past the 5 s idle timeout
        paused = list(rss.samples)
        received, started = 0, time.monotonic()
        try:
            while (data := sock.recv(1024 * 1024)):
                received += len(data)
        except ConnectionResetError:
            pass
        waited = time.monotonic() - started

    assert max(paused) < RSS_BOUND_KIB
    assert max(paused) - before < 64 * 1024, (before, max(paused))
    assert received < 256 * MIB  # dropped, not finished
    assert waited < 60
    assert request(f"{ours.url}/flood/http", "GET", "/where").status == 200


# -- forwarded headers --------------------------------------------------------------------------

SPOOF = [("X-Forwarded-For", "6.6.6.6"), ("X-Real-IP", "6.6.6.6"),
         ("X-Forwarded-Proto", "https"), ("X_Forwarded_For", "7.7.7.7"),
         ("Forwarded", "for=6.6.6.6")]


def _seen(reply: Reply) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in json.loads(reply.body)["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def test_forwarded_headers_are_not_spoofable_by_default(proxy, ours):
    """A client that is not a trusted proxy (here: connecting from 127.0.0.2, which the
    default --forwarded-allow-ips does not name) cannot choose the address the app sees;
    through the tornado proxy it can."""
    mine = request(f"{ours.url}/flood/http", "GET", "/echo", headers=SPOOF, source="127.0.0.2")
    theirs = request(f"{proxy.url}/flood/http", "GET", "/echo", headers=SPOOF,
                     source="127.0.0.2")

    seen = _seen(mine)
    assert seen["x-forwarded-for"] == ["127.0.0.2"]
    assert seen["x-real-ip"] == ["127.0.0.2"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert "forwarded" not in seen and "x_forwarded_for" not in seen
    assert json.loads(mine.body)["client"][0] == "127.0.0.2"
    assert json.loads(mine.body)["scheme"] == "http"
    # the tornado proxy passes the client's claims on as they came
    assert _seen(theirs)["x-forwarded-for"] == ["6.6.6.6"]
    assert json.loads(theirs.body)["client"][0] == "6.6.6.6"


def test_a_trusted_peer_extends_the_chain(ours):
    """127.0.0.1 is trusted by default (a proxy on the same host, uvicorn's default): its chain
    is kept and its own address appended."""
    reply = request(f"{ours.url}/flood/http", "GET", "/echo",
                    headers=[("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-Proto", "https")])

    seen = _seen(reply)
    assert seen["x-forwarded-for"] == ["198.51.100.7, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["https"]
    assert json.loads(reply.body)["scheme"] == "https"


REDEPLOYED = '''def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s"]
'''


def test_a_redeploy_closes_the_pooled_connection_and_the_new_app_serves(real: RealRuntime,
                                                                          tmp_path):
    """v0.11 stops an app by taking its service away, which closes the connections to it
    (unlike v0.12, which keeps them and refuses each enqueue): our proxy drops the endpoint,
    asks the locator again, and the next requests reach the new app."""
    folder = tmp_path / "redeploy11"
    folder.mkdir()
    (folder / "webapp.py").write_text(REDEPLOYED % "v1")
    cli = [PYTHON, "-m", "cocaine_http"]
    subprocess.run([*cli, "init", "webapp:app", "--dir", str(folder), "--python", PYTHON],
                   check=True, capture_output=True, cwd=REPO)

    def deploy() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, "deploy", str(folder), "--locator", real.locator],
                              capture_output=True, text=True, timeout=90, cwd=REPO)

    first = deploy()
    assert first.returncode == 0, first.stderr
    ours = OurProxy([real.locator], tmp_path, name="redeploy")
    ours.start()
    try:
        with httpx.Client(base_url=ours.url, timeout=30) as client:
            before = client.get("/redeploy11/http/")
            (folder / "webapp.py").write_text(REDEPLOYED % "v2")
            second = deploy()
            after = [client.get("/redeploy11/http/") for _ in range(5)]
    finally:
        ours.stop()

    assert second.returncode == 0, second.stderr
    assert (before.status_code, before.text) == (200, "v1")
    assert [(a.status_code, a.text) for a in after] == [(200, "v2")] * 5
    assert re.search(r"the connection to 127\.0\.0\.1:\d+ was lost", ours.log())
