"""The codec's public surface: implementation selection by environment, buffering of big and
many messages, and input types."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from cocaine_http import codec
from cocaine_http.protocol.dialect import V0_11, V0_12, pack


def implementation_under(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import cocaine_http.codec as c; print(c.IMPLEMENTATION, c.Decoder.IMPLEMENTATION)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


class TestSelection:
    def test_c_is_the_default(self) -> None:
        """With the extension built and no switches, the C decoder is live."""
        result = implementation_under({})

        assert result.stdout.split() == ["c", "c"]

    def test_purepython_forces_the_reference(self) -> None:
        """COCAINE_HTTP_PUREPYTHON=1 selects the Python decoder even though C is built."""
        result = implementation_under({"COCAINE_HTTP_PUREPYTHON": "1"})

        assert result.stdout.split() == ["python", "python"]

    def test_require_c_imports_when_built(self) -> None:
        """COCAINE_HTTP_REQUIRE_C=1 is satisfied by the built extension."""
        result = implementation_under({"COCAINE_HTTP_REQUIRE_C": "1"})

        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["c", "c"]

    def test_require_c_fails_loudly_without_the_extension(self, tmp_path: Any) -> None:
        """With the compiled module hidden, REQUIRE_C turns the fallback into ImportError."""
        blocker = tmp_path / "sitecustomize.py"
        blocker.write_text(
            "import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'cocaine_http.codec._cdecoder':\n"
            "            raise ImportError('hidden by the test')\n"
            "sys.meta_path.insert(0, Block())\n"
        )
        env = {"PYTHONPATH": str(tmp_path)}

        required = implementation_under({**env, "COCAINE_HTTP_REQUIRE_C": "1"})
        fallback = implementation_under(env)

        assert required.returncode != 0 and "ImportError" in required.stderr
        assert fallback.stdout.split() == ["python", "python"]

    def test_module_attributes(self) -> None:
        """IMPLEMENTATION names the class behind codec.Decoder."""
        assert codec.IMPLEMENTATION == codec.Decoder.IMPLEMENTATION
        assert codec.PythonDecoder.IMPLEMENTATION == "python"


@pytest.mark.parametrize("read", [1000, 65536, 100_000])
def test_big_message_in_many_reads(decoder_cls: Any, read: int) -> None:
    """A 3 MiB chunk arriving in small reads, between small messages, decodes intact."""
    payload = bytes(range(256)) * (3 * 4096)
    stream = V0_11.invoke(1, "http") + V0_11.chunk(1, payload) + V0_11.choke(1)
    decoder = decoder_cls()

    out: list[Any] = []
    for i in range(0, len(stream), read):
        out += decoder.feed(stream[i : i + read])

    assert out == [(3, 1, [b"http"]), (4, 1, [payload]), (6, 1, [])]
    assert type(out[1][2][0]) is bytes


def test_big_error_reply_and_other_big_shapes(decoder_cls: Any) -> None:
    """Big arguments of every shape (int + raw, several items, nested) decode exactly."""
    big = b"e" * 5000
    messages = [
        (5, 1, [-3, big]),
        (0, 2, [big, big]),
        (1, 3, [[big], {1: big}]),
    ]
    stream = b"".join(pack(list(m)) for m in messages)

    assert decoder_cls().feed(stream) == messages
    assert decoder_cls().feed(bytearray(stream)) == messages


def test_many_messages_in_one_feed(decoder_cls: Any) -> None:
    """Tens of thousands of messages in one feed all come back, in order."""
    stream = b"".join(V0_11.chunk(s, b"x" * (s % 300)) for s in range(30_000))

    out = decoder_cls().feed(stream)

    assert [m[1] for m in out] == list(range(30_000))
    assert all(m[2] == [b"x" * (m[1] % 300)] for m in out)


def test_many_big_messages_in_one_feed(decoder_cls: Any) -> None:
    """More big-argument messages in one feed than one C call describes."""
    stream = b"".join(V0_11.chunk(s, bytes([s % 256]) * 2000) for s in range(700))

    out = decoder_cls().feed(stream)

    assert out == [(4, s, [bytes([s % 256]) * 2000]) for s in range(700)]


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_input_types_mixed_within_a_stream(decoder_cls: Any, kind: Any) -> None:
    """Feeds of different buffer types continue one another's partial messages."""
    data = V0_12.invoke(5, "ping") + V0_12.chunk(5, b"y" * 40_000) + V0_12.choke(5)
    decoder = decoder_cls("v0.12")

    out = decoder.feed(kind(data[:7])) + decoder.feed(data[7:30_000]) + decoder.feed(kind(data[30_000:]))

    assert out == [(0, 5, [b"ping"]), (0, 5, [b"y" * 40_000]), (2, 5, [])]


def test_empty_feed_returns_nothing(decoder_cls: Any) -> None:
    """b'' neither completes nor breaks anything."""
    decoder = decoder_cls()

    assert decoder.feed(b"") == []
    assert decoder.feed(V0_11.heartbeat()[:2]) == []
    assert decoder.feed(b"") == []
    assert decoder.feed(V0_11.heartbeat()[2:]) == [(1, 0, [])]


def test_returned_lists_are_independent(decoder_cls: Any) -> None:
    """Each message gets its own argument list, safe to mutate."""
    out = decoder_cls().feed(V0_11.choke(1) + V0_11.choke(2))

    out[0][2].append("mutated")

    assert out[1][2] == []


def test_dialect_property(decoder_cls: Any) -> None:
    """The decoder reports the dialect it was built for."""
    assert decoder_cls("v0.12").dialect == "v0.12"
    assert decoder_cls().dialect == "v0.11"
