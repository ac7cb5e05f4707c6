# Strategy: every option of the HTTP worker is declared once, as a field of the frozen `Config`
# dataclass, with its default, its help text and (for enumerations) its choices in the field's
# metadata. The command line (cli.py), the environment (COCAINE_HTTP_<OPTION>) and the Python
# API (`cocaine_http.run(app, **options)`) are all generated from those fields, so adding an
# option is one edit here. Values from the environment and from keyword arguments are converted
# and checked by the same `coerce()`; a bad value is a ConfigError with a one-line message.
"""Options of the HTTP worker, with their defaults, env var mapping and validation."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

ENV_PREFIX = "COCAINE_HTTP_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _opt(default: Any, help: str, *, choices: tuple[str, ...] = ()) -> Any:
    meta = {"help": help, "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that changes how an app is served; every field has a safe default.

    Each field is also the `--kebab-case` command-line option and the
    `COCAINE_HTTP_<UPPER_SNAKE>` environment variable of the same name.
    """

    factory: bool = _opt(False, "treat module:attr as a callable that returns the app")
    interface: str = _opt(
        "auto", "app interface; auto: coroutine callables are ASGI, others WSGI",
        choices=("auto", "asgi", "wsgi"),
    )
    event: str = _opt("http", "Cocaine event name that carries HTTP requests")
    threads: int = _opt(
        10, "WSGI thread pool size (the runtime's concurrency); 0 runs the app inline"
    )
    lifespan: str = _opt(
        "auto", "ASGI lifespan: auto tolerates apps without it", choices=("auto", "on", "off")
    )
    root_path: str = _opt("", "mount point of the app (ASGI root_path, WSGI SCRIPT_NAME)")
    log_level: str = _opt(
        "info", "logging level",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
    )
    access_log: bool = _opt(True, "log one line per request to cocaine_http.access")
    max_body_size: int = _opt(64 * 1024 * 1024, "largest request body in bytes (413 above)")
    max_header_size: int = _opt(
        64 * 1024, "largest total size of request line and headers in bytes (431 above)"
    )
    max_headers: int = _opt(100, "most request header fields (431 above)")
    timeout: float = _opt(
        0.0, "seconds a request may take before its session fails; 0 means no limit"
    )
    loop: str = _opt("auto", "event loop", choices=("auto", "asyncio", "uvloop"))
    proxy_headers: bool = _opt(
        True, "trust X-Forwarded-Proto/-For and X-Real-IP (the Cocaine proxy is the only peer)"
    )
    keep_memory: bool = _opt(
        True, "keep freed body memory in the process (glibc malloc thresholds) instead of "
        "faulting fresh pages in for every large request"
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            choices = field.metadata["choices"]
            value = getattr(self, field.name)
            if choices and value not in choices:
                raise ConfigError(
                    f"invalid {option_name(field.name)} {value!r}; "
                    f"choose from {', '.join(choices)}"
                )
        for name in ("threads", "max_body_size", "max_header_size", "max_headers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{option_name(name)} must not be negative")
        if self.timeout < 0:
            raise ConfigError("--timeout must not be negative")

    @classmethod
    def from_sources(
        cls, options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Config:
        """Build a Config: explicit options win over COCAINE_HTTP_* variables, which win over
        defaults.

        Raises:
            ConfigError: an unknown option, or a value of the wrong type.
        """
        values = env_options(os.environ if environ is None else environ)
        for name, value in (options or {}).items():
            if name not in FIELDS:
                raise ConfigError(f"unknown option {name!r}")
            if value is not None:
                values[name] = coerce(name, value)
        return cls(**values)


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Config)}


def option_name(name: str) -> str:
    """`max_body_size` -> `--max-body-size`."""
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    """`max_body_size` -> `COCAINE_HTTP_MAX_BODY_SIZE`."""
    return ENV_PREFIX + name.upper()


def field_type(name: str) -> type:
    default = FIELDS[name].default
    return type(default)


def coerce(name: str, value: Any) -> Any:
    """Convert `value` (a string from argv or env, or a Python value) to the field's type.

    Raises:
        ConfigError: the value cannot be converted.
    """
    kind = field_type(name)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    text = str(value).strip()
    try:
        if kind is bool:
            return _parse_bool(text)
        if kind is int:
            return _parse_size(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(
            f"invalid value {value!r} for {option_name(name)} ({kind.__name__} expected)"
        ) from None
    return text


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(text)


_SUFFIXES = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def _parse_size(text: str) -> int:
    """An integer, optionally with a K/M/G (binary) suffix: 64M, 16k."""
    low = text.lower().removesuffix("ib").removesuffix("b")
    if low and low[-1] in _SUFFIXES:
        return int(low[:-1]) * _SUFFIXES[low[-1]]
    return int(low)


def env_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """Options found in COCAINE_HTTP_<OPTION> variables (others with the prefix are ignored:
    COCAINE_HTTP_PUREPYTHON and friends belong to other layers)."""
    found: dict[str, Any] = {}
    for name in FIELDS:
        raw = environ.get(env_name(name))
        if raw is not None:
            try:
                found[name] = coerce(name, raw)
            except ConfigError as exc:
                raise ConfigError(f"{env_name(name)}: {exc}") from None
    return found
