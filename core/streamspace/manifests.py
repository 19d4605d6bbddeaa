"""The Kubernetes objects a Session runs as, built as plain dicts. Pure: no I/O, no clock.

Deployment, Service, NetworkPolicy and (optionally) Ingress are owned by the Session and go with
it. The home volume claim ``home-<user>`` is the user's data: shared by all their sessions, never
owned by one. The pod runs under the default security context of ``podsecurity``; the
NetworkPolicy admits only the ingress controller's namespace; the Ingress sends every request
through the facade's access gate (forward auth) first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamspace import API_GROUP
from streamspace.auth.access import SESSION_HEADER, USER_HEADER, session_host
from streamspace.naming import home_pvc_name, label_value, workload_name
from streamspace.ownership import controller_reference
from streamspace.podsecurity import (
    container_security_context,
    kept_capabilities,
    pod_security_context,
)
from streamspace.templates import Resources, TemplateView, merge_resources, normalize_resources

MANAGED_BY = {"app.kubernetes.io/managed-by": "streamspace"}
SESSION_LABEL = f"{API_GROUP}/session"
USER_LABEL = f"{API_GROUP}/user"
TEMPLATE_LABEL = f"{API_GROUP}/template"
SESSION_ANNOTATION = f"{API_GROUP}/session-name"
CONTAINER = "session"
HOME_VOLUME = "home"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
NGINX_AUTH_URL = "nginx.ingress.kubernetes.io/auth-url"
NGINX_AUTH_SIGNIN = "nginx.ingress.kubernetes.io/auth-signin"
NGINX_AUTH_RESPONSE_HEADERS = "nginx.ingress.kubernetes.io/auth-response-headers"
TRAEFIK_MIDDLEWARES = "traefik.ingress.kubernetes.io/router.middlewares"


DEFAULT_RESOURCES: Resources = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"cpu": "2", "memory": "4Gi"},
}
"""The operator's defaults, the last layer under session and Template resources."""


@dataclass(frozen=True)
class SessionRef:
    """The parts of a Session that its children are built from."""

    name: str
    namespace: str
    uid: str
    user: str
    template: str
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class WorkloadOptions:
    """Operator-wide choices that shape every session's children."""

    default_resources: Resources
    ingress_domain: str | None = None
    ingress_class: str | None = None
    storage_class: str | None = None
    home_size: str = "10Gi"
    auth_url: str | None = None  # the facade's auth check, for ingress-nginx
    auth_signin_url: str | None = None
    traefik_middleware: str | None = None  # a ForwardAuth Middleware, for Traefik
    ingress_namespace: str = "ingress-nginx"  # the only source a session's pod admits
    allowed_capabilities: tuple[str, ...] = ()


def labels(ref: SessionRef) -> dict[str, str]:
    return {
        **MANAGED_BY,
        SESSION_LABEL: label_value(ref.name),
        USER_LABEL: ref.user,
        TEMPLATE_LABEL: label_value(ref.template),
    }


def selector(ref: SessionRef) -> dict[str, str]:
    return {**MANAGED_BY, SESSION_LABEL: label_value(ref.name)}


def owner_reference(ref: SessionRef) -> dict[str, Any]:
    return controller_reference("Session", ref.name, ref.uid)


def _metadata(ref: SessionRef) -> dict[str, Any]:
    return {
        "name": workload_name(ref.name),
        "namespace": ref.namespace,
        "labels": labels(ref),
        "annotations": {SESSION_ANNOTATION: ref.name},
        "ownerReferences": [owner_reference(ref)],
    }


def session_resources(ref: SessionRef, template: TemplateView, opts: WorkloadOptions) -> Resources:
    """Session → template defaults → operator defaults, key by key."""
    own = normalize_resources(ref.spec.get("resources"))
    return merge_resources(own, template.resources, opts.default_resources)


def _container_ports(template: TemplateView) -> list[dict[str, Any]]:
    ports = [
        {"name": p.name, "containerPort": p.container_port, "protocol": p.protocol}
        for p in template.ports
    ]
    main = template.main_port
    if main is not None and all(p["containerPort"] != main for p in ports):
        ports.insert(0, {"name": "main", "containerPort": main, "protocol": "TCP"})
    return ports


