# Strategy: the deploy files are the ones cocaine-tool takes (manifest.json, profile.json and a
# tar.gz of the app folder), so an app set up here deploys with either tool. One module owns how
# they are read, written and packed, and the three commands built on them: `init` writes them,
# `pack` builds the archive, `deploy` uploads it with the services Client into the storage layout
# the v0.11 runtime reads (`manifests/<app>`, `profiles/<name>`, `apps/<app>`, each a msgpack
# value, tagged as cocaine-tool tags them) and starts the app through the node service. The dev
# runtime reads the same files (`cocaine-http dev --manifest`) and unpacks the same archive, so
# what runs locally is what gets deployed. Every failure is one line and exit status 1 (2 for
# usage errors); progress goes to stdout.
"""`cocaine-http init`, `pack` and `deploy`: the deploy files, the archive and the upload."""

from __future__ import annotations

import asyncio
import fnmatch
import io
import json
import os
import stat
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Config, OptionParser, env_for, option
from ..errors import CocaineError, ConfigError, ServiceError
from ..protocol.dialect import pack as msgpack_value
from ..services.definitions import unpack_value

MANIFEST = "manifest.json"
PROFILE = "profile.json"
SLAVE = "worker"
DEFAULT_LOCATOR = "127.0.0.1:10053"
#: Never packed: version control, caches and the archives this command writes.
DEFAULT_EXCLUDE = (".git", ".hg", ".svn", "__pycache__", "*.py[cod]", ".pytest_cache",
                   ".mypy_cache", "*.tar.gz")
#: Storage tags, as cocaine-tool writes them (its `tags.py`).
APP_TAGS = ["app"]
PROFILE_TAGS = ["profile"]
RUNLIST_TAGS = ["runlist"]
#: The profile `init` writes: the runtime's defaults, spelled out so they are easy to change.
INIT_PROFILE: dict[str, Any] = {
    "isolate": {"type": "process", "args": {}},
    "pool-limit": 10,
    "concurrency": 10,
    "queue-limit": 100,
    "startup-timeout": 10,
    "heartbeat-timeout": 30,
    "idle-timeout": 600,
    "termination-timeout": 5,
}

EXIT_FAILED = 1
EXIT_USAGE = 2


class DeployError(CocaineError):
    """A deploy step failed; the message says which and why, in one line."""


# -- the files -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """What the runtime reads from `manifests/<app>`: the slave file and its environment."""

    slave: str
    environment: dict[str, str]
    raw: dict[str, Any]


def read_json(path: str, what: str) -> dict[str, Any]:
    """A JSON object from a file.

    Raises:
        ConfigError: the file is missing, is not JSON, or is not an object.
    """
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"no {what} {path!r}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {path!r}: {' '.join(str(exc).split())}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} {path!r} must hold a JSON object")
    return value


def read_manifest(path: str) -> Manifest:
    """The manifest at `path`, checked as the runtime would use it.

    Raises:
        ConfigError: no `slave` string, or an `environment` that is not string pairs.
    """
    raw = read_json(path, "manifest")
    slave = raw.get("slave")
    if not isinstance(slave, str) or not slave:
        raise ConfigError(f"manifest {path!r}: \"slave\" must name the slave file")
    env = raw.get("environment", {})
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ConfigError(f"manifest {path!r}: \"environment\" must map names to strings")
    return Manifest(slave, dict(env), raw)


def check_slave(app_dir: str, slave: str) -> str:
    """The slave's absolute path in `app_dir`, checked the way the runtime's execve would fail.

    Raises:
        ConfigError: the file is missing, not executable, or has no #! line.
    """
    path = os.path.abspath(os.path.join(app_dir, slave))
    if not os.path.isfile(path):
        raise ConfigError(f"no slave file {path!r}")
    if not os.access(path, os.X_OK):
        raise ConfigError(f"slave {path!r} is not executable: the runtime executes it itself "
                          f"(chmod +x {slave})")
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"#!" and not _is_binary(path):
        raise ConfigError(f"slave {path!r} has no #! line: the runtime executes it itself, so "
                          "its first line must name its interpreter")
    return path


