"""Logger and CocaineHandler against the dev runtime's logging service."""

from __future__ import annotations

import asyncio
import io
import logging
import threading

from cocaine_http.dev.services import DevServices
from cocaine_http.services.logger import DEBUG, ERROR, INFO, WARNING, default_source
from cocaine_http.services.logging import CocaineHandler, cocaine_level
from cocaine_http.services import Client


async def wait_for_record(services: DevServices, message: str, timeout: float = 5.0) -> None:
    """Poll the logging service's records until `message` arrived (deadline, no fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not any(r[2] == message for r in services.log_records):
        assert asyncio.get_running_loop().time() < deadline, f"{message!r} never arrived"
        await asyncio.sleep(0.005)


class TestLogger:
    async def test_messages_reach_the_logging_service_with_source(self, dev_services,
                                                                  services_client):
        """info() emits [3, source, text] once the logger is connected."""
        logger = services_client.logger("app/echo", echo=False)

        assert await logger.wait_ready(5)
        logger.info("hello %s", "world")
        await wait_for_record(dev_services, "hello world")

        assert (INFO, "app/echo", "hello world") in dev_services.log_records
        assert logger.verbosity == DEBUG

    async def test_messages_above_verbosity_are_dropped_locally(self):
        """With verbosity 2 (warning), info and debug never leave the process."""
        services = DevServices(locator_port=0, verbosity=WARNING)
        await services.start()
        client = Client("%s:%d" % services.locator_endpoint)
        logger = client.logger("app/x", echo=False)
        try:
            assert await logger.wait_ready(5)
            logger.debug("d")
            logger.info("i")
            logger.warning("w")
            logger.error("end")
            await wait_for_record(services, "end")

            assert [r[2] for r in services.log_records] == ["w", "end"]
            assert not logger.enabled(INFO) and logger.enabled(ERROR)
        finally:
            await client.close()
            await services.close()

    async def test_buffers_while_disconnected_and_reports_drops(self):
        """With the locator down, messages are buffered (oldest dropped) and echoed; once it
        is back the buffer is flushed after a note with the drop count."""
        services = DevServices(locator_port=0)
        await services.start()
        host, port = services.locator_endpoint
        await services.close()
        echo = io.StringIO()
        client = Client(f"{host}:{port}")
        logger = client.logger("app/buf", buffer_size=3, stream=echo, retry_max=0.05)

        for i in range(5):
            logger.warning("m%d", i)
            await asyncio.sleep(0)
        buffered, dropped = logger.buffered, logger.dropped
        revived = DevServices(locator_port=port)
        await revived.start()
        try:
            assert await logger.wait_ready(10)
            await wait_for_record(revived, "m4")

            assert (buffered, dropped) == (3, 2)
            assert "[WARNING] app/buf: m0" in echo.getvalue()
            texts = [r[2] for r in revived.log_records]
            assert texts[0].startswith("2 log messages were dropped")
            assert texts[1:] == ["m2", "m3", "m4"]
        finally:
            await client.close()
            await revived.close()

    async def test_emit_never_raises_and_works_from_other_threads(self, dev_services,
                                                                  services_client):
        """emit from a thread is handed to the loop; a bad format string does not raise."""
        logger = services_client.logger("app/t", echo=False)
        assert await logger.wait_ready(5)

        thread = threading.Thread(target=lambda: logger.info("from %s %d", "thread"))
        thread.start()
        thread.join()
        logger.error("done")
        await wait_for_record(dev_services, "done")

        assert (INFO, "app/t", "from %s %d thread") in dev_services.log_records

    def test_default_source_comes_from_app_argument(self):
        """The default source is app/<--app>, else app/standalone."""
        assert default_source(["w", "--app", "echo", "--uuid", "u"]) == "app/echo"
        assert default_source(["w"]) == "app/standalone"


class TestCocaineHandler:
    def test_python_levels_map_to_cocaine_levels(self):
        """CRITICAL/ERROR -> 1, WARNING -> 2, INFO -> 3, DEBUG and below -> 4."""
        levels = [logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG, 5]

        assert [cocaine_level(lv) for lv in levels] == [1, 1, 2, 3, 4, 4]

    async def test_python_logging_reaches_cocaine(self, dev_services, services_client):
        """logging.getLogger(...) records go through the handler to the logging service."""
        handler = CocaineHandler(services_client.logger("app/py", echo=False))
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        pylog = logging.getLogger("tests.app")
        pylog.addHandler(handler)
        pylog.setLevel(logging.DEBUG)
        try:
            assert await handler.logger.wait_ready(5)
            pylog.warning("disk %d%% full", 93)
            logging.getLogger("cocaine_http.services").warning("internal")  # excluded
            pylog.error("last")
            await wait_for_record(dev_services, "tests.app: last")
        finally:
            pylog.removeHandler(handler)

        assert (WARNING, "app/py", "tests.app: disk 93% full") in dev_services.log_records
        assert not any("internal" in r[2] for r in dev_services.log_records)
