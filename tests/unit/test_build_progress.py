"""The control-plane build's words and plan: Go version checks, failure paragraphs, the progress
line, and which components (and tools, such as helm) a build covers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from streamspace_dev.binaries import (
    HELM_VERSION,
    BuildError,
    components,
    failure_message,
    go_version_problem,
    require_tool,
)
from streamspace_dev.buildprogress import Progress

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (None, "`go` is not on the PATH"),
        ("go1.25.3", "this machine has go1.25.3"),
        ("go1.9", "this machine has go1.9"),
        ("", "this machine has an unknown Go"),
        ("go1.26.0", None),
        ("go1.26.8", None),
        ("go2.0.1", None),
    ],
)
def test_go_version(version: str | None, expected: str | None) -> None:
    problem = go_version_problem(version)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_network_failures_say_what_to_check() -> None:
    output = (
        'go: k8s.io/kubernetes@v1.36.3: Get "https://proxy.golang.org/...": dial tcp: i/o timeout'
    )
    text = failure_message("mod download", Path("/c"), output, "https://proxy.golang.org")
    assert text.startswith("Go could not download the control plane's modules")
    assert "GOPROXY=https://proxy.golang.org" in text and "HTTPS_PROXY" in text
    assert text.endswith(output)


def test_other_failures_give_the_command_and_its_tail() -> None:
    output = "\n".join(f"line {i}" for i in range(40)) + "\nundefined: foo"
    text = failure_message("build ./...", Path("/c"), output, "direct")
    assert text.startswith("`go build ./...` failed in /c:\nline 16\n")
    assert text.endswith("undefined: foo")


def test_progress_line_names_the_step_packages_and_last_build() -> None:
    out = io.StringIO()
    progress = Progress(out, total_steps=3, expected=700.0)
    progress.begin("etcd v3.6.16")
    progress.begin("kubernetes v1.36.3")
    progress.set_action("compiling kube-apiserver", packages=1600)
    for _ in range(412):
        progress.tick()
    line = progress.line()
    assert line.startswith("[2/3] kubernetes v1.36.3: compiling kube-apiserver, 412/1600 packages")
    assert line.endswith("(last build took 11m40s)")
    assert out.getvalue().count("\n") == 3  # a line per change when not on a terminal


def test_progress_without_a_last_build_gives_the_estimate() -> None:
    progress = Progress(io.StringIO(), total_steps=1, expected=None)
    progress.begin("kwok v0.8.0")
    assert progress.line().endswith("(a first build takes about 10-15 minutes on 2 cores)")


def test_helm_is_built_on_request_into_the_same_cache(tmp_path: Path) -> None:
    assert [c.name for c in components("full")] == ["kubernetes", "etcd", "kwok"]
    assert [c.name for c in components("full", ("helm",))] == ["kubernetes", "etcd", "kwok", "helm"]
    assert [c.name for c in components("none", ("helm",))] == ["helm"]
    helm = components("none", ("helm",))[0]
    assert helm.paths(tmp_path) == {"helm": tmp_path / f"helm-{HELM_VERSION}" / "bin" / "helm"}
    with pytest.raises(BuildError) as missing:
        require_tool(tmp_path, "helm")
    assert "--with helm" in str(missing.value) and "helm is not built" in str(missing.value)
    helm.paths(tmp_path)["helm"].parent.mkdir(parents=True)
    helm.paths(tmp_path)["helm"].touch()
    assert require_tool(tmp_path, "helm") == helm.paths(tmp_path)["helm"]
