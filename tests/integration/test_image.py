"""The container image, built the Dockerfile's way without a container engine.

The Dockerfile is read, not paraphrased: the builder's COPY lines copy the build context (through
``.dockerignore``) and every RUN marked ``# image-test: <step>`` runs as written, its image paths
(``/src``, ``/wheels``, ``/opt/streamspace``) moved under a temporary root (``imagebuild``). So
the wheel is built from the same sources and installed into a fresh virtualenv with the same pip
command.
The installed ``streamspace`` then runs the way the chart runs it: an unprivileged user, a
clean environment (the Dockerfile's ``ENV``), a read-only HOME, nothing writable but a temporary
directory; first ``--help`` of every command, then the real operator and facade against the
local control plane.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitfixtures import PUBLIC_FORMAT, PUBLIC_FORMAT_TEMPLATES, make_repo
from imagebuild import (
    DOCKERFILE,
    REPO,
    Image,
    Instruction,
    dockerignore,
    ignored,
    interpreter,
    parse,
)
from streamspace import __version__
from streamspace_dev import process
from streamspace_testing import GROUP, VERSION, Objects

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

GRACE = 30.0


@dataclass
class Installed:
    image: Image
    home: Path  # read-only
    tmp: Path  # the only place the user may write (the pod's emptyDir at /tmp)
    user: int | None  # the unprivileged user the commands run as (None: we are not root)

    def environment(self, **extra: str) -> dict[str, str]:
        return {
            **self.image.env(),
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "SYNC_WORK_DIR": str(self.tmp / "streamspace-repos"),
            **extra,
        }

    def popen_options(self, env: dict[str, str]) -> dict[str, Any]:
        identity: dict[str, Any] = {}
        if self.user is not None:
            gid = pwd.getpwuid(self.user).pw_gid
            identity = {"user": self.user, "group": gid, "extra_groups": []}
        return {"env": env, "cwd": "/", **identity}

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.image.venv / "bin" / "streamspace"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self.popen_options(self.environment(**extra)),
        )


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def installed(instructions: list[Instruction]) -> Iterator[Installed]:
    """The Dockerfile's build run here, once for the module (it downloads every dependency)."""
    base = next(s for s in instructions if s.keyword == "ARG" and s.words[0].startswith("PYTHON"))
    minor = re.search(r"python:(\d+\.\d+)", base.words[0])
    assert minor is not None, base
    user = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="streamspace-image-"))
    root.chmod(0o755)  # the unprivileged user reaches the virtualenv through it
    try:
        python = interpreter(minor.group(1), for_others=user is not None)
        image = Image(root, instructions, python)
        image.build()
        for path in [image.venv, *image.venv.rglob("*")]:  # nobody writes into the install
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o222)
        home = root / "home"
        home.mkdir(mode=0o555)
        tmp = root / "tmp"
        tmp.mkdir(mode=0o700)
        if user is not None:
            os.chown(tmp, user, pwd.getpwuid(user).pw_gid)
        yield Installed(image, home, tmp, user)
    finally:
        for path in [root, *root.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        shutil.rmtree(root)


def test_the_dockerfile_states_the_runtime_contract(instructions: list[Instruction]) -> None:
    final = [s for s in instructions if s.stage == instructions[-1].stage]
    assert instructions[-1].stage == 1, "two stages: builder and runtime"

    def last(keyword: str) -> list[str]:
        return [s for s in final if s.keyword == keyword][-1].words

    assert last("USER") == ["10001:10001"]
    assert last("ENTRYPOINT") == ["streamspace"]
    assert last("CMD") == ["--help"]
    env = dict(pair.partition("=")[::2] for s in final if s.keyword == "ENV" for pair in s.words)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["SYNC_WORK_DIR"].startswith("/tmp/")  # noqa: S108 - the pod's emptyDir
    labels = {w.partition("=")[0] for s in final if s.keyword == "LABEL" for w in s.words}
    for label in ("title", "description", "source", "licenses", "version", "revision"):
        assert f"org.opencontainers.image.{label}" in labels
    version = next(w for s in final if s.keyword == "ARG" for w in s.words if "VERSION=" in w)
    assert version == f"VERSION={__version__}", "the image's default version is the package's"
    base = next(s.words[0] for s in instructions if s.keyword == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base), base
    runs = [s for s in instructions if s.keyword == "RUN"]
    assert all(s.marker is not None for s in runs), "every RUN says how the image test runs it"
    assert [s.marker for s in runs if s.marker != "skip"] == ["wheels", "venv", "install"]


def test_the_context_leaves_out_what_the_image_must_not_hold() -> None:
    patterns = dockerignore()
    for path in (
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "devtools/streamspace_dev/cli.py",
        "core/streamspace/__pycache__/cli.cpython-311.pyc",
        "core/streamspace.egg-info/PKG-INFO",
        ".streamspace/kubeconfig",
        "docs/ARCHITECTURE.md",
    ):
        assert ignored(path, patterns), path
    for path in ("pyproject.toml", "README.md", "core/streamspace/cli.py", "facade/x/app.py"):
        assert not ignored(path, patterns), path


def test_the_wheel_holds_the_product_and_its_migrations(installed: Installed) -> None:
    wheels = sorted(installed.image.path("/wheels").glob("streamspace-*.whl"))
    assert [w.name for w in wheels] == [f"streamspace-{__version__}-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
    assert {n.split("/")[0] for n in names if "/" in n} == {
        "streamspace",
        "streamspace_operator",
        "streamspace_facade",
        f"streamspace-{__version__}.dist-info",
    }
    migrations = REPO / "core/streamspace/db/migrations"
    site = next(installed.image.venv.glob("lib/python3.*/site-packages"))
    assert not (site / "streamspace_dev").exists()
    for sql in sorted(migrations.glob("*.sql")):
        assert (site / "streamspace/db/migrations" / sql.name).read_text() == sql.read_text()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ((), "operator"),
        (("operator",), "--liveness"),
        (("facade",), "--port"),
        (("migrate",), "DATABASE_URL"),
        (("token",), "create"),
    ],
)
def test_commands_run_from_the_install(
    installed: Installed, command: tuple[str, ...], expected: str
) -> None:
    """As the image's user: no HOME to write to, nothing writable but the temporary directory."""
    result = installed.run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert result.stderr == ""


