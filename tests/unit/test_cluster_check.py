"""`ControlPlane.check` on a busy machine: one missed probe is not a failure, a lasting one is."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamspace_dev import cluster, process
from streamspace_dev.cluster import ClusterState, ControlPlane
from streamspace_dev.objects import ClusterError

pytestmark = pytest.mark.unit


@pytest.fixture
def running(tmp_path: Path) -> Iterator[process.Started]:
    sleep = shutil.which("sleep")
    assert sleep is not None
    record = process.start("kube-scheduler", [sleep, "60"], tmp_path / "scheduler.log")
    yield record
    process.stop(record)


def _plane_whose_probe_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: list[bool]
) -> ControlPlane:
    plane = ControlPlane(tmp_path / "state", tmp_path / "cache")
    replies = iter(answers)
    monkeypatch.setattr(plane, "_healthy", lambda state, name: next(replies, answers[-1]))
    return plane


def test_a_running_component_that_misses_a_probe_or_two_is_healthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, running: process.Started
) -> None:
    answers = [False, False, True]
    plane = _plane_whose_probe_answers(tmp_path, monkeypatch, answers)
    plane.check(ClusterState(processes={"kube-scheduler": running}), grace=5)


def test_a_component_that_never_answers_is_named_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, running: process.Started
) -> None:
    Path(running.log).write_text("E1202 healthz: not ready (played)\n")
    plane = _plane_whose_probe_answers(tmp_path, monkeypatch, [False])
    with pytest.raises(ClusterError) as failure:
        plane.check(ClusterState(processes={"kube-scheduler": running}), grace=1)
    assert str(failure.value).startswith("kube-scheduler runs but does not answer")
    assert "not ready (played)" in str(failure.value)


def test_a_dead_component_is_named_at_once_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, running: process.Started
) -> None:
    probes: list[str] = []
    plane = ControlPlane(tmp_path / "state", tmp_path / "cache")
    monkeypatch.setattr(plane, "_healthy", lambda state, name: probes.append(name) or True)
    process.stop(running)
    with pytest.raises(ClusterError, match=r"^kube-scheduler is not running"):
        plane.check(ClusterState(processes={"kube-scheduler": running}), grace=3600)
    assert probes == []


def test_up_keeps_a_running_core_whose_readyz_misses_a_probe_or_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the CI failure this pins: a second `up` saw one /readyz time out and restarted both
    sleep = shutil.which("sleep")
    assert sleep is not None
    started = [
        process.start(name, [sleep, "60"], tmp_path / f"{name}.log")
        for name in ("etcd", "kube-apiserver")
    ]
    try:
        plane = ControlPlane(tmp_path / "state", tmp_path / "cache")
        state = ClusterState(api_port=1, processes={r.name: r for r in started})
        replies = iter([False, False, True])
        monkeypatch.setattr(plane, "_api_ready", lambda state: next(replies, True))
        assert plane._core_running(state)
        monkeypatch.setattr(cluster, "PROBE_GRACE", 1.0)
        monkeypatch.setattr(plane, "_api_ready", lambda state: False)
        assert not plane._core_running(state)  # a lasting miss: `up` starts a fresh core
    finally:
        for record in started:
            process.stop(record)
