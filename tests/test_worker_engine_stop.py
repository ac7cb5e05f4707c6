"""What the worker makes of its engine closing the socket without a terminate: the v0.12
runtime's way to stop (a clean exit), a lost connection under v0.11."""

from __future__ import annotations

import asyncio

import pytest

from cocaine_http.aio.worker import EXIT_CONNECTION_LOST, EXIT_OK, Worker
from cocaine_http.protocol.dialect import V0_11, V0_12
from tests.plugins.worker import UUID, Engine, worker_argv


@pytest.mark.parametrize(("dialect", "expected"), [(V0_12, EXIT_OK),
                                                   (V0_11, EXIT_CONNECTION_LOST)],
                         ids=["v0.12", "v0.11"])
async def test_engine_eof(tmp_path, dialect, expected) -> None:
    """The engine closes the socket: v0.12 exits 0 after the shutdown hooks ran, v0.11 exits
    EXIT_CONNECTION_LOST (its engine always sends terminate before closing)."""
    engine = await Engine(str(tmp_path / "engine.sock"), dialect).start()
    argv = worker_argv(engine.path, UUID, *(["--protocol", "1"] if dialect is V0_12 else []))
    worker = Worker(argv)
    hooks: list[str] = []

    async def shutdown() -> None:
        hooks.append("shutdown")

    worker.shutdown_hooks.append(shutdown)
    task = asyncio.get_running_loop().create_task(worker.serve())
    try:
        await engine.connected()
        await engine.close()
        code = await asyncio.wait_for(task, 10)
    finally:
        await engine.close()

    assert code == expected
    assert hooks == ["shutdown"]
