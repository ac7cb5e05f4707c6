# Strategy: every option of the HTTP worker is declared once, as a field of the frozen `Config`
# dataclass, with its default, its help text and (for enumerations) its choices in the field's
# metadata. The command line (cli.py), the environment (COCAINE_HTTP_<OPTION>) and the Python
# API (`cocaine_http.run(app, **options)`) are all generated from those fields, so adding an
# option is one edit here. Values from the environment and from keyword arguments are converted
# and checked by the same `coerce()`; a bad value is a ConfigError with a one-line message.
#
# The same machinery builds every command line of the package: an option table is any frozen
# dataclass whose fields are declared with `option()`, and `OptionParser.add_table` turns it into
# argparse options that keep their values as strings, so that conversion and checks stay in
# `convert()` and the table's `__post_init__`. `cocaine-http` uses the Config table;
# `cocaine-http dev` uses the Config table plus its own. The runtime's own arguments
# (`--app --endpoint --locator --uuid --protocol`) are read by `split_runtime_args` only.
"""Options of the HTTP worker, with their defaults, env var mapping and validation; the option
tables and the one reader of the runtime's arguments."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from .errors import ConfigError

ENV_PREFIX = "COCAINE_HTTP_"

#: gunicorn's default access_log_format, plus the duration in milliseconds.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def option(
    default: Any, help: str, *, choices: tuple[str, ...] = (), kind: type | None = None,
    repeat: bool = False, metavar: str | None = None, shown: str | None = None,
) -> Any:
    """Declare one field of an option table.

    Args:
        default: the value when the option is not given (None: "not set"; `()` for `repeat`).
        help: one line for `--help` and the docs.
        choices: the allowed values of an enumeration.
        kind: the value type when the default does not show it (a None or `()` default).
        repeat: the option may be given several times; the value is a tuple of them.
        metavar: the value's name in `--help`.
        shown: how `--help` shows the default, when `repr(default)` is not helpful.
    """
    meta = {"help": help, "choices": choices, "kind": kind or type(default),
            "repeat": repeat, "metavar": metavar, "shown": shown}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that changes how an app is served; every field has a safe default.

    Each field is also the `--kebab-case` command-line option and the
    `COCAINE_HTTP_<UPPER_SNAKE>` environment variable of the same name.
    """

    factory: bool = option(False, "treat module:attr as a callable that returns the app")
    interface: str = option(
        "auto", "app interface; auto: coroutine callables are ASGI, others WSGI",
        choices=("auto", "asgi", "wsgi"),
    )
    event: str = option("http", "Cocaine event name that carries HTTP requests")
    threads: int = option(
        10, "WSGI thread pool size (the runtime's concurrency); 0 runs the app inline"
    )
    wsgi_batch: bool = option(
        True, "WSGI pool threads take Linux's SCHED_BATCH policy: woken, they do not preempt "
        "the event loop"
    )
    lifespan: str = option(
        "auto", "ASGI lifespan: auto tolerates apps without it", choices=("auto", "on", "off")
    )
    root_path: str = option("", "mount point of the app (ASGI root_path, WSGI SCRIPT_NAME)")
    log_level: str = option(
        "info", "logging level",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
    )
    log_format: str = option(
        "text", "format of the worker's log lines: text, or one JSON object a line",
        choices=("text", "json"),
    )
    log_config: str = option(
        "", "logging configuration applied after ours: a dictConfig .json/.yaml file or a "
        "fileConfig .ini file (for the app's own loggers)", metavar="FILE", shown="none")
    access_log: bool = option(True, "log one line per request to cocaine_http.access")
    access_log_format: str = option(
        ACCESS_LOG_FORMAT, "gunicorn-style access log format: h client, t time, r request "
        "line, s status, b size, f referer, a user agent, M milliseconds, ...", metavar="FMT")
    max_body_size: int = option(
        64 * 1024 * 1024, "largest request body in bytes (413 above)", shown="64M"
    )
    max_header_size: int = option(
        64 * 1024, "largest total size of request line and headers in bytes (431 above)",
        shown="64K",
    )
    max_headers: int = option(100, "most request header fields (431 above)")
    timeout: float = option(
        0.0, "seconds a request may take before its session fails; 0 means no limit"
    )
    loop: str = option("auto", "event loop", choices=("auto", "asyncio", "uvloop"))
    proxy_headers: bool = option(
        True, "trust X-Forwarded-Proto/-For and X-Real-IP (the Cocaine proxy is the only peer)"
    )
    keep_memory: bool = option(
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
        try:  # unknown atoms print "-", as gunicorn's do; a broken % format is refused
            self.access_log_format % collections.defaultdict(str)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid --access-log-format: {exc}") from None
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
    """The value type of a Config field."""
    return kind_of(FIELDS[name])


def kind_of(field: dataclasses.Field[Any]) -> type:
    """The value type of an option table's field (of one value, for a repeatable option)."""
    kind: type = field.metadata.get("kind") or type(field.default)
    return kind


def coerce(name: str, value: Any) -> Any:
    """Convert `value` (a string from argv or env, or a Python value) to the field's type.

    Raises:
        ConfigError: the value cannot be converted.
    """
    return convert(FIELDS[name], value)


def convert(field: dataclasses.Field[Any], value: Any) -> Any:
    """Convert one value of an option table's field from a string (or check a Python value).

    Raises:
        ConfigError: the value cannot be converted, in the option's own words.
    """
    kind = kind_of(field)
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
            f"invalid value {value!r} for {option_name(field.name)} ({kind.__name__} expected)"
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


# -- the runtime's arguments ------------------------------------------------------------------

#: What cocaine-runtime appends to a worker's command line (v0.12 adds `--protocol 1`).
RUNTIME_ARGS = ("app", "endpoint", "locator", "uuid", "protocol")


def split_runtime_args(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Take the runtime's arguments out of `argv`: ({name: value}, the other arguments).

    They may appear anywhere, as `--name value` or `--name=value`; when one repeats, the last
    wins (the runtime's own come last). Every reader of a worker's command line (the CLI, the
    Worker, the services client's locator, the Logger's source) goes through here.

    Raises:
        ConfigError: a runtime option without a value.
    """
    found: dict[str, str] = {}
    rest: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        name, eq, value = item.partition("=")
        key = name[2:] if name.startswith("--") else ""
        i += 1
        if key not in RUNTIME_ARGS:
            rest.append(item)
            continue
        if not eq:
            if i >= len(items):
                raise ConfigError(f"option --{key} needs a value")
            value = items[i]
            i += 1
        found[key] = value
    return found, rest


def runtime_argv(found: Mapping[str, str]) -> list[str]:
    """The runtime's arguments back as argv, in the runtime's order."""
    argv: list[str] = []
    for name in RUNTIME_ARGS:
        if name in found:
            argv += [f"--{name}", found[name]]
    return argv


# -- command lines from option tables -----------------------------------------------------------


class OptionParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting, with option tables."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)

    def add_table(self, table: type, title: str | None = None, *, env: bool = False) -> None:
        """One option per field of `table`; values stay strings until `values()` converts."""
        group = self.add_argument_group(title) if title else self
        for field in dataclasses.fields(table):
            _add_field(group, field, env)

    @staticmethod
    def values(ns: argparse.Namespace, table: type) -> dict[str, Any]:
        """The fields of `table` given on the command line, converted."""
        given: dict[str, Any] = {}
        for field in dataclasses.fields(table):
            raw = getattr(ns, field.name, None)
            if raw is None:
                continue
            if field.metadata.get("repeat"):
                given[field.name] = tuple(convert(field, item) for item in raw)
            else:
                given[field.name] = convert(field, raw)
        return given


def _add_field(group: Any, field: dataclasses.Field[Any], env: bool) -> None:
    meta = field.metadata
    kind = kind_of(field)
    shown = meta.get("shown") or _show(field.default)
    where = f"; env {env_name(field.name)}" if env else ""
    help_text = f"{meta['help']} (default: {shown}{where})".replace("%", "%%")
    flag = option_name(field.name)
    if kind is bool and not meta.get("repeat"):
        group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
    elif meta.get("repeat"):
        group.add_argument(flag, dest=field.name, action="append", default=None,
                           metavar=meta.get("metavar") or kind.__name__.upper(), help=help_text)
    elif meta["choices"]:
        group.add_argument(flag, dest=field.name, choices=meta["choices"], default=None,
                           help=help_text)
    else:
        group.add_argument(flag, dest=field.name, default=None,
                           metavar=meta.get("metavar") or kind.__name__.upper(), help=help_text)


def _show(default: Any) -> str:
    if default is None or default == ():
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, str):
        return repr(default) if default else "empty"
    return str(default)


def argv_for(values: Mapping[str, Any]) -> list[str]:
    """Config options back as a command line (`--threads 4`, `--no-access-log`)."""
    argv: list[str] = []
    for name, value in values.items():
        flag = option_name(name)
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


def env_for(values: Mapping[str, Any]) -> dict[str, str]:
    """Config options as COCAINE_HTTP_* variables, for a worker that reads no command line."""
    env: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, bool):
            env[env_name(name)] = "1" if value else "0"
        else:
            env[env_name(name)] = str(value)
    return env
