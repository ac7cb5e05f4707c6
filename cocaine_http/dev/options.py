# Strategy: the options of `cocaine-http dev` that the worker does not have, declared as an
# option table like the worker's `Config` (same `option()` fields, same parser, same conversion),
# so `cocaine-http dev --help` lists both tables with their defaults and a value is checked the
# same way wherever it is given. Profile options default to None, meaning "the profile file's
# value, else the runtime's default", which `--help` shows from `Profile`.
"""Options of `cocaine-http dev`: front, services, profile, reload and deploy files."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..config import option
from ..errors import ConfigError
from .profile import Profile

_DEFAULTS = Profile()

#: Dev options that are Profile fields (the profile file's key is the kebab-case name).
PROFILE_FIELDS = ("pool_limit", "concurrency", "queue_limit", "startup_timeout",
                  "heartbeat_timeout", "idle_timeout", "termination_timeout")


def _profile(default: float, help: str) -> Any:
    """A profile option: None unless given; `--help` shows the runtime's default."""
    return option(None, help, kind=type(default), shown=f"{default:g}")


@dataclass(frozen=True)
class DevOptions:
    """What `cocaine-http dev` adds to the worker's options."""

    host: str = option("127.0.0.1", "address of the HTTP front and the services")
    port: int = option(8080, "HTTP front port; 0 picks a free one")
    app_name: str | None = option(
        None, "app name", kind=str,
        shown="the target's last module, the slave's name or the manifest's folder")
    slave: str | None = option(
        None, "run this executable file as the slave, as the runtime does (relative to "
        "--workdir)", kind=str, metavar="FILE")
    manifest: str | None = option(
        None, "run the app a manifest.json describes, from the archive `cocaine-http pack` "
        "builds of its folder", kind=str, metavar="FILE")
    profile: str | None = option(
        None, "read profile settings from this profile.json (options given here win)",
        kind=str, metavar="FILE")
    workers: int = option(
        1, "workers started before serving; 0 starts them on the first request, as the "
        "runtime does (the pool grows on demand either way)")
    protocol: int = option(
        0, "the runtime to imitate: 0 is cocaine-runtime v0.11, 1 is v0.12 (\"protocol 1\": "
        "the engine and the services speak it and workers get --protocol 1)")
    bare: bool = option(
        False, "run no app of its own: only the services, the node and the front, for apps "
        "deployed with `cocaine-http deploy` or cocaine-tool")
    pool_limit: int | None = _profile(_DEFAULTS.pool_limit, "most worker processes")
    concurrency: int | None = _profile(_DEFAULTS.concurrency, "sessions in flight per worker")
    queue_limit: int | None = _profile(_DEFAULTS.queue_limit,
        "sessions waiting for a worker (503 above)")
    startup_timeout: float | None = _profile(_DEFAULTS.startup_timeout,
        "seconds from spawn to the first heartbeat")
    heartbeat_timeout: float | None = _profile(_DEFAULTS.heartbeat_timeout,
        "longest gap between heartbeats")
    idle_timeout: float | None = _profile(_DEFAULTS.idle_timeout,
        "seconds without sessions before a worker is asked to leave; 0 disables")
    termination_timeout: float | None = _profile(_DEFAULTS.termination_timeout,
        "grace for workers on shutdown")
    request_timeout: float = option(
        30.0, "HTTP front: seconds until the response head (and between body chunks) before "
        "504; 0 means no limit")
    header_timeout: float = option(
        10.0, "HTTP front: seconds from a request's first byte until its headers are complete "
        "(408 above); 0 means no limit")
    keep_alive_timeout: float = option(
        5.0, "HTTP front: seconds a client connection may wait for its next request before it "
        "is closed; 0 means no limit")
    client_idle_timeout: float = option(
        10.0, "HTTP front: seconds a client may stay silent while sending a body (408 above) "
        "or leave its response unread (dropped above); keep it below --heartbeat-timeout; 0 "
        "means no limit")
    max_response_buffer: int = option(
        16 * 1024 * 1024, "HTTP front: bytes of response held for a client that reads slower "
        "than the app writes; above, the worker is paused when the request is its only "
        "session, else the request fails and the connection is dropped; 0 means no limit",
        shown="16M")
    locator_port: int = option(10053, "locator port (a free one if it is busy)")
    storage: str | None = option(
        None, "storage service directory", kind=str, metavar="DIR", shown="in memory")
    workdir: str | None = option(
        None, "the workers' working directory", kind=str, metavar="DIR",
        shown="the current directory")
    env: tuple[str, ...] = option(
        (), "worker environment, as the manifest's `environment`; repeatable", kind=str,
        repeat=True, metavar="NAME=VALUE", shown="the manifest's")
    env_file: str | None = option(
        None, "read worker environment from this file of NAME=VALUE lines (# comments; "
        "--env wins)", kind=str, metavar="FILE")
    powered_by: bool = option(True, "HTTP front: add X-Powered-By: Cocaine to responses, as "
                              "Cocaine's native proxy does")
    server_header: bool = option(
        True, "HTTP front: add Server: cocaine-http/<version> when the app sends none")
    date_header: bool = option(True, "HTTP front: add Date when the app sends none")
    reload: bool = option(False, "restart the workers when a watched file changes")
    reload_dir: tuple[str, ...] = option(
        (), "directory to watch; repeatable", kind=str, repeat=True, metavar="DIR",
        shown="the app's directory")
    reload_include: tuple[str, ...] = option(
        (), "glob of files that trigger a reload; repeatable", kind=str, repeat=True,
        metavar="GLOB", shown="*.py")
    reload_exclude: tuple[str, ...] = option(
        (), "glob of files or folders that never trigger a reload, added to the defaults; "
        "repeatable", kind=str, repeat=True, metavar="GLOB",
        shown=".*, *.py[cod], __pycache__, *~")

    def __post_init__(self) -> None:
        for name in ("port", "locator_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be between 0 and 65535, "
                    f"got {getattr(self, name)}")
        if self.protocol not in (0, 1):
            raise ConfigError(f"--protocol must be 0 (v0.11) or 1 (v0.12), got {self.protocol}")
        if self.workers < 0:
            raise ConfigError("--workers must not be negative")
        for name in ("request_timeout", "header_timeout", "keep_alive_timeout",
                     "client_idle_timeout", "max_response_buffer"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if sum(x is not None for x in (self.slave, self.manifest)) > 1:
            raise ConfigError("give either --slave or --manifest, not both")

    def environment(self) -> dict[str, str]:
        """--env-file, then --env pairs, as a dict.

        Raises:
            ConfigError: a line or pair that is not NAME=VALUE, or an unreadable file.
        """
        env = read_env_file(self.env_file) if self.env_file else {}
        for item in self.env:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ConfigError(f"--env expects NAME=VALUE, got {item!r}")
            env[name] = value
        return env

    def profile_overrides(self) -> dict[str, Any]:
        """The profile options given on the command line."""
        return {n: getattr(self, n) for n in PROFILE_FIELDS if getattr(self, n) is not None}


def read_env_file(path: str) -> dict[str, str]:
    """NAME=VALUE lines (as uvicorn's --env-file reads a .env file): blank lines and `#`
    comments skipped, an `export ` prefix allowed, a value in matching quotes unquoted.

    Raises:
        ConfigError: the file cannot be read, or a line is not NAME=VALUE.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read --env-file {path!r}: {exc.strerror}") from None
    env: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, value = text.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not name.replace("_", "a").isalnum():
            raise ConfigError(f"{path}:{number}: expected NAME=VALUE, got {line!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name] = value
    return env
