# Strategy: a reconnect policy is a pure function of the attempt number, so BaseService owns all
# the timing and a policy is trivial to test. `reconnect` says whether a service left in the
# error state may connect again on its own when the next call comes; `delay(attempt)` says how
# long to wait before retry number attempt+1, or None to give up. The Node.js sample code
# retried with 500 ms doubling up to 8 tries [NODE-d `sample/client_error_handling.js`]; we add
# jitter so that many workers that lost the same service do not reconnect in lockstep.
"""Reconnect policies for service connections."""

from __future__ import annotations

import random
from typing import Protocol


class ReconnectPolicy(Protocol):
    """What a BaseService asks after a connection error."""

    reconnect: bool

    def delay(self, attempt: int) -> float | None:
        """Seconds to wait before connect attempt `attempt + 1` (0-based), or None to give up."""


class NoReconnect:
    """Never reconnect on our own: after a socket error the service stays in `error` and every
    call fails with ConnectionLostError until the application calls close() (then the next call
    connects again, once)."""

    reconnect = False

    def delay(self, attempt: int) -> float | None:
        return None

    def __repr__(self) -> str:
        return "NoReconnect()"


class ExponentialBackoff:
    """Reconnect on the next call, retrying a failed connect with growing, jittered delays.

    Args:
        initial: delay before the first retry, in seconds.
        factor: growth of the delay per retry.
        max_delay: cap on one delay.
        max_attempts: retries after the first failed connect before giving up.
        jitter: fraction of each delay that is randomised away (0 = none, 1 = full jitter).
        rng: random source (tests pass a seeded one).
    """

    reconnect = True

    def __init__(
        self,
        initial: float = 0.05,
        factor: float = 2.0,
        max_delay: float = 2.0,
        max_attempts: int = 5,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if initial < 0 or factor < 1 or max_delay < 0 or max_attempts < 0:
            raise ValueError("backoff parameters must be non-negative (factor >= 1)")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        self.initial = initial
        self.factor = factor
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.jitter = jitter
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float | None:
        if attempt >= self.max_attempts:
            return None
        base = min(self.max_delay, self.initial * self.factor**attempt)
        return base * (1.0 - self.jitter * self._rng.random())

    def __repr__(self) -> str:
        return (
            f"ExponentialBackoff(initial={self.initial}, factor={self.factor}, "
            f"max_delay={self.max_delay}, max_attempts={self.max_attempts}, jitter={self.jitter})"
        )


def get_policy(policy: ReconnectPolicy | str | None) -> ReconnectPolicy:
    """A policy from an object, "none", "backoff", or None (the default: backoff)."""
    if policy is None or policy == "backoff":
        return ExponentialBackoff()
    if policy == "none":
        return NoReconnect()
    if isinstance(policy, str):
        raise ValueError(f"unknown reconnect policy {policy!r}; use 'none' or 'backoff'")
    return policy
