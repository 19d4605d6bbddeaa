"""The objects a local control plane needs besides its processes: the CRDs of ``crds/`` and the
admission policy they come with, the default namespace, kwok's fake Nodes and a default
StorageClass. Blocking calls through the synchronous Kubernetes client, imported lazily (only the
dev paths need it).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from streamspace.cli import CommandError
from streamspace_dev import process

FAKE_NODES = ("kwok-node-0", "kwok-node-1")
KWOK_NODE_LABEL = "streamspace.dev/kwok"


class ClusterError(CommandError):
    """The control plane could not be brought up or reached."""


def _api_client(kubeconfig: Path) -> Any:
    from kubernetes import client, config  # noqa: PLC0415 - heavy import, dev paths only

    return config.new_client_from_config(config_file=str(kubeconfig)), client  # type: ignore[no-untyped-call]


def apply_crds(kubeconfig: Path, crds_dir: Path, timeout: float = 60.0) -> list[str]:
    """Create or replace every CRD in ``crds_dir`` and wait until each is Established."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    api_client, client = _api_client(kubeconfig)
    with api_client:
        api = client.ApiextensionsV1Api(api_client)
        names = []
        for path in sorted(crds_dir.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                name = doc["metadata"]["name"]
                names.append(name)
                try:
                    current = api.read_custom_resource_definition(name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    api.create_custom_resource_definition(doc)
                else:
                    doc["metadata"]["resourceVersion"] = current.metadata.resource_version
                    api.replace_custom_resource_definition(name, doc)

        def established() -> bool:
            for name in names:
                crd = api.read_custom_resource_definition(name)
                conditions = {c.type: c.status for c in (crd.status.conditions or [])}
                if conditions.get("Established") != "True":
                    return False
            return True

        if not process.wait_until(established, timeout):
            raise ClusterError(f"CRDs not established after {timeout:.0f}s: {names}")
        return names


ADMISSION_FILE = "session-admission.yaml"


def apply_admission(api: Any, path: Path) -> None:
    """Create or replace the Session admission policy, its binding and its parameter ConfigMap
    (``crds/session-admission.yaml``), the way ``kubectl apply -f crds/`` would."""
    from kubernetes import client  # noqa: PLC0415 - heavy import, dev paths only
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    admission: Any = client.AdmissionregistrationV1Api(api)
    core: Any = client.CoreV1Api(api)
    verbs: dict[str, tuple[Any, Any, Any]] = {
        "ValidatingAdmissionPolicy": (
            admission.read_validating_admission_policy,
            admission.create_validating_admission_policy,
            admission.replace_validating_admission_policy,
        ),
        "ValidatingAdmissionPolicyBinding": (
            admission.read_validating_admission_policy_binding,
            admission.create_validating_admission_policy_binding,
            admission.replace_validating_admission_policy_binding,
        ),
    }
    for doc in yaml.safe_load_all(path.read_text()):
        name, namespace = doc["metadata"]["name"], doc["metadata"].get("namespace")
        if doc["kind"] == "ConfigMap":
            try:
                core.create_namespace({"metadata": {"name": namespace}})
            except ApiException as exc:
                if exc.status != 409:
                    raise
            read = functools.partial(core.read_namespaced_config_map, namespace=namespace)
            create = functools.partial(core.create_namespaced_config_map, namespace)
            replace = functools.partial(core.replace_namespaced_config_map, namespace=namespace)
        else:
            read, create, replace = verbs[doc["kind"]]
        try:
            current: Any = read(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            create(doc)
        else:
            doc["metadata"]["resourceVersion"] = current.metadata.resource_version
            replace(name, body=doc)


def apply_admission_with(kubeconfig: Path, path: Path) -> None:
    """``apply_admission`` through a client of ``kubeconfig``."""
    api_client, _ = _api_client(kubeconfig)
    with api_client:
        apply_admission(api_client, path)


def ensure_namespace(kubeconfig: Path, name: str) -> None:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    api_client, client = _api_client(kubeconfig)
    with api_client:
        try:
            client.CoreV1Api(api_client).create_namespace({"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise


def register_fake_nodes(kubeconfig: Path, names: tuple[str, ...] = FAKE_NODES) -> None:
    """Create the Node objects kwok plays the kubelet for."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    api_client, client = _api_client(kubeconfig)
    with api_client:
        core = client.CoreV1Api(api_client)
        for name in names:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        KWOK_NODE_LABEL: "true",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                    "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                },
                "spec": {},
            }
            try:
                core.create_node(node)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            # Admission adds the not-ready taint to every new Node; the node lifecycle controller
            # would lift it once the node is Ready, but it is off (no kubelet heartbeats), so the
            # fake nodes are untainted here, once.
            core.patch_node(name, {"spec": {"taints": None}})


def ensure_default_storage_class(kubeconfig: Path) -> None:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    api_client, client = _api_client(kubeconfig)
    with api_client:
        try:
            client.StorageV1Api(api_client).create_storage_class(
                {
                    "metadata": {
                        "name": "standard",
                        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                    },
                    "provisioner": "kubernetes.io/host-path",
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "Immediate",
                }
            )
        except ApiException as exc:
            if exc.status != 409:
                raise


def fake_nodes_ready(kubeconfig: Path) -> bool:
    api_client, client = _api_client(kubeconfig)
    with api_client:
        nodes = (
            client.CoreV1Api(api_client).list_node(label_selector=f"{KWOK_NODE_LABEL}=true").items
        )
        return len(nodes) == len(FAKE_NODES) and all(
            not n.spec.taints
            and any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
            for n in nodes
        )
