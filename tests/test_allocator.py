"""The worker's allocator settings: applied on glibc, left to the environment when it speaks."""

from __future__ import annotations

import pytest

from cocaine_http.aio.allocator import keep_freed_memory


def test_thresholds_are_applied_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    """On glibc both mallopt calls succeed."""
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)

    assert keep_freed_memory() is True


def test_environment_settings_take_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """A MALLOC_*_ variable means the operator chose: nothing is changed."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")

    assert keep_freed_memory() is False
