"""The dev engine's profile: the runtime's defaults and its validation rules
(docs/protocol.md §3.5)."""

from __future__ import annotations

import pytest

from cocaine_http.dev.profile import Profile
from cocaine_http.errors import ConfigError


def test_defaults_are_the_runtime_defaults() -> None:
    """Every default matches cocaine-runtime v0.11, grow-threshold computed as it does."""
    profile = Profile()

    assert (profile.pool_limit, profile.concurrency, profile.queue_limit) == (10, 10, 100)
    assert (profile.startup_timeout, profile.heartbeat_timeout) == (10.0, 30.0)
    assert (profile.idle_timeout, profile.termination_timeout) == (600.0, 5.0)
    assert (profile.crashlog_limit, profile.log_output, profile.growth) == (50, False, 5)


@pytest.mark.parametrize(
    ("changes", "growth"),
    [({"queue_limit": 10}, 1), ({"pool_limit": 2, "queue_limit": 40}, 10),
     ({"grow_threshold": 3}, 3)],
)
def test_grow_threshold(changes: dict[str, int], growth: int) -> None:
    """grow-threshold is max(1, queue-limit / pool-limit / 2) unless given."""
    assert Profile(**changes).growth == growth


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"startup_timeout": 0}, id="startup"),
        pytest.param({"heartbeat_timeout": -1}, id="heartbeat"),
        pytest.param({"termination_timeout": 0}, id="termination"),
        pytest.param({"idle_timeout": -1}, id="idle"),
        pytest.param({"pool_limit": 0}, id="pool"),
        pytest.param({"concurrency": 0}, id="concurrency"),
        pytest.param({"queue_limit": -1}, id="queue"),
    ],
)
def test_invalid_values_are_refused(changes: dict[str, float]) -> None:
    """Timeouts must be positive (idle may be 0), pool-limit and concurrency at least 1."""
    with pytest.raises(ConfigError):
        Profile(**changes)


def test_idle_timeout_zero_is_allowed() -> None:
    """idle-timeout 0 disables idle termination."""
    assert Profile(idle_timeout=0).idle_timeout == 0
