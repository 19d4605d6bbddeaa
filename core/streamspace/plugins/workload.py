"""The Kubernetes objects a Plugin owns, built as plain dicts. Pure: no I/O, no clock.

Each is named ``plugin-<name>`` and owned by the Plugin (controller reference), so it goes with
the Plugin and is never mistaken for anyone else's object of that name (``ownership``):

* the Secret (built in ``streamspace.plugins.secret``): ``signing-secret`` (Standard Webhooks,
  ``whsec_`` + base64) and ``config.json`` (the secret configuration properties);
* for a runnable plugin, a Deployment under the restricted Pod Security Standard (non-root, no
  privilege escalation, every capability dropped, RuntimeDefault seccomp, read-only root file
  system, no service-account token), its Service, and a NetworkPolicy that admits only the
  facade's pods on the plugin's port and lets out DNS only, or anything when the permission
  ``network.egress`` is granted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamspace import API_GROUP
from streamspace.manifests import MANAGED_BY
from streamspace.ownership import controller_reference
from streamspace.podsecurity import container_security_context, pod_security_context
from streamspace.templates import Resources, normalize_resources

PLUGIN_LABEL = f"{API_GROUP}/plugin"
PLUGIN_ANNOTATION = f"{API_GROUP}/plugin-name"
SIGNING_KEY = "signing-secret"
CONFIG_KEY = "config.json"
SECRET_MOUNT = "/var/run/streamspace"  # noqa: S105 - a path, not a secret
CONTAINER = "plugin"
EGRESS_PERMISSION = "network.egress"
# The facade's pods, as the chart labels them, in any namespace (all-namespaces installs).
FACADE_PODS = {"app.kubernetes.io/part-of": "streamspace", "app.kubernetes.io/component": "facade"}
DEFAULT_PLUGIN_RESOURCES: Resources = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}


def child_name(plugin: str) -> str:
    """``plugin-<name>``: a Plugin's name is a DNS label of at most 56 characters (the CRD),
    so this is a valid name for a Secret, a Deployment and a Service alike."""
    return f"plugin-{plugin}"


@dataclass(frozen=True)
class PluginRef:
    """The parts of a Plugin its children are built from."""

    name: str
    namespace: str
    uid: str


def labels(ref: PluginRef) -> dict[str, str]:
    return {**MANAGED_BY, PLUGIN_LABEL: ref.name}


def owner_reference(ref: PluginRef, *, block: bool = True) -> dict[str, Any]:
    """The Plugin as its children's controller; ``block``: ``blockOwnerDeletion`` (which needs
    permission on the Plugin's finalizers: the operator has it, the facade does not)."""
    return controller_reference("Plugin", ref.name, ref.uid, block=block)


def _metadata(ref: PluginRef) -> dict[str, Any]:
    return {
        "name": child_name(ref.name),
        "namespace": ref.namespace,
        "labels": labels(ref),
        "annotations": {PLUGIN_ANNOTATION: ref.name},
        "ownerReferences": [owner_reference(ref)],
    }


def deployment(
    ref: PluginRef, image: str, port: int, resources: Resources, replicas: int
) -> dict[str, Any]:
    security = container_security_context([])
    security.update(readOnlyRootFilesystem=True, runAsNonRoot=True)
    container = {
        "name": CONTAINER,
        "image": image,
        "ports": [{"name": "events", "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": "PORT", "value": str(port)}],
        # The manifest's resources as they are (Kubernetes defaults missing requests to the
        # limits); mixing in defaults could put a request above a limit. None: the defaults.
        "resources": normalize_resources(resources) or DEFAULT_PLUGIN_RESOURCES,
        "securityContext": security,
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10},
        "volumeMounts": [
            {"name": "streamspace", "mountPath": SECRET_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(ref),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels(ref)},
            "template": {
                "metadata": {"labels": labels(ref), "annotations": {PLUGIN_ANNOTATION: ref.name}},
                "spec": {
                    "containers": [container],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {**pod_security_context(), "runAsNonRoot": True},
                    "volumes": [
                        {
                            "name": "streamspace",
                            "secret": {"secretName": child_name(ref.name), "defaultMode": 0o440},
                        },
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }


def service(ref: PluginRef, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ref),
        "spec": {
            "type": "ClusterIP",
            "selector": labels(ref),
            "ports": [{"name": "events", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def network_policy(ref: PluginRef, port: int, egress: bool) -> dict[str, Any]:
    facade = {"namespaceSelector": {}, "podSelector": {"matchLabels": FACADE_PODS}}
    dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(ref),
        "spec": {
            "podSelector": {"matchLabels": labels(ref)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [facade], "ports": [{"port": port, "protocol": "TCP"}]}],
            "egress": [{}] if egress else [dns],
        },
    }


def service_url(ref: PluginRef, port: int) -> str:
    return f"http://{child_name(ref.name)}.{ref.namespace}.svc:{port}/events"
