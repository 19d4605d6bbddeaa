"""``pods/exec`` on the full profile's kwok nodes: commands run on this machine, unprivileged.

kwok v0.8.0 answers the kubelet's exec endpoint by running the requested command as a local
process (``ClusterExec``/``Exec`` objects say how; without one every exec fails), with a pty when
the request asks for a TTY (resized by the resize channel). The API server proxies
``pods/exec`` to kwok like to a kubelet, so a terminal opened through the facade goes through the
real API server's authorization, upgrade and stream translation.

The one ``ClusterExec`` the plane configures (a kwok ``--config`` document, for every pod) runs
commands in ``/tmp`` with ``HOME=/tmp``, and, when kwok runs as root, as ``nobody``: a terminal
opened on ``make run`` is a shell on the developer's machine, so it gets as little as a local
account can. kwok reports a command's exit code only in the status text (``exit status N``),
not as the kubelet's structured ``ExitCode`` cause; the facade reads both.
"""

from __future__ import annotations

import os
import pwd
from typing import Any

import yaml

UNPRIVILEGED = "nobody"
WORK_DIR = "/tmp"  # noqa: S108 - the working directory of commands run for pods/exec


def cluster_exec(euid: int | None = None) -> dict[str, Any]:
    """The ``ClusterExec`` for every pod of the plane (``euid``: kwok's, default this process')."""
    local: dict[str, Any] = {"workDir": WORK_DIR, "envs": [{"name": "HOME", "value": WORK_DIR}]}
    if (os.geteuid() if euid is None else euid) == 0:
        try:
            account = pwd.getpwnam(UNPRIVILEGED)
        except KeyError:
            account = None
        if account is not None:
            local["securityContext"] = {
                "runAsUser": account.pw_uid,
                "runAsGroup": account.pw_gid,
            }
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterExec",
        "metadata": {"name": "local-commands"},
        "spec": {"execs": [{"local": local}]},
    }


def config_text(euid: int | None = None) -> str:
    """The kwok ``--config`` file holding :func:`cluster_exec`."""
    header = "# pods/exec on the dev control plane (streamspace_dev.podexec); written at start\n"
    return header + yaml.safe_dump(cluster_exec(euid), sort_keys=False)
