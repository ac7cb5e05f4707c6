"""Fixtures of the conformance suite: the real cocaine-runtime v0.11 and its tornado proxy (one
of each per test session, every app deployed through the storage), and `cocaine-http dev` for
the same apps (one process per app, started on first use).

The real peers come from `make conformance` (it builds them and sources env.sh): COCAINE_RUNTIME,
PY2 and PY2SITE must be set, or every test here errors out with the reason (never a skip).

Fixtures:
    real: the started RealRuntime (`.locator`, `.log()`, `.root`).
    proxy: the started TornadoProxy (`.url`).
    ours: the started `cocaine-http proxy` on the same runtime (OurProxy: `.url`, `.rss_kib()`).
    dev: `dev(name)` -> the started DevProcess of app `name` (`.url`, `.log()`).
    fronts: {"real": base url of app routes behind the tornado proxy, "dev": same under dev},
        as a function `fronts(name)`: both URLs end in `/<name>/http`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conformance.apps import interop
from tests.conformance.realruntime import (
    REPO,
    AppSpec,
    DevProcess,
    OurProxy,
    RealRuntime,
    TornadoProxy,
    http_slave,
    script_slave,
    slave_script,
)

#: name -> the app's `cocaine-http` arguments (the same after `cocaine-http dev`)
HTTP_APPS: dict[str, list[str]] = {
    "flask": ["examples.flask_app.app:app"],
    "djwsgi": ["examples.django_project.wsgi:application"],
    "djasgi": ["examples.django_project.asgi:application"],
    "fastapi": ["examples.fastapi_app:app"],
    "rawasgi": ["tests.conformance.apps.raw_asgi:app"],
    "rawwsgi": ["tests.conformance.apps.raw_wsgi:app"],
}
ECHO_SCRIPT = REPO / "examples" / "echo_worker.py"

#: Profiles of the interop apps: short timers, so that idle terminate and heartbeat-timeout
#: reaping happen within seconds.
PROFILES = {
    "idle": {"idle-timeout": 2, "pool-limit": 1},
    "reap": {"heartbeat-timeout": 3, "pool-limit": 1},
    "single": {"pool-limit": 1},
    "quick-start": {"startup-timeout": 3, "pool-limit": 1},
}

#: docs/deploy.md's mistake, kept as a deployment: Django's ASGI app under lifespan="on".
DJANGO_LIFESPAN_ON = """\
import cocaine_http
from examples.django_project.asgi import application
sys.exit(cocaine_http.run(application, lifespan="on"))"""


def deploy_doc_slave() -> str:
    """docs/deploy.md's Python-API slave, pointed at the example Django project."""
    text = (REPO / "docs" / "deploy.md").read_text()
    block = text.split("The Python API works as well", 1)[1].split("```python\n", 1)[1]
    code = block.split("```", 1)[0]
    lines = code.replace("myproject.asgi", "examples.django_project.asgi").splitlines()
    assert lines[0].startswith("#!"), lines[0]
    return slave_script("\n".join(lines[1:]))


def _need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the conformance suite with `make conformance`, "
                    "which builds the real cocaine-runtime v0.11 and sources its env.sh",
                    pytrace=False)
    return value


def _apps(taps: Path) -> dict[str, AppSpec]:
    apps = {name: AppSpec(http_slave(*args)) for name, args in HTTP_APPS.items()}
    apps["echo"] = AppSpec(script_slave(ECHO_SCRIPT))
    apps["flood"] = AppSpec(http_slave("tests.conformance.apps.proxy_flood:app"))
    apps["spare"] = AppSpec(script_slave(ECHO_SCRIPT), runlist=False)
    apps["djlifespan"] = AppSpec(slave_script(DJANGO_LIFESPAN_ON), profile="quick-start")
    apps["deploydoc"] = AppSpec(deploy_doc_slave(), profile="single")
    env = {"CONFORMANCE_TAP_DIR": str(taps)}
    apps["tapped"] = AppSpec(slave_script(interop.TAPPED_SLAVE), profile="single",
                             environment=env)
    apps["idler"] = AppSpec(slave_script(interop.TAPPED_SLAVE), profile="idle",
                            environment=env)
    apps["freezer"] = AppSpec(slave_script(interop.FREEZER_SLAVE), profile="reap",
                              environment=env)
    return apps


@pytest.fixture(scope="session")
def conformance_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance")


@pytest.fixture(scope="session")
def taps(conformance_root: Path) -> Path:
    path = conformance_root / "taps"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def real(conformance_root: Path, taps: Path) -> Iterator[RealRuntime]:
    binary = _need("COCAINE_RUNTIME")
    runtime = RealRuntime(binary, conformance_root / "runtime", _apps(taps), PROFILES)
    runtime.start()
    try:
        yield runtime
    finally:
        status = runtime.stop()
        assert status == 0, f"cocaine-runtime exited with {status}:\n{runtime.log()[-3000:]}"
        assert runtime.leftovers() == [], "workers outlived the runtime"


@pytest.fixture(scope="session")
def proxy(real: RealRuntime, conformance_root: Path) -> Iterator[TornadoProxy]:
    front = TornadoProxy(_need("PY2"), _need("PY2SITE"), real.locator, conformance_root)
    front.start()
    try:
        yield front
    finally:
        front.stop()


@pytest.fixture(scope="session")
def ours(real: RealRuntime, conformance_root: Path) -> Iterator[OurProxy]:
    """`cocaine-http proxy` in front of the same runtime as the tornado proxy."""
    front = OurProxy([real.locator], conformance_root,
                     options=("--client-idle-timeout", "5", "--no-access-log"))
    front.start()
    try:
        yield front
    finally:
        front.stop()


@pytest.fixture(scope="session")
def dev(conformance_root: Path) -> Iterator[Callable[[str], DevProcess]]:
    started: dict[str, DevProcess] = {}

    def get(name: str) -> DevProcess:
        if name not in started:
            if name == "echo":  # dev executes the slave file itself: the runtime's slave
                slave = conformance_root / "dev-echo-slave"
                slave.write_text(script_slave(ECHO_SCRIPT))
                slave.chmod(0o755)
                args = ["--slave", str(slave)]
            else:
                args = HTTP_APPS[name]
            process = DevProcess(args, conformance_root, name)
            process.start()
            started[name] = process
        return started[name]

    try:
        yield get
    finally:
        for process in started.values():
            process.stop()


@pytest.fixture(scope="session")
def fronts(proxy: TornadoProxy, dev: Callable[[str], DevProcess]
           ) -> Callable[[str], dict[str, str]]:
    def urls(name: str) -> dict[str, str]:
        return {"real": f"{proxy.url}/{name}/http", "dev": f"{dev(name).url}/{name}/http"}

    return urls




@pytest.fixture(scope="session")
def py2_statuses() -> frozenset[int]:
    """The keys of Python 2's httplib.responses (the real proxy's reason phrases)."""
    import subprocess

    out = subprocess.run([_need("PY2"), "-c", "import httplib; print(sorted(httplib.responses))"],
                         capture_output=True, text=True, check=True).stdout
    return frozenset(int(n) for n in out.strip("[]\n").split(","))
