"""What one client may cost the dev front: body limit (one setting with the worker's channel
limit), response buffer bound, header, idle and keep-alive timeouts (docs/dev-runtime.md)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cocaine_http.aio.worker import FRAME_ROOM, MAX_MESSAGE_SIZE, body_limit, message_limit
from cocaine_http.dev.cli import build_runtime
from cocaine_http.dev.front import ClientLimits
from tests.plugins.process import ServerProcess

APP = "tests.workers.bounds_apps:app"
MIB = 1024 * 1024


class DevProcess(ServerProcess):
    """`cocaine-http dev` with the bounds app, as a child process on free ports."""

    def __init__(self, *args: str) -> None:
        super().__init__(["dev", APP, "--port", "0", "--locator-port", "0", *args],
                         ready=r"Serving \S+ on http://127\.0\.0\.1:(\d+)")

    def workers(self) -> list[int]:
        return self.children()


@pytest.fixture
def dev_process() -> Iterator[Any]:
    started: list[DevProcess] = []

    def start(*args: str) -> DevProcess:
        started.append(DevProcess("--workers", "1", *args))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def wait_until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def read_response(sock: socket.socket) -> bytes:
    """Everything until the peer closes (or resets) the connection."""
    data = bytearray()
    sock.settimeout(30)
    try:
        while chunk := sock.recv(MIB):
            data += chunk
    except ConnectionResetError:
        pass
    return bytes(data)


def post_size(port: int, size: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /size HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)
        chunk = b"y" * MIB
        for offset in range(0, size, MIB):
            sock.sendall(chunk[: size - offset])
        return read_response(sock)


class TestBodyLimit:
    def test_both_limits_come_from_max_body_size(self) -> None:
        assert message_limit(64 * MIB, 64 * 1024) == 64 * MIB + 64 * 1024 + FRAME_ROOM
        assert body_limit(64 * MIB, 64 * 1024) == 64 * MIB
        # A body the channel could never carry is cut down to what fits in one message.
        big = body_limit(2 * 1024 * MIB, 64 * 1024)
        assert big + 64 * 1024 + FRAME_ROOM <= MAX_MESSAGE_SIZE < 2 * 1024 * MIB
        runtime, _ = build_runtime([APP, "--max-body-size", "2G"])
        assert runtime.max_body_size == big
        runtime, _ = build_runtime([APP, "--max-body-size", "3M"])
        assert runtime.max_body_size == 3 * MIB

    def test_a_body_over_the_old_fixed_channel_limit_reaches_the_worker(
        self, dev_process: Any
    ) -> None:
        dev = dev_process("--max-body-size", "80M")
        workers = dev.workers()
        response = post_size(dev.port, 76 * MIB)
        assert response.startswith(b"HTTP/1.1 200 ")
        assert b"\r\n%d\r\n" % (76 * MIB) in response  # the size the app read
        assert dev.workers() == workers  # the same worker, still alive

    def test_content_length_over_the_limit_gets_413_before_the_body(
        self, dev_process: Any
    ) -> None:
        dev = dev_process("--max-body-size", "1M")
        with socket.create_connection(("127.0.0.1", dev.port)) as sock:
            sock.sendall(b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                         % (MIB + 1))
            assert read_response(sock).startswith(b"HTTP/1.1 413 ")
        assert post_size(dev.port, MIB).startswith(b"HTTP/1.1 200 ")

    def test_a_chunked_body_gets_413_once_past_the_limit(self, dev_process: Any) -> None:
        dev = dev_process("--max-body-size", "1M")
        before = dev.kib("VmRSS")
        sent = 0
        with socket.create_connection(("127.0.0.1", dev.port)) as sock:
            sock.sendall(b"POST /size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"z" * 64 * 1024)
            sock.settimeout(5)
            try:
                while sent < 256 * MIB:  # far more than the limit, unless the front stops
                    sock.sendall(chunk)
                    sent += 64 * 1024
            except OSError:
                pass  # the front stopped reading and closed the connection
            response = read_response(sock)
        assert response.startswith(b"HTTP/1.1 413 ")
        assert sent < 256 * MIB
        assert dev.kib("VmHWM") < before + 64 * 1024  # nothing like the body was buffered


def read_head(sock: socket.socket, timeout: float = 30.0) -> bytes:
    """Take a response head off `sock` and nothing after it: body bytes that arrived with the
    head stay in the socket for the caller (a plain recv would swallow them). The kernel's
    buffer is peeked until it holds the blank line, then exactly the head is received."""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while (end := sock.recv(64 * 1024, socket.MSG_PEEK).find(b"\r\n\r\n")) < 0:
        assert time.monotonic() < deadline, "no complete response head"
        time.sleep(0.01)
    return sock.recv(end + 4, socket.MSG_WAITALL)


def stream_request(port: int, mib: int) -> socket.socket:
    """A client with a small receive buffer that asked for `mib` MiB and read the head; the
    body, all of it, is left to read."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(b"GET /stream?mib=%d HTTP/1.1\r\nHost: x\r\n\r\n" % mib)
    assert read_head(sock).startswith(b"HTTP/1.1 200 ")
    return sock


