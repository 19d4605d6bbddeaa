"""The local control plane: real etcd and kube-apiserver on loopback, plus kwok nodes when full.

Profiles:

* ``minimal`` — etcd and kube-apiserver: enough for CRD validation, the operator's watches and
  the facade.
* ``full`` — adds kube-controller-manager, kube-scheduler and kwok with fake Nodes, so that a
  Deployment gets a Pod that is scheduled and becomes Ready without a kubelet. kwok also plays
  the kubelet's log endpoint: ``pods/log`` (``kubectl logs -f``) serves the lines a test writes
  with ``ControlPlane.write_pod_log`` (see ``podlogs``), and its exec endpoint: ``pods/exec``
  runs the command on this machine, unprivileged (see ``podexec``).

Everything lives in one state directory (``.streamspace`` for the dev stack, a temporary one in
tests): key material, etcd data, logs, ``cluster/state.json`` with the pids we started, and the
``kubeconfig``. ``up`` is idempotent (it starts only what is not running, and turns a running
minimal cluster into a full one); ``down`` stops exactly the processes recorded in the state file.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import shutil
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from streamspace_dev import binaries, pki, planeargs, podexec, podlogs, process
from streamspace_dev.objects import (
    ADMISSION_FILE,
    KWOK_NODE_LABEL,
    ClusterError,
    apply_admission_with,
    apply_crds,
    ensure_default_storage_class,
    ensure_namespace,
    fake_nodes_ready,
    register_fake_nodes,
)
from streamspace_dev.settings import REPO_CRDS

log = logging.getLogger(__name__)

PROFILES = ("minimal", "full")
FULL_ONLY = ("kube-controller-manager", "kube-scheduler", "kwok")
DEFAULT_NAMESPACE = "streamspace"
EXEC_CONFIG = "kwok-exec.yaml"
# how long `check` keeps asking a running component that missed one health probe
PROBE_GRACE = 10.0


@dataclass
class ClusterState:
    """What ``cluster/state.json`` records about a running control plane."""

    profile: str = "minimal"
    api_port: int = 0
    etcd_port: int = 0
    kubelet_port: int = 0  # kwok's kubelet-like server (full profile): pod logs
    health_ports: dict[str, int] = field(default_factory=dict)  # controller manager, scheduler
    token: str = field(default="", repr=False)
    processes: dict[str, process.Started] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "profile": self.profile,
            "api_port": self.api_port,
            "etcd_port": self.etcd_port,
            "kubelet_port": self.kubelet_port,
            "health_ports": self.health_ports,
            "token": self.token,
            "processes": {name: rec.as_dict() for name, rec in self.processes.items()},
            "timings": self.timings,
        }
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        return cls(
            profile=data["profile"],
            api_port=data["api_port"],
            etcd_port=data["etcd_port"],
            kubelet_port=data.get("kubelet_port", 0),
            health_ports=data.get("health_ports", {}),
            token=data["token"],
            processes={
                name: process.Started.from_dict(rec) for name, rec in data["processes"].items()
            },
            timings=data.get("timings", {}),
        )


class ControlPlane:
    """A local control plane rooted at ``state_dir``."""

    def __init__(self, state_dir: Path, cache_dir: Path, crds_dir: Path = REPO_CRDS) -> None:
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.crds_dir = crds_dir
        self.dir = state_dir / "cluster"
        self.kubeconfig = state_dir / "kubeconfig"
        self._state_file = self.dir / "state.json"
        self.pod_logs_dir = self.dir / "pod-logs"

    # -- state -------------------------------------------------------------------------------

    def load_state(self) -> ClusterState | None:
        if not self._state_file.exists():
            return None
        return ClusterState.from_json(self._state_file.read_text())

    def _save(self, state: ClusterState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._state_file.write_text(state.to_json())
        self._state_file.chmod(0o600)

    def status(self) -> dict[str, Any]:
        """Which recorded components run, with pid and memory, and whether the API answers."""
        state = self.load_state()
        if state is None:
            return {"running": False, "components": {}}
        components = {
            name: {
                "pid": rec.pid,
                "running": process.is_running(rec),
                "rss_mib": round(process.rss_bytes(rec.pid) / 2**20, 1),
            }
            for name, rec in state.processes.items()
        }
        return {
            "running": self._api_ready(state),
            "profile": state.profile,
            "server": f"https://127.0.0.1:{state.api_port}",
            "kubeconfig": str(self.kubeconfig),
            "components": components,
            "timings": state.timings,
        }

    # -- up ----------------------------------------------------------------------------------

    def up(self, profile: str = "minimal", timeout: float = 120.0) -> ClusterState:
        """Start what ``profile`` needs and is not running yet; return once every component runs
        and answers its health check.

        Never builds: missing binaries are a ``BuildError`` naming the build command
        (``streamspace dev build``), which ``make test``/``make run`` run as a step of their own.
        """
        if profile not in PROFILES:
            raise ClusterError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        bins = binaries.require(self.cache_dir, profile)
        state = self.load_state()
        if state is None or not self._core_running(state):
            if state is not None:
                self.down()
            state = self._start_core(bins, timeout)
        if profile == "full" and not self._full_running(state):
            for name in FULL_ONLY:  # one of them died: start the three afresh
                if name in state.processes:
                    process.stop(state.processes.pop(name))
            self._start_full(state, bins, timeout)
        self._save(state)
        # a component just started may fail a probe for a moment (the API server's readyz while
        # it installs the CRDs' APIs): wait for all to answer before judging them
        process.wait_until(lambda: self._all_healthy(state), timeout, interval=0.5)
        self.check(state)
        return state

    def _all_healthy(self, state: ClusterState) -> bool:
        return all(
            process.is_running(record) and self._healthy(state, name)
            for name, record in state.processes.items()
        )

    def check(self, state: ClusterState | None = None, grace: float = PROBE_GRACE) -> None:
        """Every component recorded runs and answers its health check; else a ``ClusterError``
        naming the first that does not, with the last lines of its log.

        A dead process is reported at once. A running one that misses a probe is asked again
        for up to ``grace`` seconds: on a busy machine the API server's ``/readyz`` misses one
        now and then (a slow answer, an etcd channel reconnecting), which is not a failure.
        """
        state = state or self.load_state()
        if state is None:
            raise ClusterError("no control plane is recorded here; start one with `up`")
        for name, record in state.processes.items():
            if not process.is_running(record):
                raise ClusterError(
                    f"{name} is not running; last lines of {record.log}:\n"
                    + process.last_words(record)
                )
            probe = functools.partial(self._healthy, state, name)
            if not process.wait_until(probe, grace, interval=0.5):
                raise ClusterError(
                    f"{name} runs but does not answer its health check; last lines of "
                    f"{record.log}:\n" + process.log_tail(record)
                )

    def _healthy(self, state: ClusterState, name: str) -> bool:
        if name == "etcd":
            pki_dir = self.dir / "pki"
            return _http_ok(
                f"https://127.0.0.1:{state.etcd_port}/health",
                cafile=pki_dir / "ca.crt",
                client_cert=(pki_dir / "etcd-client.crt", pki_dir / "etcd-client.key"),
            )
        if name == "kube-apiserver":
            return self._api_ready(state)
        if name == "kwok":
            return fake_nodes_ready(self.kubeconfig)
        port = state.health_ports.get(name)
        # controller manager and scheduler: /healthz is open to anonymous callers by default.
        return port is not None and _http_ok(f"https://127.0.0.1:{port}/healthz", insecure=True)

    def _core_running(self, state: ClusterState) -> bool:
        """etcd and the API server run and the API server answers ``/readyz``; a running one is
        asked for up to ``PROBE_GRACE`` so that one missed probe on a busy machine does not make
        ``up`` throw away a working control plane and start another."""
        if not all(
            name in state.processes and process.is_running(state.processes[name])
            for name in ("etcd", "kube-apiserver")
        ):
            return False
        return process.wait_until(lambda: self._api_ready(state), PROBE_GRACE, interval=0.5)

    def _full_running(self, state: ClusterState) -> bool:
        """The full-profile components run, kwok with its exec configuration (a kwok started
        by an older version without it is started afresh, so that terminals work)."""
        kwok = state.processes.get("kwok")
        configured = kwok is not None and f"--config={self.dir / EXEC_CONFIG}" in kwok.argv
        return configured and all(
            n in state.processes and process.is_running(state.processes[n]) for n in FULL_ONLY
        )

    def _start_core(self, bins: dict[str, Path], timeout: float) -> ClusterState:
        started = time.monotonic()
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        pki_dir = self.dir / "pki"
        state = ClusterState(
            api_port=process.free_port(),
            etcd_port=process.free_port(),
            token=pki.write_pki(pki_dir),
        )
        self._save(state)  # record early: a failed start can still be taken down
        state.processes["etcd"] = process.start(
            "etcd",
            planeargs.etcd(
                bins["etcd"],
                self.dir / "etcd-data",
                state.etcd_port,
                process.free_port(),
                pki_dir,
            ),
            self.dir / "logs" / "etcd.log",
        )
        self._save(state)
        self._wait(state, "etcd", functools.partial(self._healthy, state, "etcd"), timeout)
        state.processes["kube-apiserver"] = process.start(
            "kube-apiserver",
            planeargs.kube_apiserver(
                bins["kube-apiserver"], state.etcd_port, state.api_port, pki_dir
            ),
            self.dir / "logs" / "kube-apiserver.log",
        )
        self._save(state)
        self._wait(state, "kube-apiserver", lambda: self._api_ready(state), timeout)
        self._write_kubeconfig(state)
        apply_crds(self.kubeconfig, self.crds_dir, timeout)
        ensure_namespace(self.kubeconfig, DEFAULT_NAMESPACE)
        # what the CRDs come with: the Session admission policy
        apply_admission_with(self.kubeconfig, self.crds_dir / ADMISSION_FILE)
        state.timings["core_start_seconds"] = round(time.monotonic() - started, 2)
        return state

    def _start_full(self, state: ClusterState, bins: dict[str, Path], timeout: float) -> None:
        started = time.monotonic()
        pki_dir = self.dir / "pki"
        for name in ("kube-controller-manager", "kube-scheduler"):
            port = process.free_port()
            state.health_ports[name] = port
            state.processes[name] = process.start(
                name,
                planeargs.controller(name, bins[name], self.kubeconfig, port, pki_dir),
                self.dir / "logs" / f"{name}.log",
            )
            self._save(state)
        package = resources.files("streamspace_dev")
        stages = self.dir / "kwok-stages.yaml"
        stages.write_text(package.joinpath("kwok-stages.yaml").read_text())
        execs = self.dir / EXEC_CONFIG  # pods/exec runs local commands (podexec)
        execs.write_text(podexec.config_text())
        # kwok watches Logs objects (one per pod that prints, see podlogs), so its CRD comes first.
        kwok_crds = self.dir / "kwok-crds"
        kwok_crds.mkdir(exist_ok=True)
        (kwok_crds / "logs.yaml").write_text(package.joinpath("kwok-logs-crd.yaml").read_text())
        apply_crds(self.kubeconfig, kwok_crds, timeout)
        # a kwok started afresh keeps its port: the fake nodes, Ready already, still name it
        state.kubelet_port = state.kubelet_port or process.free_port()
        state.processes["kwok"] = process.start(
            "kwok",
            planeargs.kwok(
                bins["kwok"], self.kubeconfig, (stages, execs), KWOK_NODE_LABEL, state.kubelet_port
            ),
            self.dir / "logs" / "kwok.log",
        )
        state.profile = "full"
        self._save(state)
        register_fake_nodes(self.kubeconfig)
        ensure_default_storage_class(self.kubeconfig)
        for name in ("kube-controller-manager", "kube-scheduler"):
            self._wait(state, name, functools.partial(self._healthy, state, name), timeout)
        self._wait(state, "kwok", lambda: fake_nodes_ready(self.kubeconfig), timeout)
        state.timings["full_start_seconds"] = round(time.monotonic() - started, 2)

    # -- faults (tests) ------------------------------------------------------------------------

    def restart(self, name: str, timeout: float = 120.0) -> None:
        """Start a component again with the command it was started with, and wait until it
        answers its health check; one still running is SIGKILLed first (a crash mid-work).

        (A SIGTERM would be no gentler for the API server's clients: it ends no watch until its
        shutdown gives up waiting for them, after 60 s.)"""
        state = self._recorded(name)
        record = state.processes[name]
        process.kill(record)
        state.processes[name] = process.restart(record)
        self._save(state)
        self._wait(state, name, functools.partial(self._healthy, state, name), timeout)

    def _recorded(self, name: str) -> ClusterState:
        state = self.load_state()
        if state is None or name not in state.processes:
            raise ClusterError(f"no {name} is recorded here")
        return state

    # -- pod logs (full profile) -------------------------------------------------------------

    def pod_log(self, namespace: str, pod: str, container: str, timeout: float = 30.0) -> Path:
        """The file served as the logs of ``container`` in ``namespace/pod``, once kwok serves it.

        ``<plane dir>/pod-logs/<namespace>/<pod>/<container>.log``, created empty if missing,
        and named by the pod's kwok ``Logs`` object (created here; the namespace must exist, the
        pod need not yet). Lines appended in the CRI log format (``podlogs.cri_lines``) are what
        ``pods/log`` returns for that container, and what a follower receives next.
        """
        state = self.load_state()
        if state is None or state.profile != "full" or not state.kubelet_port:
            raise ClusterError("pod logs need the full profile, started by this version")
        path = podlogs.log_path(self.pod_logs_dir, namespace, pod, container)
        podlogs.ensure(
            self.kubeconfig,
            state.kubelet_port,
            path,
            namespace=namespace,
            pod=pod,
            container=container,
            timeout=timeout,
        )
        return path

    def write_pod_log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *lines: str,
        stream: str = "stdout",
        at: dt.datetime | None = None,
    ) -> Path:
        """Make ``container`` of ``namespace/pod`` print ``lines`` on ``stream``; return the file.

        Each line becomes one record stamped ``at`` (default: now, UTC), appended in one write.
        """
        path = self.pod_log(namespace, pod, container)
        with path.open("a", encoding="utf-8") as file:
            file.write(podlogs.cri_lines(lines, stream, at))
        return path

    def _wait(self, state: ClusterState, name: str, ready: Any, timeout: float) -> None:
        record = state.processes[name]

        def check() -> bool:
            if not process.is_running(record):
                raise ClusterError(
                    f"{name} exited during start-up; last lines of {record.log}:\n"
                    + process.last_words(record)
                )
            return bool(ready())

        if not process.wait_until(check, timeout, interval=0.2):
            raise ClusterError(
                f"{name} was not ready after {timeout:.0f}s; last lines of {record.log}:\n"
                + process.log_tail(record)
            )

    def _api_ready(self, state: ClusterState) -> bool:
        if not state.api_port:
            return False
        return _http_ok(
            f"https://127.0.0.1:{state.api_port}/readyz",
            token=state.token,
            cafile=self.dir / "pki" / "ca.crt",
        )

    def _write_kubeconfig(self, state: ClusterState) -> None:
        ca = (self.dir / "pki" / "ca.crt").read_bytes()
        config = planeargs.admin_kubeconfig(state.api_port, ca, state.token, DEFAULT_NAMESPACE)
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    # -- down --------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop every process recorded in the state file, newest first; return their names."""
        state = self.load_state()
        if state is None:
            return []
        stopped = [
            name for name, record in reversed(state.processes.items()) if process.stop(record)
        ]
        shutil.rmtree(self.dir, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)
        return stopped


def _http_ok(
    url: str,
    token: str | None = None,
    cafile: Path | None = None,
    *,
    insecure: bool = False,
    client_cert: tuple[Path, Path] | None = None,
) -> bool:
    request = urllib.request.Request(url)  # noqa: S310 - fixed loopback URLs we built
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    if insecure:  # a loopback component's self-signed serving certificate
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if context is not None and client_cert is not None:
        context.load_cert_chain(*client_cert)
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False
