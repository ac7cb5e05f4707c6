"""Shared pytest fixtures: http (request frames and response decoding for the HTTP core)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import pytest

FrameBuilder = Callable[..., bytes]


def build_frame(
    method: bytes | str = b"GET",
    uri: bytes | str = b"/",
    version: bytes | str = b"1.1",
    headers: Sequence[tuple[bytes | str, bytes | str]] = ((b"Host", b"example.com"),),
    body: bytes = b"",
) -> bytes:
    """A request frame packed the way the proxies do (docs/protocol.md §6.1: old-style raw
    strings)."""
    return msgpack.packb(
        [method, uri, version, [list(pair) for pair in headers], body], use_bin_type=False
    )


def decode_payloads(payloads: Sequence[Any], raw_body: bool = False) -> tuple[Any, bytes]:
    """((status, headers), body) from Response payloads: the head unpacked, the body joined."""
    head = msgpack.unpackb(payloads[0], raw=True)
    body = b""
    for payload in payloads[1:]:
        data = b"".join(bytes(part) for part in payload) if isinstance(payload, list) else payload
        body += bytes(data) if raw_body else msgpack.unpackb(data, raw=True)
    return head, body


@pytest.fixture
def http_frame() -> FrameBuilder:
    """Builds request frames: http_frame(method=, uri=, version=, headers=, body=)."""
    return build_frame
