"""DevServices, the server side: raw bytes on the wire as cocaine-runtime v0.11 sends them."""

from __future__ import annotations

import asyncio
import logging
import socket

import msgpack
import pytest

from cocaine_http.dev.services import DevServices, DirectoryStorage
from cocaine_http.protocol.dialect import pack


async def exchange(endpoint: tuple[str, int], request: bytes, expect_len: int) -> bytes:
    """Send raw bytes to a service and read until `expect_len` bytes came back."""
    reader, writer = await asyncio.open_connection(*endpoint)
    writer.write(request)
    data = b""
    while len(data) < expect_len:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        if not chunk:
            break
        data += chunk
    writer.close()
    await writer.wait_closed()
    return data


class TestReplyVectors:
    """docs/protocol.md §11.3: the replies the dev services send are byte-exact."""

    async def test_resolve_not_found_matches_vector(self, dev_services):
        """Unknown name: error(1, "service nosuch is not available") then choke."""
        expected = bytes.fromhex(
            "9305019201bf73657276696365206e6f73756368206973206e6f7420617661696c61626c65"
            "93060190"
        )

        got = await exchange(dev_services.locator_endpoint,
                             bytes.fromhex("93000191a66e6f73756368"), len(expected))

        assert got == expected

    async def test_resolve_reply_is_double_encoded_v011_layout(self, dev_services):
        """resolve: one chunk holding msgpack([[host, port], 1, table]), then choke."""
        host, port = dev_services.endpoints["storage"]
        inner = pack([[host, port], 1, {0: "read", 1: "write", 2: "remove", 3: "find"}])
        expected = bytes.fromhex("930401") + pack([inner]) + bytes.fromhex("93060190")

        got = await exchange(dev_services.locator_endpoint,
                             bytes.fromhex("93000191a773746f72616765"), len(expected))

        assert got == expected
        assert expected[3:6] != b"\x91\xd9"  # a raw header, never str8

    async def test_logging_vectors(self, dev_services):
        """emit answers choke only; verbosity answers chunk(msgpack(4)) + choke."""
        expected = bytes.fromhex("93060290" "93040391a104" "93060390")
        request = bytes.fromhex("9300029303a86170702f6563686fa568656c6c6f" "93010390")

        got = await exchange(dev_services.endpoints["logging"], request, len(expected))

        assert got == expected
        assert list(dev_services.log_records) == [(3, "app/echo", "hello")]

    async def test_storage_vectors(self, dev_services):
        """read and find replies, and the write call's choke, match the vectors."""
        dev_services.storage.write("manifests", "echo", b"v", [])
        dev_services.storage.write("ns", "k1", b"1", ["t"])
        dev_services.storage.write("ns", "k2", b"2", ["t"])
        request = (bytes.fromhex("93000492a96d616e696665737473a46563686f")
                   + bytes.fromhex("93010594a26e73a16ba17691a27431")
                   + pack([3, 6, ["ns", ["t"]]]))
        expected = bytes.fromhex("93040491a2a176" "93060490" "93060590"
                                 "93040691a792a26b31a26b32" "93060690")

        got = await exchange(dev_services.endpoints["storage"], request, len(expected))

        assert got == expected
        assert dev_services.storage.read("ns", "k") == b"v"
        assert dev_services.storage.find("ns", ["t1"]) == ["k"]

    async def test_unknown_method_and_bad_arguments_answer_error_1_and_choke(self,
                                                                             dev_services):
        """An unknown id and a failing handler both answer error(1, text) + choke."""
        request = pack([9, 1, []]) + pack([0, 2, ["only-one-arg"]])

        text = "not enough values to unpack (expected 2, got 1)"
        size = len(pack([5, 1, [1, "unknown message type"]]) + pack([5, 2, [1, text]])) + 8

        got = await exchange(dev_services.endpoints["storage"], request, size)
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(got)
        messages = list(unpacker)

        assert messages[0] == [5, 1, [1, "unknown message type"]]
        assert messages[1] == [6, 1, []]
        assert messages[2] == [5, 2, [1, text]]
        assert messages[3] == [6, 2, []]


class TestLifecycle:
    async def test_busy_locator_port_falls_back_and_says_so(self, caplog):
        """A busy locator port makes the locator listen on an OS port, with a warning."""
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        services = DevServices(locator_port=busy)

        with caplog.at_level(logging.WARNING, logger="cocaine_http.dev.services"):
            await services.start()
        try:
            assert services.locator_endpoint[1] not in (busy, 0)
            assert f"locator port {busy} is busy" in caplog.text
        finally:
            await services.close()
            blocker.close()

    async def test_logging_service_prints_through_python_logging(self, dev_services,
                                                                  services_client, caplog):
        """Messages emitted to the logging service appear on "cocaine_http.dev.logging"."""
        svc = await services_client.service("logging")

        with caplog.at_level(logging.DEBUG, logger="cocaine_http.dev.logging"):
            await svc.emit(2, "app/x", "careful")

        assert ("cocaine_http.dev.logging", logging.WARNING, "app/x: careful") in caplog.record_tuples

    async def test_app_registered_after_start_is_resolvable(self, dev_services, services_client,
                                                            fake_engine):
        """register_app on running services serves the app at the endpoint resolve returns."""
        dev_services.register_app(fake_engine("late", {}))

        (host, port), version, table = await services_client.resolve("late")

        assert table == {0: "enqueue", 1: "info"}
        assert (host, port) == dev_services.endpoints["late"]

    async def test_directory_storage_persists_across_restarts(self, tmp_path):
        """Storage under a directory keeps objects and tags across DevServices instances."""
        first = DevServices(locator_port=0, storage_dir=str(tmp_path))
        first.storage.write("apps/x", "a/b", b"blob", ["t1", "t2"])

        second = DevServices(locator_port=0, storage_dir=str(tmp_path))

        assert isinstance(second.storage, DirectoryStorage)
        assert second.storage.read("apps/x", "a/b") == b"blob"
        assert second.storage.find("apps/x", ["t2"]) == ["a/b"]
        second.storage.remove("apps/x", "a/b")
        assert first.storage.find("apps/x", []) == []
        with pytest.raises(Exception, match="not been found"):
            first.storage.read("apps/x", "a/b")
