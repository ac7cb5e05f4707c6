"""Every exception the library raises.

Strategy: one tree under `CocaineError`, so callers can catch the library as a whole or one
failure precisely. Errors carry machine-readable fields (offsets, codes, errno values) as
attributes, never only inside the message text. "Local" means we broke a rule; "remote" means
the peer did.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any


class CocaineError(Exception):
    """Base of every error raised by cocaine_http."""


# -- codec --------------------------------------------------------------------------------------


class DecodeError(CocaineError):
    """The incoming byte stream cannot be decoded.

    Attributes:
        offset: stream offset (bytes since the decoder was created) of the start of the message
            that failed to decode.
        messages: the messages that the failing `feed` call completed before the bad one, so
            that a caller can still deliver them (nothing decoded is lost).
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at stream offset {offset})")
        self.reason = message
        self.offset = offset
        self.messages: list[tuple[Any, ...]] = []


class FrameError(DecodeError):
    """Malformed msgpack, or a message whose frame does not follow the dialect's layout."""


class LimitExceededError(DecodeError):
    """A message is larger or nested deeper than the decoder's configured limits allow."""


# -- protocol -----------------------------------------------------------------------------------


class LocalProtocolError(CocaineError):
    """We were asked to do something the protocol forbids (a bug on our side)."""


class RemoteProtocolError(CocaineError):
    """The peer sent something the protocol forbids."""


# -- transport ----------------------------------------------------------------------------------


class ChannelError(CocaineError):
    """A socket-level failure, identified by its errno value."""

    def __init__(self, errno: int, detail: str = "") -> None:
        name = _errno.errorcode.get(errno, str(errno))
        text = detail or os.strerror(errno)
        super().__init__(f"[{name}] {text}")
        self.errno = errno


class ConnectionLostError(ChannelError):
    """The connection to a service dropped while calls were pending."""


class EndpointError(CocaineError):
    """An endpoint string cannot be parsed into a unix path or host:port."""


# -- sessions and services ----------------------------------------------------------------------


class SessionError(CocaineError):
    """The peer failed a session with an error message.

    Attributes:
        code: the error code from the wire (under v0.12 the code of `[category, code]`).
        message: the text from the wire.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message


class SessionClosedError(CocaineError):
    """Writing to a session that has already been ended or failed."""


class ServiceError(SessionError):
    """A service call failed with an error reply.

    Attributes:
        category: the v0.12 error category (`[category, code]` on the wire); None in v0.11.
    """

    def __init__(
        self, service: str, method: str, code: int, message: str, category: int | None = None
    ) -> None:
        where = f"{code}" if category is None else f"{category}, {code}"
        CocaineError.__init__(self, f"{service}.{method} failed: {message} [{where}]")
        self.service = service
        self.method = method
        self.code = code
        self.message = message
        self.category = category


class ServiceNotFoundError(CocaineError):
    """The locator does not know the service."""

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(message or f"service {name} is not available")
        self.name = name


class UnknownMethodError(CocaineError, AttributeError):
    """A method that the service's method table does not have."""


class ServiceTimeoutError(CocaineError, TimeoutError):
    """A service call did not finish within its timeout."""


class ServiceUnavailableError(CocaineError):
    """The locator or a service endpoint cannot be reached."""


# -- application loading and configuration ------------------------------------------------------


class ConfigError(CocaineError):
    """Bad options: the message is one line meant for the person at the terminal."""


class AppImportError(ConfigError):
    """The `module:attr` application cannot be imported or found."""


class LifespanError(CocaineError):
    """The ASGI application's lifespan startup or shutdown failed."""


# -- HTTP ---------------------------------------------------------------------------------------


class BadRequestError(RemoteProtocolError):
    """The HTTP request in a session cannot be served; answer it with `status`.

    Attributes:
        status: the HTTP status to answer with: 400 malformed, 413 body too large, 431 header
            fields too large, 501 unknown transfer coding, 505 unsupported HTTP version.
        reason: one line saying what was wrong (for the log and the response body).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
