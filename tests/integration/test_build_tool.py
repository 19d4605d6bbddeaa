"""`streamspace dev build` and the test fixtures when something is missing: one clear paragraph
and a non-zero exit, never a traceback, and never a build inside a test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamspace_dev.binaries import BUILD_COMMAND

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STREAMSPACE = Path(sys.executable).with_name("streamspace")


def _run(
    argv: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, check=False, timeout=timeout
    )


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An empty binary cache and module cache, so that the build has to start from nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "STREAMSPACE_"))}
    env.update(
        STREAMSPACE_CACHE_DIR=str(tmp_path / "cache"),
        GOMODCACHE=str(tmp_path / "gomod"),
        GOCACHE=str(tmp_path / "gocache"),
        GOFLAGS="-modcacherw",
        GOTOOLCHAIN="local",
        **extra,
    )
    return env


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_one_paragraph(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_missing_go_is_one_paragraph(tmp_path: Path) -> None:
    env = _clean_env(tmp_path, PATH=str(Path(sys.executable).parent))  # no go there
    err = _assert_one_paragraph(_run([str(STREAMSPACE), "dev", "build"], env))
    assert "Go 1.26 or newer is needed" in err and "`go` is not on the PATH" in err
    assert "STREAMSPACE_TEST_KUBECONFIG" in err  # the way around it


def test_too_old_go_is_one_paragraph(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "go"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho go1.22.4\n")  # what `go env GOVERSION` prints there
    fake.chmod(0o755)
    env = _clean_env(tmp_path, PATH=f"{fake.parent}:{os.environ['PATH']}")
    err = _assert_one_paragraph(_run([str(STREAMSPACE), "dev", "build"], env))
    assert "this machine has go1.22.4" in err


def test_unreachable_module_proxy_is_one_paragraph(tmp_path: Path) -> None:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    env = _clean_env(tmp_path, GOPROXY=proxy, GONOSUMDB="*", GOSUMDB="off")
    err = _assert_one_paragraph(_run([str(STREAMSPACE), "dev", "build"], env))
    assert f"Go could not download the control plane's modules (GOPROXY={proxy})" in err
    assert "connection refused" in err  # Go's own words, at the end
    assert "[1/3] kubernetes v1.36.3: downloading k8s.io/kubernetes" in err  # progress so far
    assert not list((tmp_path / "cache").glob("*/bin/*"))


def test_fixtures_refuse_to_build_and_name_the_command(tmp_path: Path) -> None:
    """Without binaries, a test that needs the control plane stops the run at once."""
    env = _clean_env(tmp_path)
    for name in ("STREAMSPACE_TEST_KUBECONFIG",):
        env.pop(name, None)
    result = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "tests/integration/test_crds.py",
        ],
        env,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "the local control plane is not built" in out
    assert BUILD_COMMAND in out
    assert "Traceback" not in out
    assert not (tmp_path / "cache").exists()  # nothing was built