class TestStreamRequest:
    def test_the_body_bytes_that_come_with_the_head_stay_for_the_reader(self) -> None:
        # A fast app's head and first body bytes reach the client in one segment.
        body = b"8\r\nxxxxxxxx\r\n0\r\n\r\n"
        with socket.create_server(("127.0.0.1", 0)) as server:

            def answer() -> None:
                conn, _ = server.accept()
                with conn:
                    conn.recv(4096)  # the request
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)

            thread = threading.Thread(target=answer, daemon=True)
            thread.start()
            with stream_request(server.getsockname()[1], 1) as sock:
                received = read_response(sock)
            thread.join(30)
        assert received == body


class TestResponseBuffer:
    def test_a_paused_reader_pauses_the_worker_then_is_dropped(self, dev_process: Any) -> None:
        dev = dev_process("--max-response-buffer", "2M", "--client-idle-timeout", "2")
        peak_before = dev.kib("VmHWM")
        with stream_request(dev.port, 200) as sock:
            wait_until(lambda: dev.said("left its response unread"))
            received = read_response(sock)  # what was buffered, then the closed connection
        assert len(received) < 100 * MIB
        # Without the bound the front would hold most of the 200 MiB.
        assert dev.kib("VmHWM") < peak_before + 64 * 1024
        response = post_size(dev.port, 0)  # the worker was resumed: the runtime still serves
        assert response.startswith(b"HTTP/1.1 200 ") and b"\r\n1\r\n0\r\n" in response

    def test_a_slow_reader_gets_everything_with_a_bounded_buffer(
        self, dev_process: Any
    ) -> None:
        dev = dev_process("--max-response-buffer", "1M")
        peak_before = dev.kib("VmHWM")
        with stream_request(dev.port, 64) as sock:
            data = bytearray()
            while not data.endswith(b"\r\n0\r\n\r\n"):
                data += sock.recv(256 * 1024)
                time.sleep(0.001)
        assert data.count(b"x") == 64 * MIB  # back-pressure, nothing dropped
        assert dev.kib("VmHWM") < peak_before + 48 * 1024

    def test_a_slow_reader_gives_way_when_its_worker_is_needed(self, dev_process: Any) -> None:
        dev = dev_process("--max-response-buffer", "1M", "--pool-limit", "1")
        with stream_request(dev.port, 200) as sock:
            wait_until(lambda: dev.said("paused: its client reads slower"))
            response = post_size(dev.port, 3)  # same worker: it must not wait behind the first
            received = read_response(sock)
        assert response.startswith(b"HTTP/1.1 200 ") and b"\r\n1\r\n3\r\n" in response
        assert len(received) < 100 * MIB
        assert dev.said("reads slower than the app writes")


@pytest.fixture
async def timed_runtime(dev_app_runtime: Any) -> Any:
    limits = ClientLimits(header_timeout=0.5, keep_alive_timeout=0.5, idle_timeout=0.5)
    return await dev_app_runtime(APP, workers=1, limits=limits)


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    data = bytearray()
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 30):
            data += chunk
    except ConnectionResetError:
        pass
    return bytes(data)


class TestTimeouts:
    async def test_slow_headers_get_408_and_a_closed_connection(
        self, timed_runtime: Any
    ) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", timed_runtime.front.port)
        request = b"GET /size HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: yes\r\n" * 1000

        sent = [0]

        async def trickle() -> None:
            for byte in request:
                writer.write(bytes([byte]))
                sent[0] += 1
                await asyncio.sleep(0.05)

        task = asyncio.ensure_future(trickle())
        try:
            data = await until_closed(reader)
        finally:
            task.cancel()
            writer.close()
        assert data.startswith(b"HTTP/1.1 408 ")
        assert sent[0] < len(request)  # closed long before the headers ended

    async def test_many_slow_clients_are_all_closed(self, timed_runtime: Any) -> None:
        port = timed_runtime.front.port
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        for _, writer in connections:
            writer.write(b"GET /size HTTP/1.1\r\n")
        results = await asyncio.gather(*(until_closed(r) for r, _ in connections))
        for _, writer in connections:
            writer.close()
        assert all(data.startswith(b"HTTP/1.1 408 ") for data in results)

    async def test_a_silent_body_gets_408(self, timed_runtime: Any) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", timed_runtime.front.port)
        writer.write(b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        data = await until_closed(reader)
        writer.close()
        assert data.startswith(b"HTTP/1.1 408 ")

    async def test_an_idle_keep_alive_connection_is_closed(self, timed_runtime: Any) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", timed_runtime.front.port)
        writer.write(b"GET /size HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await until_closed(reader)
        writer.close()
        assert data.startswith(b"HTTP/1.1 200 ")
        assert data.count(b"HTTP/1.1") == 1  # one answer, then the front closed the connection

    async def test_a_connection_that_never_speaks_is_closed(self, timed_runtime: Any) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", timed_runtime.front.port)
        data = await until_closed(reader)
        writer.close()
        assert data == b""


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        ClientLimits(header_timeout=-1)
