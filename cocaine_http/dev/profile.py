# Strategy: one frozen dataclass holds every knob of the dev engine, with cocaine-runtime v0.11's
# own defaults (CORE11 `src/context.cpp` `defaults::*`, `src/profile.cpp`; docs/protocol.md §3.5),
# and validates them the way the runtime's profile loader does. The CLI, the runtime and the test
# fixtures all build a Profile; nothing else repeats the list.
"""The dev engine's profile: pool, queue and timer settings with the runtime's defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class Profile:
    """Settings of one app's engine, named after the v0.11 profile keys.

    Attributes:
        pool_limit: most worker processes at once (`pool-limit`, 10).
        concurrency: sessions in flight per worker (`concurrency`, 10).
        queue_limit: most sessions waiting for a worker (`queue-limit`, 100); one more is
            refused with error(2, "the queue is full").
        grow_threshold: spawn another worker when the queue is longer than pool size times
            this (`grow-threshold`); None means max(1, queue_limit / pool_limit / 2), as the
            runtime computes it.
        startup_timeout: seconds from spawn to the first heartbeat (`startup-timeout`, 10).
        heartbeat_timeout: longest gap between heartbeats (`heartbeat-timeout`, 30).
        idle_timeout: seconds without sessions before a worker is asked to leave with
            terminate(1, "slave is idle"); 0 disables (`idle-timeout`, 600).
        termination_timeout: grace for workers to finish when the engine stops
            (`termination-timeout`, 5).
        crashlog_limit: output lines kept per worker and logged when it fails
            (`crashlog-limit`, 50).
        log_output: log every output line of the workers (`log-output`, false).
        environment: the manifest's `environment`, added to the runtime's own environment.
    """

    pool_limit: int = 10
    concurrency: int = 10
    queue_limit: int = 100
    grow_threshold: int | None = None
    startup_timeout: float = 10.0
    heartbeat_timeout: float = 30.0
    idle_timeout: float = 600.0
    termination_timeout: float = 5.0
    crashlog_limit: int = 50
    log_output: bool = False
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("startup_timeout", "heartbeat_timeout", "termination_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name.replace('_', '-')} must be greater than zero")
        if self.idle_timeout < 0:
            raise ConfigError("idle-timeout must not be negative")
        for name in ("pool_limit", "concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1")
        if self.queue_limit < 0:
            raise ConfigError("queue-limit must not be negative")
        if self.grow_threshold is not None and self.grow_threshold < 1:
            raise ConfigError("grow-threshold must be at least 1")
        if self.crashlog_limit < 0:
            raise ConfigError("crashlog-limit must not be negative")

    @property
    def growth(self) -> int:
        """The effective grow-threshold."""
        if self.grow_threshold is not None:
            return self.grow_threshold
        return max(1, self.queue_limit // self.pool_limit // 2)

    @classmethod
    def from_runtime(cls, settings: Mapping[str, Any], **changes: Any) -> Profile:
        """A Profile from a runtime profile (profile.json, or the storage's `profiles/<name>`),
        its kebab-case keys mapped to fields; `changes` win. Keys the dev engine has no use for
        (`isolate`, ...) are ignored, as the runtime ignores keys it does not know.

        Raises:
            ConfigError: a value of the wrong type or out of range.
        """
        values: dict[str, Any] = {}
        for key, value in settings.items():
            name = str(key).replace("-", "_")
            kind = _KINDS.get(name)
            if kind is None:
                continue
            if kind is bool:
                ok = isinstance(value, bool)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or (kind is int and value != int(value)):
                raise ConfigError(f"profile {key}: expected {kind.__name__}, got {value!r}")
            values[name] = kind(value)
        values.update(changes)
        return cls(**values)

    def replace(self, **changes: Any) -> Profile:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The profile under its runtime key names, as the app service's `info` reports it."""
        return {
            "pool-limit": self.pool_limit,
            "concurrency": self.concurrency,
            "queue-limit": self.queue_limit,
            "grow-threshold": self.growth,
            "startup-timeout": self.startup_timeout,
            "heartbeat-timeout": self.heartbeat_timeout,
            "idle-timeout": self.idle_timeout,
            "termination-timeout": self.termination_timeout,
            "crashlog-limit": self.crashlog_limit,
            "log-output": self.log_output,
            "isolate": {"type": "process", "args": {}},
        }


#: The fields a runtime profile may set, with their types.
_KINDS: dict[str, type] = {
    "pool_limit": int, "concurrency": int, "queue_limit": int, "grow_threshold": int,
    "startup_timeout": float, "heartbeat_timeout": float, "idle_timeout": float,
    "termination_timeout": float, "crashlog_limit": int, "log_output": bool,
}
