# Strategy: the deploy files are the ones cocaine-tool takes (manifest.json, profile.json and a
# tar.gz of the app folder), so an app set up here deploys with either tool. One module owns how
# they are read, written and packed, and the three commands built on them: `init` writes them,
# `pack` builds the archive, `deploy` uploads it with the services Client into the storage layout
# the runtime reads (`manifests/<app>`, `profiles/<name>`, `apps/<app>`, each a msgpack value,
# tagged as cocaine-tool tags them) and starts the app through the node service. Both runtime
# generations read the same storage layout; what differs (the services' dialect, the node's
# calls and answers, the profile's isolate and key names) is one `Generation` per runtime in
# GENERATIONS, so the deploy itself is one code path. The dev runtime reads the same files
# (`cocaine-http dev --manifest`) and unpacks the same archive, so what runs locally is what gets
# deployed. Every failure is one line and exit status 1 (2 for usage errors); progress goes to
# stdout.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Config, OptionParser, env_for, option
from ..errors import CocaineError, ConfigError, ServiceError, ServiceUnavailableError
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
#: What the node answers for an app it started (the v0.11 node's words; v0.12 answers nothing).
STARTED = "the app has been started"

EXIT_FAILED = 1
EXIT_USAGE = 2


class DeployError(CocaineError):
    """A deploy step failed; the message says which and why, in one line."""


# -- the runtime generations ---------------------------------------------------------------------


def _v11_started(answer: Any, name: str) -> str | None:
    """v0.11 answers start_app with {app: outcome}, in words, per app."""
    result = _text(answer.get(name) if isinstance(answer, dict) else answer)
    return None if result == STARTED else result


def _v12_started(answer: Any, name: str) -> str | None:
    """v0.12 answers start_app with nothing once the app runs; a failure is an error reply."""
    return None


@dataclass(frozen=True)
class Generation:
    """What deploying differs in between runtime generations; the rest is shared.

    Attributes:
        protocol: the services' dialect (`Client(protocol=...)`, `--protocol`).
        runtime: the runtime's version, for messages.
        isolate: the isolate type that forks and executes the slave.
        isolates: other isolate types that runtime knows, with what they do instead.
        profile: the profile `init` writes: the runtime's defaults spelled out.
        renamed: keys the other generation reads, with the name this one reads them under.
        start_args: the node's start_app arguments for (app, profile).
        stop_args: the node's pause_app arguments for an app.
        start_failure: the failure text in the node's start_app answer, None when started.
    """

    protocol: int
    runtime: str
    isolate: str
    isolates: dict[str, str]
    profile: dict[str, Any]
    renamed: dict[str, str]
    start_args: Callable[[str, str], tuple[Any, ...]]
    stop_args: Callable[[str], tuple[Any, ...]]
    start_failure: Callable[[Any, str], str | None]


V11 = Generation(
    protocol=0, runtime="v0.11", isolate="process", isolates={},
    profile={
        "isolate": {"type": "process", "args": {}},
        "pool-limit": 10,
        "concurrency": 10,
        "queue-limit": 100,
        "startup-timeout": 10,
        "heartbeat-timeout": 30,
        "idle-timeout": 600,
        "termination-timeout": 5,
    },
    renamed={"handshake-timeout": "startup-timeout", "terminate-timeout": "termination-timeout"},
    start_args=lambda app, profile: ({app: profile},),
    stop_args=lambda app: ([app],),
    start_failure=_v11_started,
)
#: v0.12's node (`node::v2`) takes one app per call and reports failures as errors; its
#: fork/exec isolate is "legacy_process", while "process" (also its default) is the client of
#: an external isolate daemon [PLUG12 `node/src/module.cpp`, `node/src/node/profile.cpp`].
V12 = Generation(
    protocol=1, runtime="v0.12", isolate="legacy_process",
    isolates={"process": "v0.12's client of an external isolate daemon (start_app fails "
                         "without one)"},
    profile={
        "isolate": {"type": "legacy_process", "args": {"spool": "/var/spool/cocaine"}},
        "pool-limit": 10,
        "concurrency": 10,
        "queue-limit": 100,
        "handshake-timeout": 10,
        "heartbeat-timeout": 30,
        "terminate-timeout": 10,
    },
    renamed={"startup-timeout": "handshake-timeout", "termination-timeout": "terminate-timeout"},
    start_args=lambda app, profile: (app, profile),
    stop_args=lambda app: (app,),
    start_failure=_v12_started,
)
GENERATIONS = {g.protocol: g for g in (V11, V12)}
#: The profile `init` writes by default (v0.11's).
INIT_PROFILE = V11.profile


def generation(protocol: str | int) -> Generation:
    """The generation of `--protocol` (0: v0.11, 1: v0.12).

    Raises:
        ConfigError: another protocol.
    """
    try:
        return GENERATIONS[int(protocol)]
    except (KeyError, ValueError):
        raise ConfigError(f"protocol must be 0 (v0.11) or 1 (v0.12), got {protocol!r}") from None