def _readiness_probe(template: TemplateView) -> dict[str, Any] | None:
    port = template.main_port
    if port is None:
        return None
    if template.app_type == "webapp" and template.health_check:
        action: dict[str, Any] = {"httpGet": {"path": template.health_check, "port": port}}
    else:
        action = {"tcpSocket": {"port": port}}
    return {**action, "periodSeconds": 5, "failureThreshold": 3}


def deployment(
    ref: SessionRef, template: TemplateView, opts: WorkloadOptions, replicas: int
) -> dict[str, Any]:
    persistent = bool(ref.spec.get("persistentHome", True))
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": template.base_image,
        "ports": _container_ports(template),
        "env": [{"name": k, "value": v} for k, v in template.env],
        "resources": session_resources(ref, template, opts),
        "securityContext": container_security_context(
            kept_capabilities(template.capabilities, opts.allowed_capabilities)
        ),
    }
    probe = _readiness_probe(template)
    if probe:
        container["readinessProbe"] = probe
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
    }
    if persistent:
        container["volumeMounts"] = [{"name": HOME_VOLUME, "mountPath": template.home_path}]
        pod_spec["volumes"] = [
            {"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": home_pvc_name(ref.user)}}
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(ref),
        "spec": {
            "replicas": replicas,
            # One pod per session at a time: the home volume and the user's desktop are singular.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(ref)},
            "template": {
                "metadata": {
                    "labels": labels(ref),
                    "annotations": {SESSION_ANNOTATION: ref.name},
                },
                "spec": pod_spec,
            },
        },
    }


def service(ref: SessionRef, template: TemplateView) -> dict[str, Any]:
    ports = [
        {
            "name": p["name"],
            "port": p["containerPort"],
            "targetPort": p["containerPort"],
            "protocol": p["protocol"],
        }
        for p in _container_ports(template)
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ref),
        "spec": {"type": "ClusterIP", "selector": selector(ref), "ports": ports},
    }


def network_policy(
    ref: SessionRef, template: TemplateView, opts: WorkloadOptions
) -> dict[str, Any]:
    """Traffic to the session's pod comes from the ingress controller's namespace, on the
    session's ports, or not at all."""
    ports = [
        {"port": p["containerPort"], "protocol": p["protocol"]} for p in _container_ports(template)
    ]
    source = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: opts.ingress_namespace}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(ref),
        "spec": {
            "podSelector": {"matchLabels": selector(ref)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [source], "ports": ports}],
        },
    }


def gate_annotations(opts: WorkloadOptions) -> dict[str, str]:
    """Forward-auth annotations: every request to the session asks the facade first."""
    annotations: dict[str, str] = {}
    if opts.auth_url:
        annotations[NGINX_AUTH_URL] = opts.auth_url
        annotations[NGINX_AUTH_RESPONSE_HEADERS] = f"{USER_HEADER},{SESSION_HEADER}"
        if opts.auth_signin_url:
            annotations[NGINX_AUTH_SIGNIN] = opts.auth_signin_url
    if opts.traefik_middleware:
        annotations[TRAEFIK_MIDDLEWARES] = opts.traefik_middleware
    return annotations


def ingress(ref: SessionRef, template: TemplateView, opts: WorkloadOptions) -> dict[str, Any]:
    name = workload_name(ref.name)
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": session_host(ref.name, str(opts.ingress_domain)),
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {"name": name, "port": {"number": template.main_port}}
                            },
                        }
                    ]
                },
            }
        ]
    }
    if opts.ingress_class:
        spec["ingressClassName"] = opts.ingress_class
    metadata = _metadata(ref)
    metadata["annotations"].update(gate_annotations(opts))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    }


def home_pvc(ref: SessionRef, opts: WorkloadOptions) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": opts.home_size}},
    }
    if opts.storage_class:
        spec["storageClassName"] = opts.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": home_pvc_name(ref.user),
            "namespace": ref.namespace,
            "labels": {**MANAGED_BY, USER_LABEL: ref.user},
        },
        "spec": spec,
    }


def session_url(ref: SessionRef, template: TemplateView, opts: WorkloadOptions) -> str:
    """Where the browser reaches the session: the Ingress host, else the in-cluster Service."""
    name = workload_name(ref.name)
    path = template.webapp_path if template.app_type == "webapp" else "/"
    if opts.ingress_domain:
        return f"https://{session_host(ref.name, opts.ingress_domain)}{path}"
    return f"http://{name}.{ref.namespace}.svc.cluster.local:{template.main_port}{path}"
