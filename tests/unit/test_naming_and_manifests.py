"""Child names, template normalisation and the manifests a session runs as."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from streamspace.auth.access import session_host
from streamspace.manifests import (
    NAMESPACE_NAME_LABEL,
    SESSION_LABEL,
    SessionRef,
    WorkloadOptions,
    deployment,
    home_pvc,
    ingress,
    labels,
    network_policy,
    selector,
    service,
    session_resources,
)
from streamspace.naming import label_value, workload_name
from streamspace.templates import (
    infer_app_type,
    merge_resources,
    normalize_resources,
    template_problems,
    view_template,
)

pytestmark = pytest.mark.unit

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        ("alice-firefox", "alice-firefox"),
        ("alice-firefox-1a2b3c4d", "alice-firefox-1a2b3c4d"),
        ("team.alice.firefox", None),  # dots: changed, so hashed
        ("42-desktop", None),  # a leading digit is not a DNS-1035 label
        ("a" * 63, "a" * 63),
        ("a" * 64, None),
        ("x" * 253, None),
    ],
)
def test_workload_names_are_valid_service_names(session: str, expected: str | None) -> None:
    name = workload_name(session)
    assert DNS_1035.match(name) and len(name) <= 63, name
    if expected is not None:
        assert name == expected
    assert workload_name(session) == name  # stable


def test_long_names_that_share_a_prefix_do_not_collide() -> None:
    base = "alice-" + "very-long-template-name-" * 4
    names = {workload_name(base + suffix) for suffix in ("one", "two", "three")}
    assert len(names) == 3
    assert workload_name("a.b") != workload_name("a-b")


def test_label_values() -> None:
    assert label_value("short") == "short"
    long = "t" * 100 + ".example"
    assert LABEL_VALUE.match(label_value(long)) and len(label_value(long)) <= 63
    assert label_value(long) != label_value(long + "x")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"memory": "2Gi", "cpu": "1000m"},
            {
                "requests": {"cpu": "1000m", "memory": "2Gi"},
                "limits": {"cpu": "1000m", "memory": "2Gi"},
            },
        ),
        (
            {"requests": {"cpu": "500m"}, "limits": {"memory": "4Gi"}},
            {"requests": {"cpu": "500m"}, "limits": {"memory": "4Gi"}},
        ),
        ({"requests": {"cpu": 2}}, {"requests": {"cpu": "2"}}),
        ({}, {}),
        (None, {}),
    ],
)
def test_normalize_resources(raw: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    assert normalize_resources(raw) == expected


def test_resources_precedence_session_then_template_then_operator() -> None:
    operator = {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    template = {"requests": {"memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    own = {"limits": {"memory": "8Gi"}}
    assert merge_resources(own, template, operator) == {
        "requests": {"cpu": "250m", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "8Gi"},
    }


@pytest.mark.parametrize(
    ("spec", "app_type"),
    [
        ({"appType": "webapp", "kasmvnc": {"enabled": True}}, "webapp"),
        ({"webapp": {"enabled": True, "port": 8080}}, "webapp"),
        ({"vnc": {"enabled": False}, "ports": [{"name": "http", "containerPort": 8080}]}, "webapp"),
        ({"ports": [{"name": "http", "containerPort": 8080}]}, "webapp"),
        (
            {"kasmvnc": {"enabled": True}, "ports": [{"name": "http", "containerPort": 80}]},
            "desktop",
        ),
        ({"kasmvnc": {"enabled": True}}, "desktop"),
        ({}, "desktop"),
    ],
)
def test_app_type_inference(spec: dict[str, Any], app_type: str) -> None:
    assert infer_app_type(spec) == app_type


def test_kasmvnc_is_vnc_and_home_path_follows_user_home() -> None:
    view = view_template(
        {
            "baseImage": "img",
            "kasmvnc": {"enabled": True},
            "volumeMounts": [{"name": "user-home", "mountPath": "/home/kasm-user"}],
        }
    )
    assert view.vnc_enabled and view.vnc_port == 3000 and view.main_port == 3000
    assert view.home_path == "/home/kasm-user"
    assert view_template({"baseImage": "img", "vnc": {"port": 5901}}).main_port == 5901


def test_template_problems() -> None:
    assert template_problems("ok", {"baseImage": "img", "kasmvnc": {"enabled": True}}) == []
    assert template_problems("bad_name", {"baseImage": "img", "kasmvnc": {}}) == [
        "metadata.name 'bad_name' is not a valid Kubernetes object name"
    ]
    assert "spec.baseImage is required" in template_problems("x", {"kasmvnc": {}})
    assert template_problems("x", {"baseImage": "i", "webapp": {"enabled": True}}) == [
        "a webapp template needs webapp.port or a port in spec.ports"
    ]


REF = SessionRef("alice-firefox", "ns", "uid-1", "alice", "firefox", {"persistentHome": True})
OPTS = WorkloadOptions(default_resources={"requests": {"cpu": "250m"}})
VIEW = view_template(
    {
        "baseImage": "lscr.io/linuxserver/firefox:latest",
        "kasmvnc": {"enabled": True, "port": 3000},
        "env": [{"name": "PUID", "value": "1000"}],
        "defaultResources": {"memory": "2Gi"},
    }
)


def test_deployment_manifest() -> None:
    dep = deployment(REF, VIEW, OPTS, replicas=1)
    assert dep["metadata"]["ownerReferences"][0] == {
        "apiVersion": "stream.space/v1alpha1",
        "kind": "Session",
        "name": "alice-firefox",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert dep["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "streamspace",
        SESSION_LABEL: "alice-firefox",
        "stream.space/user": "alice",
        "stream.space/template": "firefox",
    }
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == VIEW.base_image
    assert container["readinessProbe"]["tcpSocket"] == {"port": 3000}
    assert container["env"] == [{"name": "PUID", "value": "1000"}]
    assert container["volumeMounts"] == [{"name": "home", "mountPath": "/config"}]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "home-alice"}
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "2Gi"},
        "limits": {"memory": "2Gi"},
    }
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels(REF).items()


def test_no_home_without_persistent_home() -> None:
    ref = SessionRef("s", "ns", "u", "alice", "t", {"persistentHome": False})
    pod = deployment(ref, VIEW, OPTS, replicas=1)["spec"]["template"]["spec"]
    assert "volumes" not in pod and "volumeMounts" not in pod["containers"][0]


def test_home_pvc_is_not_owned_by_the_session() -> None:
    pvc = home_pvc(
        REF, WorkloadOptions(default_resources={}, storage_class="fast", home_size="5Gi")
    )
    assert "ownerReferences" not in pvc["metadata"]
    assert pvc["metadata"]["name"] == "home-alice"
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "fast",
    }


def test_service_exposes_the_template_ports() -> None:
    svc = service(REF, VIEW)
    assert svc["spec"]["ports"] == [
        {"name": "main", "port": 3000, "targetPort": 3000, "protocol": "TCP"}
    ]
    assert svc["spec"]["type"] == "ClusterIP"
    assert session_resources(REF, VIEW, OPTS)["requests"]["cpu"] == "250m"


def test_session_pods_run_with_the_default_security_context() -> None:
    pod = deployment(REF, VIEW, OPTS, replicas=1)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


@pytest.mark.parametrize(
    ("declared", "allowed", "added"),
    [
        (["NET_BIND_SERVICE", "Audio"], (), None),  # the template alone grants nothing
        ([], ("NET_BIND_SERVICE",), None),  # nor the admin alone
        (
            ["net_bind_service", "Audio", "CAP_SYS_ADMIN"],
            ("NET_BIND_SERVICE",),
            ["NET_BIND_SERVICE"],
        ),
        (["CHOWN", "SETUID", "SETGID"], ("SETGID", "CHOWN"), ["CHOWN", "SETGID"]),
        (["ALL"], ("ALL",), None),  # ALL is never a capability to add
    ],
)
def test_capabilities_come_back_only_when_declared_and_allowed(
    declared: list[str], allowed: tuple[str, ...], added: list[str] | None
) -> None:
    view = view_template({"baseImage": "x", "vnc": {"port": 5901}, "capabilities": declared})
    opts = WorkloadOptions(default_resources={}, allowed_capabilities=allowed)
    container = deployment(REF, view, opts, replicas=1)["spec"]["template"]["spec"]["containers"][0]
    capabilities = container["securityContext"]["capabilities"]
    assert capabilities["drop"] == ["ALL"]
    assert capabilities.get("add") == added


def test_network_policy_admits_only_the_ingress_namespace_on_the_session_ports() -> None:
    view = view_template(
        {
            "baseImage": "x",
            "vnc": {"port": 5901},
            "ports": [{"name": "audio", "containerPort": 4713, "protocol": "UDP"}],
        }
    )
    opts = WorkloadOptions(default_resources={}, ingress_namespace="traefik")
    policy = network_policy(REF, view, opts)
    assert policy["kind"] == "NetworkPolicy"
    assert policy["metadata"]["name"] == workload_name(REF.name)
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert policy["spec"] == {
        "podSelector": {"matchLabels": selector(REF)},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "traefik"}}}],
                "ports": [{"port": 5901, "protocol": "TCP"}, {"port": 4713, "protocol": "UDP"}],
            }
        ],
    }
    default = network_policy(REF, VIEW, OPTS)["spec"]["ingress"][0]["from"][0]
    assert default["namespaceSelector"]["matchLabels"][NAMESPACE_NAME_LABEL] == "ingress-nginx"


def test_ingress_carries_the_forward_auth_annotations() -> None:
    opts = WorkloadOptions(
        default_resources={},
        ingress_domain="sessions.example.com",
        auth_url="http://streamspace-api.streamspace.svc:8080/auth/session",
        auth_signin_url="https://streamspace.example.com/login",
        traefik_middleware="streamspace-session-auth@kubernetescrd",
    )
    ing = ingress(REF, VIEW, opts)
    annotations = ing["metadata"]["annotations"]
    assert annotations == {
        "stream.space/session-name": REF.name,
        "nginx.ingress.kubernetes.io/auth-url": opts.auth_url,
        "nginx.ingress.kubernetes.io/auth-signin": opts.auth_signin_url,
        "nginx.ingress.kubernetes.io/auth-response-headers": (
            "X-StreamSpace-User,X-StreamSpace-Session"
        ),
        "traefik.ingress.kubernetes.io/router.middlewares": opts.traefik_middleware,
    }
    assert ing["spec"]["rules"][0]["host"] == session_host(REF.name, "sessions.example.com")
    # only the controllers configured get annotations; the other children get none of them
    nginx_only = ingress(REF, VIEW, replace(opts, auth_signin_url=None, traefik_middleware=None))
    assert set(nginx_only["metadata"]["annotations"]) == {
        "stream.space/session-name",
        "nginx.ingress.kubernetes.io/auth-url",
        "nginx.ingress.kubernetes.io/auth-response-headers",
    }
    assert set(service(REF, VIEW)["metadata"]["annotations"]) == {"stream.space/session-name"}