def _is_binary(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def _excluded(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def pack_dir(app_dir: str, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> tuple[bytes, int]:
    """The app folder as the runtime unpacks it: a tar.gz of its content, paths relative to it
    (what cocaine-tool's `app upload` sends). Returns (archive, number of files).

    Raises:
        ConfigError: `app_dir` is not a directory.
    """
    if not os.path.isdir(app_dir):
        raise ConfigError(f"{app_dir!r} is not a directory")
    buffer = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for root, dirs, files in os.walk(app_dir):
            dirs[:] = sorted(d for d in dirs if not _excluded(d, exclude))
            for name in sorted(files):
                if _excluded(name, exclude):
                    continue
                path = os.path.join(root, name)
                tar.add(path, arcname=os.path.relpath(path, app_dir), recursive=False)
                count += 1
    return buffer.getvalue(), count


def unpack(archive: bytes, dest: str) -> None:
    """Unpack an app archive into `dest`, as the runtime does into `<spool>/<app>`.

    Raises:
        ConfigError: the archive is not a tar.gz, or a member would land outside `dest`.
    """
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            for member in tar.getmembers():
                target = os.path.realpath(os.path.join(root, member.name))
                if os.path.commonpath([root, target]) != root or member.issym() \
                        or member.islnk() or member.isdev():
                    raise ConfigError(f"unsafe archive member {member.name!r}")
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            for member in tar.getmembers():
                tar.extract(member, root, set_attrs=False, **safe)  # type: ignore[arg-type]
                if member.isfile():
                    os.chmod(os.path.join(root, member.name), member.mode & 0o755 | 0o600)
    except tarfile.TarError as exc:
        raise ConfigError(f"not an app archive: {exc}") from None


# -- cocaine-http init ---------------------------------------------------------------------------

SLAVE_SCRIPT = '''#!{python}
"""The slave cocaine-runtime starts: serves {target} as a Cocaine worker."""

import sys

from cocaine_http.cli import main

sys.exit(main([{target!r}, *sys.argv[1:]]))
'''


@dataclass(frozen=True)
class InitOptions:
    """Options of `cocaine-http init`."""

    dir: str = option(".", "the app folder to write the files in", metavar="DIR")
    python: str = option(
        "/usr/bin/env python3", "the slave's interpreter on the nodes: a path to the Python "
        "(of a venv) that has cocaine-http and the app's dependencies", metavar="PATH")
    venv: str | None = option(
        None, "the venv on the nodes that has cocaine-http and the app's dependencies: the "
        "slave's interpreter is its bin/python (instead of --python)", kind=str, metavar="DIR")
    slave: str = option(SLAVE, "name of the slave script", metavar="FILE")
    force: bool = option(False, "overwrite existing files")


def init(argv: Sequence[str]) -> int:
    """`cocaine-http init module:attr [options]`: write manifest.json, profile.json, slave."""
    parser = OptionParser(
        prog="cocaine-http init", description="Write the deploy files of an app: an executable "
        "slave script serving module:attr, manifest.json (worker options given here go to its "
        "environment) and profile.json (the runtime's defaults).")
    parser.add_argument("target", metavar="module:attr", help="the app to serve")
    parser.add_table(InitOptions, "init options")
    parser.add_table(Config, "worker options (written to the manifest's environment)")
    ns = parser.parse_args(list(argv))
    opts = InitOptions(**OptionParser.values(ns, InitOptions))
    worker = OptionParser.values(ns, Config)
    Config(**worker)  # checked now, not on the nodes
    if ":" not in ns.target:
        raise ConfigError(f'app must be given as "module:attribute", got {ns.target!r}')
    python = os.path.join(opts.venv, "bin", "python") if opts.venv else opts.python
    if not python.startswith("/"):
        raise ConfigError(f"the #! line needs an absolute path, got {python!r}")
    files = {
        opts.slave: SLAVE_SCRIPT.format(python=python, target=ns.target),
        MANIFEST: _json({"slave": opts.slave, "environment": env_for(worker)}),
        PROFILE: _json(INIT_PROFILE),
    }
    os.makedirs(opts.dir, exist_ok=True)
    existing = [n for n in files if os.path.exists(os.path.join(opts.dir, n))]
    if existing and not opts.force:
        raise ConfigError(f"{', '.join(existing)} already exist in {opts.dir!r} "
                          "(--force overwrites)")
    for name, text in files.items():
        path = os.path.join(opts.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path}")
    slave = os.path.join(opts.dir, opts.slave)
    os.chmod(slave, os.stat(slave).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"try it: cocaine-http dev --manifest {os.path.join(opts.dir, MANIFEST)}")
    return 0


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False) + "\n"


# -- cocaine-http pack ---------------------------------------------------------------------------


def _exclude_option() -> Any:
    return option((), f"glob of files and folders left out, added to "
                  f"{', '.join(DEFAULT_EXCLUDE)}; repeatable", kind=str, repeat=True,
                  metavar="GLOB")


@dataclass(frozen=True)
class PackOptions:
    """Options of `cocaine-http pack`."""

    output: str | None = option(None, "where to write the archive", kind=str, metavar="FILE",
                                shown="<app>.tar.gz")
    exclude: tuple[str, ...] = _exclude_option()


def _app_files(app_dir: str) -> tuple[Manifest, str]:
    manifest = read_manifest(os.path.join(app_dir, MANIFEST))
    return manifest, check_slave(app_dir, manifest.slave)


def pack(argv: Sequence[str]) -> int:
    """`cocaine-http pack [DIR]`: the archive alone."""
    parser = OptionParser(prog="cocaine-http pack",
                          description="Build the app archive the runtime unpacks (a tar.gz of "
                          "the app folder) after checking its manifest and slave.")
    parser.add_argument("dir", nargs="?", default=".", metavar="DIR", help="the app folder")
    parser.add_table(PackOptions, "pack options")
    ns = parser.parse_args(list(argv))
    opts = PackOptions(**OptionParser.values(ns, PackOptions))
    _app_files(ns.dir)
    archive, count = pack_dir(ns.dir, DEFAULT_EXCLUDE + opts.exclude)
    output = opts.output or f"{app_name(ns.dir)}.tar.gz"
    with open(output, "wb") as f:
        f.write(archive)
    print(f"packed {count} files of {ns.dir} into {output} ({_size(len(archive))})")
    return 0


def app_name(app_dir: str) -> str:
    """The default app name: the app folder's name."""
    return os.path.basename(os.path.abspath(app_dir)) or "app"


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


# -- cocaine-http deploy -------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployOptions:
    """Options of `cocaine-http deploy`."""

    name: str | None = option(None, "app name", kind=str, shown="the folder's name")
    profile_name: str | None = option(None, "profile name in storage", kind=str,
                                      shown="the app name")
    locator: str = option(DEFAULT_LOCATOR, "the runtime's locator, host:port")
    timeout: float = option(30.0, "seconds each step may take")
    exclude: tuple[str, ...] = _exclude_option()
    start: bool = option(True, "start (or restart) the app through the node service")
    runlist: str | None = option(
        None, "also add the app to this runlist, which the runtime starts at boot", kind=str,
        metavar="NAME")


async def upload(app_dir: str, opts: DeployOptions, say: Any = print) -> dict[str, Any]:
    """Pack, upload and start the app in `app_dir`; returns the node's answer for it.

    Raises:
        ConfigError: the deploy files are wrong.
        DeployError: a step failed (its message names the step).
    """
    from ..services.client import Client

    manifest, _ = _app_files(app_dir)
    profile = read_json(os.path.join(app_dir, PROFILE), "profile")
    name = opts.name or app_name(app_dir)
    profile_name = opts.profile_name or name
    archive, count = pack_dir(app_dir, DEFAULT_EXCLUDE + opts.exclude)
    say(f"packed {count} files of {app_dir} ({_size(len(archive))})")
    async with Client(opts.locator, timeout=opts.timeout) as client:
        storage = await _step(f"reach the storage service through {opts.locator}",
                              client.service("storage"))
        for label, namespace, key, value, tags in (
            (f"archive ({_size(len(archive))})", "apps", name, msgpack_value(archive), APP_TAGS),
            ("manifest", "manifests", name, msgpack_value(manifest.raw), APP_TAGS),
            ("profile", "profiles", profile_name, msgpack_value(profile), PROFILE_TAGS),
        ):
            say(f"uploading the {label} to {namespace}/{key}")
            await _step(f"upload the {label}", storage.write(namespace, key, value, tags))
        if opts.runlist is not None:
            await _add_to_runlist(storage, opts.runlist, name, profile_name, say)
        if not opts.start:
            return {}
        node = await _step("reach the node service", client.service("node"))
        running = await _step("list the running apps", node.list())
        if name in (running or []):
            say(f"stopping the running {name}")
            await _step(f"stop {name}", node.pause_app([name]))
        say(f"starting {name} with profile {profile_name}")
        answer = await _step(f"start {name}", node.start_app({name: profile_name}))
    result = _text(answer.get(name) if isinstance(answer, dict) else answer)
    if result != "the app has been started":
        raise DeployError(f"the node did not start {name}: {result}")
    say(f"{name}: {result}")
    return {name: result}


async def _add_to_runlist(storage: Any, runlist: str, name: str, profile: str,
                          say: Any) -> None:
    """Read `runlists/<runlist>` (a missing one is empty), add {name: profile}, write it back."""
    try:
        current = unpack_value(await storage.read("runlists", runlist))
    except ServiceError:  # not found
        current = {}
    except (CocaineError, OSError, asyncio.TimeoutError) as exc:
        raise DeployError(f"cannot read runlist {runlist}: {exc}") from None
    if not isinstance(current, dict):
        raise DeployError(f"runlist {runlist} is not a map of apps to profiles")
    current[name] = profile
    say(f"adding {name} to runlist {runlist}")
    await _step(f"write runlist {runlist}",
                storage.write("runlists", runlist, msgpack_value(current), RUNLIST_TAGS))


async def _step(what: str, pending: Any) -> Any:
    try:
        return await pending
    except (CocaineError, OSError, asyncio.TimeoutError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise DeployError(f"cannot {what}: {text}") from None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def deploy(argv: Sequence[str]) -> int:
    """`cocaine-http deploy [DIR]`: pack, upload, start."""
    parser = OptionParser(
        prog="cocaine-http deploy",
        description="Deploy the app in DIR (manifest.json, profile.json, the slave) to a "
        "cocaine-runtime: pack the folder, upload archive, manifest and profile to its storage "
        "service and start the app through its node service.")
    parser.add_argument("dir", nargs="?", default=".", metavar="DIR", help="the app folder")
    parser.add_table(DeployOptions, "deploy options")
    ns = parser.parse_args(list(argv))
    opts = DeployOptions(**OptionParser.values(ns, DeployOptions))
    asyncio.run(upload(ns.dir, opts))
    return 0


COMMANDS = {"init": init, "pack": pack, "deploy": deploy}


def main(argv: Sequence[str]) -> int:
    """Entry point of `cocaine-http init|pack|deploy ...` (argv starts with the command)."""
    command, *rest = argv
    prog = f"cocaine-http {command}"
    try:
        return COMMANDS[command](rest)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeployError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
