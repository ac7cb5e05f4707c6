"""Service client throughput: storage.read (100 B, 1 MiB) and logger messages per second.

The DevServices run in a subprocess, so the CPU time measured here (time.process_time) is the
client's own: parsing replies, unpacking, futures and timers. `calls/s` is wall-clock.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

SERVER = """
import asyncio, sys
from cocaine_http.dev.services import DevServices

async def main():
    services = DevServices(locator_port=0)
    await services.start()
    services.storage.write("bench", "small", b"x" * 100, [])
    services.storage.write("bench", "large", b"y" * (1 << 20), [])
    print("%s:%d" % services.locator_endpoint, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await services.close()

asyncio.run(main())
"""


async def _reads(storage, key: str, total: int, concurrency: int) -> tuple[float, float]:
    async def worker(n: int) -> None:
        for _ in range(n):
            await storage.read("bench", key)

    per = total // concurrency
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(per) for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    calls = per * concurrency
    return calls / wall, cpu / calls * 1e6


async def _logger(client, total: int) -> tuple[float, float]:
    logger = client.logger("app/bench", echo=False, buffer_size=total)
    await logger.wait_ready(10)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(total):
        logger.info("message %d", i)
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the batched writes go out
    await logger._svc.verbosity()  # barrier: the server has handled every emit before this
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return total / wall, cpu / total * 1e6


async def _run(locator: str) -> list[tuple[str, float, float]]:
    from cocaine_http.services import Client

    rows = []
    async with Client(locator) as client:
        storage = await client.service("storage")
        await storage.read("bench", "small")
        for label, key, total, conc in [
            ("storage.read 100 B, 1 in flight", "small", 5000, 1),
            ("storage.read 100 B, 64 in flight", "small", 40000, 64),
            ("storage.read 1 MiB, 1 in flight", "large", 200, 1),
            ("storage.read 1 MiB, 8 in flight", "large", 400, 8),
        ]:
            rate, cpu = await _reads(storage, key, total, conc)
            rows.append((label, rate, cpu))
        rate, cpu = await _logger(client, 100000)
        rows.append(("logger.info (fire and forget)", rate, cpu))
    return rows


def main() -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        locator = server.stdout.readline().strip()
        rows = asyncio.run(_run(locator))
        from cocaine_http import codec

        print(f"client: asyncio loop, codec {codec.IMPLEMENTATION}; "
              f"services in a subprocess at {locator}")
        print(f"{'case':<36} {'calls/s':>12} {'client CPU/call':>18}")
        for label, rate, cpu in rows:
            print(f"{label:<36} {rate:>12,.0f} {cpu:>15.1f} us")
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    main()
