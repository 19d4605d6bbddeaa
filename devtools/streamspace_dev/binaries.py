"""Build the local control plane's binaries from the Go module proxy, into a cache.

No container engine and no release downloads are available on our machines, but Go and the module
proxy are. ``k8s.io/kubernetes`` cannot be required as a plain dependency (its go.mod points every
``k8s.io/*`` staging module at ``./staging``), so a throw-away wrapper module is written that maps
each staging module to its published ``v0.<minor>.<patch>`` release, derived from the downloaded
go.mod so that it stays right for any version. etcd and kwok build as ordinary modules, and so
does ``helm`` (a tool rather than a part of the control plane: the chart tests install with it, so
``make test`` builds it with ``--with helm``; ``make run`` does not need it).

Everything lands in ``<cache>/<component>-<version>/bin``; a component whose binaries are already
there is not built again, so a second run builds nothing. Building is a step of its own
(``streamspace dev build``, run by ``make test``, ``make run`` and ``make bench`` before anything
starts): ``require`` — what the control plane and the test fixtures call — never builds, it says
which command to run. A cold build takes minutes, and shows which component it is on, how many
packages it has compiled, the time so far and what the last build took.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from streamspace.cli import CommandError
from streamspace_dev.buildprogress import FIRST_BUILD_ESTIMATE, Progress, minutes

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v4.3.1"
GO_MINIMUM = (1, 26)

MINIMAL_KUBE = ("kube-apiserver",)
FULL_KUBE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

BUILD_COMMAND = ".venv/bin/streamspace dev build --profile full --with helm"
"""What a person runs to build what the tests need (``make test`` and ``make run`` do it first)."""

_STAGING_REPLACE = re.compile(r"^\s*(?:replace\s+)?(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", re.M)
_NETWORK_FAILURE = re.compile(
    r"dial tcp|no such host|connection refused|i/o timeout|TLS handshake|proxyconnect|"
    r"server misbehaving|network is unreachable|unexpected EOF|Get \"https?://|"
    r"\b(?:403|404|410|429|50[0-9]) (?:Forbidden|Not Found|Gone|Too Many|Internal|Bad Gateway)",
)


class BuildError(CommandError):
    """The control plane cannot be built or is not built; the message says what to do."""


@dataclass(frozen=True)
class Component:
    """One Go module build: its cache folder, and the binaries it puts in ``bin/``."""

    name: str
    version: str
    binaries: tuple[str, ...]

    def dir(self, cache_dir: Path) -> Path:
        return cache_dir / f"{self.name}-{self.version}"

    def paths(self, cache_dir: Path) -> dict[str, Path]:
        return {b: self.dir(cache_dir) / "bin" / b for b in self.binaries}


TOOLS = {"helm": Component("helm", HELM_VERSION, ("helm",))}
"""Tools built on request (``--with``) into the same cache, with the same progress display."""


def components(profile: str, tools: tuple[str, ...] = ()) -> list[Component]:
    """What ``profile`` runs (``none``: nothing), then the ``tools`` asked for, in build order."""
    full = profile == "full"
    plane = [
        Component("kubernetes", KUBERNETES_VERSION, FULL_KUBE if full else MINIMAL_KUBE),
        Component("etcd", ETCD_VERSION, ("etcd",)),
        *([Component("kwok", KWOK_VERSION, ("kwok",))] if full else []),
    ]
    return [*(plane if profile != "none" else []), *(TOOLS[t] for t in tools)]


def binary_paths(cache_dir: Path, profile: str) -> dict[str, Path]:
    """Where every binary of ``profile`` is (or will be) once built."""
    paths: dict[str, Path] = {}
    for component in components(profile):
        paths.update(component.paths(cache_dir))
    return paths


def missing(cache_dir: Path, profile: str) -> list[str]:
    """The binaries of ``profile`` not built yet."""
    return [name for name, path in binary_paths(cache_dir, profile).items() if not path.exists()]


def require(cache_dir: Path, profile: str) -> dict[str, Path]:
    """The binaries of ``profile``; a ``BuildError`` naming the build command if any is missing."""
    absent = missing(cache_dir, profile)
    if absent:
        raise BuildError(
            f"the local control plane is not built: {', '.join(absent)} missing in {cache_dir}. "
            f"Build it first with `{BUILD_COMMAND}` ({FIRST_BUILD_ESTIMATE} the first time; "
            "`make test` and `make run` do this for you), or set STREAMSPACE_CACHE_DIR to where "
            "it was built."
        )
    return binary_paths(cache_dir, profile)


def require_tool(cache_dir: Path, name: str) -> Path:
    """The built tool ``name`` (``helm``); a ``BuildError`` naming the build command if absent."""
    path = TOOLS[name].paths(cache_dir)[name]
    if not path.exists():
        raise BuildError(
            f"{name} is not built: {path} is missing. Build it with `{BUILD_COMMAND}` (a few "
            "minutes the first time; `make test` does this for you), or set "
            "STREAMSPACE_CACHE_DIR to where it was built."
        )
    return path


# -- the Go toolchain --------------------------------------------------------------------------


def go_version_problem(version: str | None) -> str | None:
    """Why ``version`` (``go env GOVERSION``, e.g. ``go1.26.8``; None: no Go) cannot build."""
    wanted = ".".join(map(str, GO_MINIMUM))
    if version is None:
        return (
            f"Go {wanted} or newer is needed to build the local control plane, and `go` is "
            f"not on the PATH. Install Go {wanted}+ (https://go.dev/doc/install, or your "
            "distribution's package) and run the command again; or use an existing cluster "
            "instead "
            "(STREAMSPACE_TEST_KUBECONFIG for the tests, KUBECONFIG with "
            "STREAMSPACE_USE_EXISTING_CLUSTER=true for `make run`)."
        )
    match = re.match(r"go(\d+)\.(\d+)", version.strip())
    if match is None or (int(match[1]), int(match[2])) < GO_MINIMUM:
        return (
            f"Go {wanted} or newer is needed to build the local control plane; this machine has "
            f"{version.strip() or 'an unknown Go'}. Install a newer Go and run the command again."
        )
    return None


def check_go() -> str:
    """The ``go`` executable, after checking that it is new enough; else a ``BuildError``."""
    go = shutil.which("go")
    version = None
    if go is not None:
        proc = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, check=False, timeout=60
        )
        version = proc.stdout.strip() if proc.returncode == 0 else ""
    problem = go_version_problem(version)
    if problem:
        raise BuildError(problem)
    assert go is not None  # noqa: S101 - go_version_problem said so
    return go


def failure_message(command: str, cwd: Path, output: str, goproxy: str) -> str:
    """What to tell a person when ``go <command>`` failed with ``output``."""
    tail = "\n".join(output.strip().splitlines()[-25:])
    if _NETWORK_FAILURE.search(output):
        return (
            f"Go could not download the control plane's modules (GOPROXY={goproxy}). Check that "
            "this machine reaches the Go module proxy (network, HTTPS_PROXY, GOPROXY, GOFLAGS), "
            "then run the command again: what was downloaded is kept. To skip the build, use an "
            "existing cluster (STREAMSPACE_TEST_KUBECONFIG for the tests, KUBECONFIG with "
            "STREAMSPACE_USE_EXISTING_CLUSTER=true for `make run`).\n"
            f"`go {command}` in {cwd} said:\n{tail}"
        )
    return f"`go {command}` failed in {cwd}:\n{tail}"


class _Go:
    """Runs ``go`` commands for one build, feeding their output to the progress line."""

    def __init__(self, go: str, progress: Progress) -> None:
        self.go = go
        self.progress = progress
        self.env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}

    def __call__(
        self,
        args: list[str],
        cwd: Path,
        *,
        action: str,
        packages: int | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        self.progress.set_action(action, packages)
        log.debug("go %s (in %s)", " ".join(args), cwd)
        tail: deque[str] = deque(maxlen=40)
        with tempfile.TemporaryFile("w+") as stdout:
            proc = subprocess.Popen(
                [self.go, *args],
                cwd=cwd,
                env={**self.env, **(env or {})},
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert proc.stderr is not None  # noqa: S101 - PIPE
            for raw in proc.stderr:
                tail.append(raw.rstrip("\n"))
                self.progress.tick()
            code = proc.wait()
            stdout.seek(0)
            output = stdout.read()
        if code != 0:
            goproxy = self.env.get("GOPROXY") or self._goproxy(cwd)
            raise BuildError(
                failure_message(" ".join(args), cwd, "\n".join(tail) or output, goproxy)
            )
        return output

    def _goproxy(self, cwd: Path) -> str:
        proc = subprocess.run(
            [self.go, "env", "GOPROXY"], cwd=cwd, capture_output=True, text=True, check=False
        )
        return proc.stdout.strip() or "?"

    def count_packages(self, targets: list[str], cwd: Path) -> int | None:
        """How many packages building ``targets`` compiles at most (std included)."""
        proc = subprocess.run(
            [self.go, "list", "-deps", *targets],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        return len(proc.stdout.split()) if proc.returncode == 0 else None


# -- the builds --------------------------------------------------------------------------------


def staging_replacements(kubernetes_gomod: str, version: str) -> list[str]:
    """The ``replace`` lines mapping each staging module of a kubernetes go.mod to its release."""
    major, minor, patch = version.lstrip("v").split(".")
    del major
    staging = sorted(set(_STAGING_REPLACE.findall(kubernetes_gomod)))
    return [f"replace {name} => {name} v0.{minor}.{patch}" for name in staging]


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _build_kubernetes(go: _Go, workdir: Path, wanted: tuple[str, ...], version: str) -> None:
    info = json.loads(
        go(
            ["mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
            workdir,
            action="downloading k8s.io/kubernetes",
        )
    )
    gomod = Path(info["GoMod"]).read_text()
    go_line = re.search(r"^go\s+(\S+)", gomod, re.M)
    lines = [
        "module streamspace.local/controlplane",
        "",
        f"go {go_line.group(1) if go_line else '1.26'}",
        "",
        f"require k8s.io/kubernetes {version}",
        "",
        *staging_replacements(gomod, version),
        "",
    ]
    _write_if_changed(workdir / "go.mod", "\n".join(lines))
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{name}"' for name in FULL_KUBE)
    _write_if_changed(
        workdir / "tools.go",
        f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n",
    )
    go(["mod", "tidy"], workdir, action="resolving modules (go mod tidy)")
    _, minor, _ = version.lstrip("v").split(".")
    ldflags = (
        f"-s -w -X k8s.io/component-base/version.gitVersion={version} "
        f"-X k8s.io/component-base/version.gitMajor=1 "
        f"-X k8s.io/component-base/version.gitMinor={minor} "
        "-X k8s.io/component-base/version.gitTreeState=clean"
    )
    targets = [f"k8s.io/kubernetes/cmd/{name}" for name in wanted]
    go(
        ["build", "-v", "-trimpath", "-ldflags", ldflags, "-o", "bin/", *targets],
        workdir,
        action=f"compiling {', '.join(wanted)}",
        packages=go.count_packages(targets, workdir),
    )


def _build_etcd(go: _Go, workdir: Path, version: str) -> None:
    _write_if_changed(workdir / "go.mod", "module streamspace.local/etcd\n\ngo 1.26\n")
    go(["get", f"go.etcd.io/etcd/server/v3@{version}"], workdir, action="downloading modules")
    target = "go.etcd.io/etcd/server/v3"
    go(
        ["build", "-v", "-trimpath", "-ldflags", "-s -w", "-o", "bin/etcd", target],
        workdir,
        action="compiling etcd",
        packages=go.count_packages([target], workdir),
    )


def _go_install(go: _Go, workdir: Path, package: str, version: str, ldflags: str = "") -> None:
    go(
        [
            "install",
            "-v",
            "-trimpath",
            "-ldflags",
            f"-s -w {ldflags}".strip(),
            f"{package}@{version}",
        ],
        workdir,
        action=f"downloading and compiling {package.rsplit('/', 1)[-1]}",
        env={"GOBIN": str(workdir / "bin")},
    )


def _build_kwok(go: _Go, workdir: Path, version: str) -> None:
    _go_install(go, workdir, "sigs.k8s.io/kwok/cmd/kwok", version)


def _build_helm(go: _Go, workdir: Path, version: str) -> None:
    # The version helm reports (`helm version`); the Kubernetes version it renders charts for
    # offline (`helm template`, `helm lint`) comes from the client-go it is built with.
    major = version.lstrip("v").split(".")[0]
    _go_install(
        go,
        workdir,
        f"helm.sh/helm/v{major}/cmd/helm",
        version,
        f"-X helm.sh/helm/v{major}/internal/version.version={version}",
    )


_BUILDERS: dict[str, Callable[[_Go, Path, Component], None]] = {
    "kubernetes": lambda go, d, c: _build_kubernetes(go, d, c.binaries, c.version),
    "etcd": lambda go, d, c: _build_etcd(go, d, c.version),
    "kwok": lambda go, d, c: _build_kwok(go, d, c.version),
    "helm": lambda go, d, c: _build_helm(go, d, c.version),
}


@dataclass(frozen=True)
class BuildReport:
    """What ``build`` did: the binaries it returns and what it had to build."""

    binaries: dict[str, Path]
    built: tuple[str, ...]
    seconds: float


def _times_file(cache_dir: Path) -> Path:
    return cache_dir / "build-times.json"


def _last_times(cache_dir: Path) -> dict[str, float]:
    try:
        data = json.loads(_times_file(cache_dir).read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def build(
    cache_dir: Path,
    profile: str,
    out: TextIO | None = None,
    interval: float = 15.0,
    tools: tuple[str, ...] = (),
) -> BuildReport:
    """Build whatever of ``profile`` and ``tools`` is missing, saying how it goes on ``out``."""
    out = out or sys.stderr
    started = time.monotonic()
    todo = [
        c
        for c in components(profile, tools)
        if any(not p.exists() for p in c.paths(cache_dir).values())
    ]
    if not todo:
        return BuildReport(binary_paths(cache_dir, profile), (), 0.0)
    go = check_go()
    times = _last_times(cache_dir)
    known = all(c.name in times for c in todo)
    expected = sum(times[c.name] for c in todo) if known else None
    out.write(
        f"building the local control plane into {cache_dir}: "
        f"{', '.join(f'{c.name} {c.version}' for c in todo)}\n"
    )
    with Progress(out, len(todo), expected, interval) as progress:
        runner = _Go(go, progress)
        for component in todo:
            began = time.monotonic()
            progress.begin(f"{component.name} {component.version}")
            workdir = component.dir(cache_dir)
            workdir.mkdir(parents=True, exist_ok=True)
            _BUILDERS[component.name](runner, workdir, component)
            for name, path in component.paths(cache_dir).items():
                if not path.exists():
                    raise BuildError(f"the build finished but {path} ({name}) is missing")
            times[component.name] = round(time.monotonic() - began, 1)
            _times_file(cache_dir).write_text(json.dumps(times, indent=2))
    seconds = time.monotonic() - started
    out.write(f"control plane built in {minutes(seconds)}\n")
    out.flush()
    return BuildReport(binary_paths(cache_dir, profile), tuple(c.name for c in todo), seconds)
