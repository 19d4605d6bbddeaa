"""How each component of the local control plane is started: its command line, and the admin
kubeconfig that reaches it (``cluster.ControlPlane`` starts them and records the processes)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

SERVICE_CIDR = "10.96.0.0/16"
CLIENT_QPS = ["--kube-api-qps=200", "--kube-api-burst=400"]


def etcd(binary: Path, data_dir: Path, client_port: int, peer_port: int, pki: Path) -> list[str]:
    client, peer = f"https://127.0.0.1:{client_port}", f"https://127.0.0.1:{peer_port}"
    tls = {
        "cert-file": pki / "etcd.crt",
        "key-file": pki / "etcd.key",
        "trusted-ca-file": pki / "ca.crt",
    }
    return [
        str(binary),
        "--name=streamspace-dev",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=streamspace-dev={peer}",
        *(f"--{flag}={path}" for flag, path in tls.items()),
        "--client-cert-auth",
        *(f"--peer-{flag}={path}" for flag, path in tls.items()),
        "--peer-client-cert-auth",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def kube_apiserver(binary: Path, etcd_port: int, api_port: int, pki: Path) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers=https://127.0.0.1:{etcd_port}",
        f"--etcd-cafile={pki / 'ca.crt'}",
        f"--etcd-certfile={pki / 'etcd-client.crt'}",
        f"--etcd-keyfile={pki / 'etcd-client.key'}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={api_port}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--token-auth-file={pki / 'tokens.csv'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--endpoint-reconciler-type=none",  # loopback may not appear in Endpoints
        # pods/log and exec reach kwok's kubelet endpoint on the nodes' 127.0.0.1; their
        # Hostname address (the node name) resolves nowhere.
        "--kubelet-preferred-address-types=InternalIP",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]


def controller(name: str, binary: Path, kubeconfig: Path, port: int, pki: Path) -> list[str]:
    """``kube-controller-manager`` or ``kube-scheduler``, talking to the API server as admin."""
    kc = str(kubeconfig)
    common = [f"--kubeconfig={kc}", "--leader-elect=false", "--bind-address=127.0.0.1"]
    delegated = [f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}"]
    extra = CLIENT_QPS
    if name == "kube-controller-manager":
        extra = [
            # No kubelets post node heartbeats, so the node lifecycle controller would taint
            # the fake nodes and evict their pods.
            "--controllers=*,-nodelifecycle,-nodeipam",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false",
            # Dynamic PersistentVolumes for the default StorageClass, so that home volume
            # claims bind (no kubelet mounts them; kwok only plays the pods).
            "--enable-hostpath-provisioner=true",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            *CLIENT_QPS,
        ]
    return [str(binary), *common, *delegated, f"--secure-port={port}", *extra]


def kwok(
    binary: Path,
    kubeconfig: Path,
    configs: tuple[Path, ...],
    node_label: str,
    kubelet_port: int,
) -> list[str]:
    """kwok plays the nodes labelled ``node_label`` and their kubelet endpoint: the nodes'
    InternalIP and kubelet port (set by the node-ready stage from --node-ip and --node-port)
    lead the API server to kwok's server, which serves HTTPS with a cert of its own (the API
    server has no --kubelet-certificate-authority, so it does not verify it). ``configs``: the
    stages, and the exec configuration (``podexec``)."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        *(f"--config={path}" for path in configs),
        "--manage-all-nodes=false",
        f"--manage-nodes-with-label-selector={node_label}=true",
        f"--server-address=127.0.0.1:{kubelet_port}",
        "--node-ip=127.0.0.1",
        f"--node-port={kubelet_port}",
        "--enable-crds=Logs",
        "--node-lease-duration-seconds=40",
    ]


def admin_kubeconfig(api_port: int, ca: bytes, token: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "streamspace-dev",
                "cluster": {
                    "server": f"https://127.0.0.1:{api_port}",
                    "certificate-authority-data": base64.b64encode(ca).decode(),
                },
            }
        ],
        "users": [{"name": "streamspace-admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": "streamspace-dev",
                "context": {
                    "cluster": "streamspace-dev",
                    "user": "streamspace-admin",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": "streamspace-dev",
    }