def profile_warnings(profile: dict[str, Any], gen: Generation) -> list[str]:
    """What in `profile` the generation's runtime would not do as meant: an isolate that does
    not execute the slave, keys it does not read (it ignores them silently)."""
    warnings = []
    isolate = profile.get("isolate")
    kind = isolate.get("type", "process") if isinstance(isolate, dict) else "process"
    if kind != gen.isolate:
        what = gen.isolates.get(kind, f"not one of {gen.runtime}'s own (a plugin's, or unknown)")
        warnings.append(f"profile: isolate type {kind!r} is {what}; the isolate that executes "
                        f"the slave is {gen.isolate!r}")
    for key in sorted(set(profile) & set(gen.renamed)):
        warnings.append(f"profile: {gen.runtime} does not read {key!r}; it reads "
                        f"{gen.renamed[key]!r} for that")
    return warnings


class Node:
    """The node service's list, start and stop of an app, in the runtime's generation."""

    def __init__(self, service: Any, gen: Generation) -> None:
        self.service = service
        self.gen = gen

    async def running(self) -> list[str]:
        """The apps the node runs (v0.12 lists broken ones too)."""
        return list(await _step("list the running apps", self.service.list()) or [])

    async def start(self, name: str, profile: str) -> None:
        """Start `name` with `profile`.

        Raises:
            DeployError: the node did not start it; its answer says why.
        """
        answer = await _step(f"start {name}", self.service.start_app(
            *self.gen.start_args(name, profile)))
        failure = self.gen.start_failure(answer, name)
        if failure is not None:
            raise DeployError(f"the node did not start {name}: {failure}")

    async def stop(self, name: str) -> None:
        """Stop `name` (the node's pause_app)."""
        await _step(f"stop {name}", self.service.pause_app(*self.gen.stop_args(name)))

    async def restart(self, name: str, profile: str, say: Any = print) -> None:
        """Stop `name` if the node lists it (a v0.12 app that failed to start stays listed,
        and its start_app fails until it is stopped), then start it."""
        if name in await self.running():
            say(f"stopping the running {name}")
            await self.stop(name)
        say(f"starting {name} with profile {profile}")
        await self.start(name, profile)


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


def _protocol_option(what: str) -> Any:
    return option("0", f"the runtime to {what}: 0 is cocaine-runtime v0.11, 1 is v0.12 "
                  "(node::v2, \"protocol 1\")", choices=("0", "1"))


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
    protocol: str = _protocol_option("write the profile of")
    force: bool = option(False, "overwrite existing files")


def init(argv: Sequence[str]) -> int:
    """`cocaine-http init module:attr [options]`: write manifest.json, profile.json, slave."""
    parser = OptionParser(
        prog="cocaine-http init", description="Write the deploy files of an app: an executable "
        "slave script serving module:attr, manifest.json (worker options given here go to its "
        "environment) and profile.json (the defaults of the runtime --protocol names).")
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
        PROFILE: _json(generation(opts.protocol).profile),
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
    protocol: str = _protocol_option("deploy to")
    timeout: float = option(30.0, "seconds each step may take")
    exclude: tuple[str, ...] = _exclude_option()
    start: bool = option(True, "start (or restart) the app through the node service")
    runlist: str | None = option(
        None, "also add the app to this runlist, which the runtime starts at boot", kind=str,
        metavar="NAME")


async def upload(app_dir: str, opts: DeployOptions, say: Any = print) -> dict[str, Any]:
    """Pack, upload and start the app in `app_dir`; returns {app: "the app has been started"}
    ({} with start=False).

    Raises:
        ConfigError: the deploy files are wrong, or the protocol is unknown.
        DeployError: a step failed (its message names the step).
    """
    from ..services.client import Client

    gen = generation(opts.protocol)
    manifest, _ = _app_files(app_dir)
    profile = read_json(os.path.join(app_dir, PROFILE), "profile")
    for warning in profile_warnings(profile, gen):
        say(f"warning: {warning}")
    name = opts.name or app_name(app_dir)
    profile_name = opts.profile_name or name
    archive, count = pack_dir(app_dir, DEFAULT_EXCLUDE + opts.exclude)
    say(f"packed {count} files of {app_dir} ({_size(len(archive))})")
    async with Client(opts.locator, protocol=gen.protocol, timeout=opts.timeout) as client:
        storage = await _step(f"reach the storage service through {opts.locator}",
                              client.service("storage"), _other_runtime_hint(gen))
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
        node = Node(await _step("reach the node service", client.service("node")), gen)
        await node.restart(name, profile_name, say)
    say(f"{name}: {STARTED}")
    return {name: STARTED}


def _other_runtime_hint(gen: Generation) -> str:
    others = ", ".join(f"--protocol {g.protocol} for {g.runtime}"
                       for g in GENERATIONS.values() if g is not gen)
    return f" (deploying to {gen.runtime}; {others})"


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


async def _step(what: str, pending: Any, unavailable: str = "") -> Any:
    """Await one step; its failure becomes a DeployError naming the step. `unavailable` is
    added when no locator answered (a runtime of the other generation, most likely)."""
    try:
        return await pending
    except (CocaineError, OSError, asyncio.TimeoutError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        hint = unavailable if isinstance(exc, ServiceUnavailableError) else ""
        raise DeployError(f"cannot {what}: {text}{hint}") from None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def deploy(argv: Sequence[str]) -> int:
    """`cocaine-http deploy [DIR]`: pack, upload, start."""
    parser = OptionParser(
        prog="cocaine-http deploy",
        description="Deploy the app in DIR (manifest.json, profile.json, the slave) to a "
        "cocaine-runtime (v0.11, or v0.12 with --protocol 1): pack the folder, upload archive, "
        "manifest and profile to its storage service and start (or restart) the app through "
        "its node service.")
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
