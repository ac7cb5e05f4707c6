# Strategy: the limits and the message shape shared by both decoders, declared once so that the
# C and Python implementations cannot drift apart on defaults or validation.
from __future__ import annotations

from typing import Any

#: One decoded message: (message id, session or channel id, argument list).
Message = tuple[int, int, list[Any]]

#: Index by `is_v12`.
DIALECTS = ("v0.11", "v0.12")

#: A request frame carries the whole HTTP body (64 MiB by default) plus its headers.
DEFAULT_MAX_MESSAGE_SIZE = 72 * 1024 * 1024
DEFAULT_MAX_DEPTH = 32
#: msgpack's own parser stack; deeper input fails inside msgpack even before it is complete.
HARD_MAX_DEPTH = 1024


def check_limits(
    dialect: str, max_message_size: int | None, max_depth: int | None
) -> tuple[bool, int, int]:
    """Validate constructor arguments; returns (is_v12, max_message_size, max_depth)."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, not {dialect!r}")
    size = DEFAULT_MAX_MESSAGE_SIZE if max_message_size is None else max_message_size
    depth = DEFAULT_MAX_DEPTH if max_depth is None else max_depth
    if not 1 <= size <= 2**31 - 1:
        raise ValueError(f"max_message_size must be in 1..{2**31 - 1}, not {size}")
    if not 1 <= depth <= HARD_MAX_DEPTH:
        raise ValueError(f"max_depth must be in 1..{HARD_MAX_DEPTH}, not {depth}")
    return dialect == "v0.12", size, depth
