"""Memory held by in-flight ASGI sessions in a real worker process."""

from __future__ import annotations

from typing import Any

from cocaine_http.dev.profile import Profile
from tests.plugins.apps import ROOT, frame, rss_kib, worker_pids
from tests.plugins.devruntime import app_command, enqueue, wait_for

IDLE_SESSIONS = 1000


async def test_1000_idle_sessions_grow_worker_by_at_most_16_mib(
    dev_runtime_factory: Any,
) -> None:
    """A worker holding 1000 open ASGI sessions (head sent, app waiting) grows ≤ 16 MiB."""
    profile = Profile(pool_limit=1, concurrency=IDLE_SESSIONS + 10,
                      queue_limit=2 * IDLE_SESSIONS)
    runtime = await dev_runtime_factory(
        app_command("tests.workers.http_apps:idle_asgi", "--no-access-log"),
        profile=profile, workdir=str(ROOT), services=False,
    )
    warm = [enqueue(runtime.engine, "http", frame(uri="/quick")) for _ in range(50)]
    for sink in warm:
        await sink.wait()
    (pid,) = worker_pids(runtime)
    base = rss_kib(pid)

    sinks = [enqueue(runtime.engine, "http", frame(uri="/idle")) for _ in range(IDLE_SESSIONS)]
    await wait_for(lambda: all(sink.chunks for sink in sinks), timeout=60)
    grown = rss_kib(pid) - base

    assert not any(sink.ended.is_set() for sink in sinks)
    assert grown <= 16 * 1024, f"{IDLE_SESSIONS} idle sessions grew the worker by {grown} KiB"
