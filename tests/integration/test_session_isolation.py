"""Session pods isolated on the real API server (issue 13, item 7): the operator gives every
session a NetworkPolicy admitting only the ingress controller's namespace, a pod template with
the default security context, and an Ingress that asks the access gate first."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from streamspace.naming import workload_name
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, TIMEOUT, Objects

pytestmark = pytest.mark.integration

AUTH_URL = "http://streamspace-api.streamspace.svc:8080/auth/session"
MIDDLEWARE = "streamspace-session-auth@kubernetescrd"


def _read(call: Callable[..., Any], *args: Any) -> Any | None:
    try:
        return call(*args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_operator_isolates_session_pods(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., Any]
) -> None:
    objects = Objects(api, namespace)
    networking = client.NetworkingV1Api(api)
    name = workload_name("alice-firefox")
    start_operator(
        RECONCILE_INTERVAL="1s",
        INGRESS_DOMAIN="sessions.test",
        SESSION_AUTH_URL=AUTH_URL,
        SESSION_AUTH_TRAEFIK_MIDDLEWARE=MIDDLEWARE,
        INGRESS_NAMESPACE="edge",
        ALLOWED_CAPABILITIES="NET_BIND_SERVICE,CHOWN",
    )
    # the template asks for more than the admin allows: only the intersection comes back
    objects.create(
        "templates",
        "firefox",
        {
            **TEMPLATE,
            "ports": [{"name": "audio", "containerPort": 4713, "protocol": "UDP"}],
            "capabilities": ["NET_BIND_SERVICE", "SYS_ADMIN", "Audio"],
        },
    )
    objects.create("sessions", "alice-firefox", {"user": "alice", "template": "firefox"})
    session = objects.session("alice-firefox")
    assert session is not None

    def policy() -> Any | None:
        return _read(networking.read_namespaced_network_policy, name, namespace)

    def ingress() -> Any | None:
        return _read(networking.read_namespaced_ingress, name, namespace)

    # one reconcile applies them in turn: the policy first, the Ingress last
    assert wait_until(lambda: ingress() is not None, TIMEOUT), "no Ingress"
    stored = policy()
    owner = stored.metadata.owner_references[0]
    assert (owner.kind, owner.uid, owner.controller) == (
        "Session",
        session["metadata"]["uid"],
        True,
    )
    assert stored.spec.pod_selector.match_labels == {
        "app.kubernetes.io/managed-by": "streamspace",
        "stream.space/session": "alice-firefox",
    }
    assert stored.spec.policy_types == ["Ingress"]
    [rule] = stored.spec.ingress
    [source] = rule._from
    assert source.namespace_selector.match_labels == {"kubernetes.io/metadata.name": "edge"}
    assert source.pod_selector is None and source.ip_block is None
    assert sorted((p.port, p.protocol) for p in rule.ports) == [(3000, "TCP"), (4713, "UDP")]

    deployment = objects.deployment("alice-firefox")
    pod = deployment.spec.template.spec
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    context = pod.containers[0].security_context
    assert context.allow_privilege_escalation is False
    assert context.capabilities.drop == ["ALL"]
    assert context.capabilities.add == ["NET_BIND_SERVICE"]  # not SYS_ADMIN: not allowed

    annotations = ingress().metadata.annotations
    assert annotations["nginx.ingress.kubernetes.io/auth-url"] == AUTH_URL
    assert annotations["nginx.ingress.kubernetes.io/auth-response-headers"] == (
        "X-StreamSpace-User,X-StreamSpace-Session"
    )
    assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] == MIDDLEWARE

    # a deleted policy comes back with the next reconcile
    networking.delete_namespaced_network_policy(name, namespace)
    assert wait_until(lambda: policy() is not None, TIMEOUT), "NetworkPolicy not restored"

    # a terminated session keeps no policy (nor any other child)
    objects.set_state("alice-firefox", "terminated")
    assert wait_until(lambda: policy() is None, TIMEOUT), "NetworkPolicy not deleted"
    assert objects.deployment("alice-firefox") is None


def test_the_api_server_judges_the_pod_template_restricted_but_for_the_user(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., Any]
) -> None:
    """Pod Security admission on the real API server: the operator's pod template meets the
    ``restricted`` profile's capability, privilege-escalation and seccomp rules; only
    ``runAsNonRoot`` is left to the image (desktop images often start as root)."""
    objects = Objects(api, namespace)
    core = client.CoreV1Api(api)
    start_operator()
    objects.create("templates", "firefox", {**TEMPLATE, "capabilities": ["SYS_ADMIN"]})
    objects.create("sessions", "alice-firefox", {"user": "alice", "template": "firefox"})
    assert wait_until(lambda: objects.deployment("alice-firefox") is not None, TIMEOUT)
    template = api.sanitize_for_serialization(objects.deployment("alice-firefox").spec.template)
    # the controller manager makes this in every namespace; the integration profile runs none
    if _read(core.read_namespaced_service_account, "default", namespace) is None:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    pod = {"metadata": {"name": "judged"}, "spec": template["spec"]}
    refusals: list[ApiException] = []

    def judged() -> bool:
        # Pod Security admission reads namespace labels from its informer: the new label is
        # seen a moment after the patch, more so on a busy machine
        try:
            core.create_namespaced_pod(namespace, pod, dry_run="All")
        except ApiException as exc:
            refusals.append(exc)
            return True
        return False

    assert wait_until(judged, TIMEOUT), "the restricted label was never enforced"
    refused = refusals[-1]
    message = json.loads(refused.body)["message"]
    assert refused.status == 403 and 'violates PodSecurity "restricted' in message, message
    assert "runAsNonRoot" in message
    for rule in ("allowPrivilegeEscalation", "unrestricted capabilities", "seccompProfile"):
        assert rule not in message, message
    # the same pod as the operator made it before this change is refused on every count
    bare = api.sanitize_for_serialization(objects.deployment("alice-firefox").spec.template)
    bare["spec"].pop("securityContext")
    bare["spec"]["containers"][0].pop("securityContext")
    with pytest.raises(ApiException) as worse:
        core.create_namespaced_pod(
            namespace, {"metadata": {"name": "bare"}, "spec": bare["spec"]}, dry_run="All"
        )
    message = json.loads(worse.value.body)["message"]
    for rule in ("allowPrivilegeEscalation", "unrestricted capabilities", "seccompProfile"):
        assert rule in message, message