def test_commands_run_without_home(installed: Installed) -> None:
    env = {k: v for k, v in installed.environment().items() if k != "HOME"}
    for command in ("operator", "facade", "migrate"):
        result = subprocess.run(
            [str(installed.image.venv / "bin" / "streamspace"), command, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **installed.popen_options(env),
        )
        assert (result.returncode, result.stderr) == (0, ""), command


def test_the_developer_tooling_is_not_installed(installed: Installed) -> None:
    listed = installed.run("--help").stdout
    assert re.search(r"^\s+operator\s", listed, re.MULTILINE), listed
    assert not re.search(r"^\s+dev\s", listed, re.MULTILINE), listed
    result = installed.run("dev", "--help")
    assert result.returncode == 2
    assert "invalid choice: 'dev'" in result.stderr


def test_migrate_fails_clearly_without_a_database(installed: Installed) -> None:
    """The chart's hook Job: no database configured, or one that does not answer → non-zero
    and one line saying why (a JSON line with LOG_FORMAT=json), never a traceback."""
    missing = installed.run("migrate")
    assert missing.returncode == 2
    assert "no database: set DATABASE_URL" in missing.stderr
    nowhere = f"postgresql://streamspace:hunter2@127.0.0.1:{process.free_port()}/streamspace"
    down = installed.run("migrate", DATABASE_URL=nowhere, LOG_FORMAT="json")
    assert down.returncode == 2, down.stderr
    (line,) = [json.loads(x) for x in down.stderr.splitlines()]
    assert line["level"] == "ERROR"
    assert line["message"].startswith("streamspace: connection failed")
    assert "hunter2" not in down.stderr


def test_migrate_applies_the_packaged_migrations(installed: Installed, database: str) -> None:
    """The hook Job's work, from the wheel: every shipped migration, then nothing to do."""
    shipped = len(list((REPO / "core/streamspace/db/migrations").glob("*.sql")))
    first = installed.run("migrate", DATABASE_URL=database)
    assert first.returncode == 0, first.stderr
    assert f"{shipped} migration(s) applied" in first.stdout
    again = installed.run("migrate", DATABASE_URL=database)
    assert again.returncode == 0 and "schema is up to date" in again.stdout


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
            return int(resp.status)
    except OSError:
        return 0


def test_the_processes_run_from_the_install(
    installed: Installed, cluster: Any, api: Any, namespace: str, database: str
) -> None:
    """The operator (with peering, as deployed) and the facade from the installed wheel, as the
    unprivileged user with a read-only HOME and a database: both become ready, the operator
    syncs a Git repository (dulwich writes under SYNC_WORK_DIR), both log JSON, and both exit 0
    on SIGTERM. A write outside the temporary directory would have failed them."""
    kubeconfig = installed.tmp / "kubeconfig"
    shutil.copy(cluster.kubeconfig, kubeconfig)
    if installed.user is not None:
        os.chown(kubeconfig, installed.user, -1)
    git = make_repo(installed.tmp / "templates", PUBLIC_FORMAT)
    liveness, port = process.free_port(), process.free_port()
    env = installed.environment(
        KUBECONFIG=str(kubeconfig),
        NAMESPACE=namespace,
        DATABASE_URL=database,
        ALLOW_LOCAL_REPOS="true",
        LOG_FORMAT="json",
        JWT_SECRET="image-test-jwt-secret-of-enough-length",
        POD_ID="streamspace-image-test",
        METRICS_PORT=str(process.free_port()),
    )
    exe = str(installed.image.venv / "bin" / "streamspace")
    argv = {
        "operator": [exe, "operator", f"--liveness=http://127.0.0.1:{liveness}/healthz"],
        "facade": [exe, "facade", "--host=127.0.0.1", f"--port={port}"],
    }
    probes = {
        "operator": f"http://127.0.0.1:{liveness}/healthz",
        "facade": f"http://127.0.0.1:{port}/ready",
    }
    logs = {name: installed.tmp / f"{name}.log" for name in argv}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    objects = Objects(api, namespace)
    try:
        for name, command in argv.items():
            with logs[name].open("wb") as out:
                procs[name] = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    **installed.popen_options(env),
                )
        for name, url in probes.items():
            up = process.wait_until(lambda url=url: _get(url) == 200, 60)
            assert up, f"{name}: {logs[name].read_text()[-3000:]}"
        objects.create("templaterepositories", "templates", {"url": git.url})

        def synced() -> dict[str, Any]:
            found = objects.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "templaterepositories", "templates"
            )
            return dict(found.get("status") or {})

        ready = process.wait_until(lambda: synced().get("phase") == "Ready", 60)
        assert ready, f"{synced()}: {logs['operator'].read_text()[-3000:]}"
        assert synced()["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES)
        assert any((installed.tmp / "streamspace-repos").iterdir())
        for name, proc in procs.items():
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(GRACE) == 0, f"{name}: {logs[name].read_text()[-3000:]}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    for name, log in logs.items():
        text = log.read_text()
        records = [json.loads(line) for line in text.splitlines()]  # JSON lines only
        assert records, name
        for refusal in ("Permission denied", "Read-only file system"):
            assert refusal not in text, f"{name}: {text[-3000:]}"
