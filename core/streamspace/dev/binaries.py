"""Build the local control plane's binaries from the Go module proxy, into a cache.

No container engine and no release downloads are available on our machines, but Go and the module
proxy are. ``k8s.io/kubernetes`` cannot be required as a plain dependency (its go.mod points every
``k8s.io/*`` staging module at ``./staging``), so a throw-away wrapper module is written that maps
each staging module to its published ``v0.<minor>.<patch>`` release, derived from the downloaded
go.mod so that it stays right for any version. etcd and kwok build as ordinary modules.

Everything lands in ``<cache>/<component>-<version>/bin``; a component whose binaries are already
there is not built again, so a second run builds nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"

MINIMAL_KUBE = ("kube-apiserver",)
FULL_KUBE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

_STAGING_REPLACE = re.compile(r"^\s*(?:replace\s+)?(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", re.M)


class BuildError(RuntimeError):
    """A Go command failed; the message carries its command line and the tail of its output."""


@dataclass(frozen=True)
class BuildReport:
    """What ``ensure_binaries`` did: the binaries it returns and what it had to build."""

    binaries: dict[str, Path]
    built: tuple[str, ...]
    seconds: float


def _go(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "the Go toolchain (go >= 1.26) is needed to build the local control plane; "
            "install Go, or point KUBECONFIG at an existing cluster"
        )
    full_env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", **(env or {})}
    log.info("go %s (in %s)", " ".join(args), cwd)
    proc = subprocess.run(
        [go, *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise BuildError(f"`go {' '.join(args)}` failed in {cwd}:\n{tail}")
    return proc.stdout


def staging_replacements(kubernetes_gomod: str, version: str) -> list[str]:
    """The ``replace`` lines mapping each staging module of a kubernetes go.mod to its release."""
    major, minor, patch = version.lstrip("v").split(".")
    del major
    staging = sorted(set(_STAGING_REPLACE.findall(kubernetes_gomod)))
    return [f"replace {name} => {name} v0.{minor}.{patch}" for name in staging]


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _build_kubernetes(workdir: Path, wanted: list[str], version: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{version}"], workdir))
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
    _go(["mod", "tidy"], workdir)
    _, minor, _ = version.lstrip("v").split(".")
    ldflags = (
        f"-s -w -X k8s.io/component-base/version.gitVersion={version} "
        f"-X k8s.io/component-base/version.gitMajor=1 "
        f"-X k8s.io/component-base/version.gitMinor={minor} "
        "-X k8s.io/component-base/version.gitTreeState=clean"
    )
    targets = [f"k8s.io/kubernetes/cmd/{name}" for name in wanted]
    _go(["build", "-trimpath", "-ldflags", ldflags, "-o", "bin/", *targets], workdir)


def _build_etcd(workdir: Path, version: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    _write_if_changed(workdir / "go.mod", "module streamspace.local/etcd\n\ngo 1.26\n")
    _go(["get", f"go.etcd.io/etcd/server/v3@{version}"], workdir)
    _go(
        ["build", "-trimpath", "-ldflags", "-s -w", "-o", "bin/etcd", "go.etcd.io/etcd/server/v3"],
        workdir,
    )


def _build_kwok(workdir: Path, version: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    _go(
        ["install", "-trimpath", "-ldflags", "-s -w", f"sigs.k8s.io/kwok/cmd/kwok@{version}"],
        workdir,
        env={"GOBIN": str(workdir / "bin")},
    )


def ensure_binaries(cache_dir: Path, profile: str) -> BuildReport:
    """Return the paths of every binary ``profile`` needs, building only the missing ones."""
    started = time.monotonic()
    kube_dir = cache_dir / f"kubernetes-{KUBERNETES_VERSION}"
    etcd_dir = cache_dir / f"etcd-{ETCD_VERSION}"
    kwok_dir = cache_dir / f"kwok-{KWOK_VERSION}"
    kube_names = FULL_KUBE if profile == "full" else MINIMAL_KUBE
    binaries = {name: kube_dir / "bin" / name for name in kube_names}
    binaries["etcd"] = etcd_dir / "bin" / "etcd"
    if profile == "full":
        binaries["kwok"] = kwok_dir / "bin" / "kwok"

    built: list[str] = []
    missing_kube = [name for name in kube_names if not binaries[name].exists()]
    if missing_kube:
        _build_kubernetes(kube_dir, missing_kube, KUBERNETES_VERSION)
        built += missing_kube
    if not binaries["etcd"].exists():
        _build_etcd(etcd_dir, ETCD_VERSION)
        built.append("etcd")
    if "kwok" in binaries and not binaries["kwok"].exists():
        _build_kwok(kwok_dir, KWOK_VERSION)
        built.append("kwok")
    for name, path in binaries.items():
        if not path.exists():
            raise BuildError(f"the build finished but {path} ({name}) is missing")
    return BuildReport(binaries, tuple(built), time.monotonic() - started)
