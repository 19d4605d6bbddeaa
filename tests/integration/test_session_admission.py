"""Who may create and change Sessions, judged by the API server itself (issue 13 items 6, 15).

The ValidatingAdmissionPolicy in ``crds/session-admission.yaml`` runs in our real kube-apiserver;
callers are impersonated users whom RBAC lets write Sessions in the test's namespace, so the
policy is the only thing that can stop them. The REST path has its own check (the facade's
identity is exempt from the policy): a user's PATCH cannot revive a terminated session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from facade_testing import Client, FacadeThread, token
from streamspace_dev.process import wait_until
from streamspace_facade.state import SERVICES
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects, apply_admission

pytestmark = pytest.mark.integration

POLICY = "sessions.stream.space"
PARAMS = ("streamspace", "streamspace-admission")  # namespace, name of the ConfigMap
FACADE_SA = "system:serviceaccount:streamspace:streamspace-facade"
ADMINS = "streamspace:admins"
DENIED = f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request"


def denied(name: str) -> str:
    """How the API server starts its refusal of a write to Session ``name`` by the policy."""
    return f'sessions.stream.space "{name}" is forbidden: {DENIED}'


@pytest.fixture
def sessions_rbac(session_admission: Any, api: client.ApiClient, namespace: str) -> str:
    """alice, oidc:alice, the admin group and the facade's ServiceAccount may write Sessions
    in ``namespace``: RBAC lets them, only the policy can refuse."""
    rbac = client.RbacAuthorizationV1Api(api)
    verbs = ["create", "get", "list", "watch", "update", "patch", "delete"]
    rule = {"apiGroups": [GROUP], "resources": ["sessions"], "verbs": verbs}
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "sessions"}, "rules": [rule]})
    group = "rbac.authorization.k8s.io"
    subjects = [
        {"kind": "User", "name": "alice", "apiGroup": group},
        {"kind": "User", "name": "oidc:alice", "apiGroup": group},
        {"kind": "Group", "name": ADMINS, "apiGroup": group},
        {"kind": "ServiceAccount", "name": "streamspace-facade", "namespace": "streamspace"},
    ]
    binding = {
        "metadata": {"name": "sessions"},
        "roleRef": {"apiGroup": group, "kind": "Role", "name": "sessions"},
        "subjects": subjects,
    }
    rbac.create_namespaced_role_binding(namespace, binding)
    return namespace


@contextmanager
def caller(cluster: Any, user: str, group: str | None = None) -> Iterator[client.ApiClient]:
    """An API client acting as ``user`` (and ``group``): impersonation headers on the admin's."""
    api_client = cluster.api_client()
    api_client.set_default_header("Impersonate-User", user)
    if group:
        api_client.set_default_header("Impersonate-Group", group)
    with api_client:
        yield api_client


def session(name: str, user: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Session",
        "metadata": {"name": name},
        "spec": {"user": user, "template": "firefox", **spec},
    }


def create(api: client.ApiClient, ns: str, body: dict[str, Any], dry_run: bool = False) -> Any:
    kw = {"dry_run": "All"} if dry_run else {}
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, "sessions", body, **kw
    )


def patch(api: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> Any:
    return client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, ns, "sessions", name, {"spec": spec}
    )


def refusal(call: Callable[[], Any], code: int = 403) -> str:
    """The API server's message refusing ``call`` (403 from a validation of the policy)."""
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == code, caught.value.body
    message: str = json.loads(caught.value.body)["message"]
    return message


def allowed(call: Callable[[], Any]) -> bool:
    """Whether ``call`` passes; False when refused (403, or 422 for a misconfigured policy)."""
    try:
        call()
    except ApiException as exc:
        if exc.status in (403, 422):
            return False
        raise
    return True


def may_create(api: client.ApiClient, ns: str, user: str) -> Callable[[], bool]:
    """Whether the caller may now create a session of ``user`` (dry run: nothing is stored)."""
    return lambda: allowed(lambda: create(api, ns, session("probe", user), dry_run=True))


def test_the_policy_type_checks_cleanly(
    full_cluster: Any, session_admission: Any, api: client.ApiClient
) -> None:
    """The controller manager type-checks the CEL against the Session schema."""
    admission = client.AdmissionregistrationV1Api(api)

    def checked() -> bool:
        status = admission.read_validating_admission_policy(POLICY).status
        return status is not None and status.type_checking is not None

    assert wait_until(checked, 30)
    status = admission.read_validating_admission_policy(POLICY).status
    assert not status.type_checking.expression_warnings, status.type_checking


def test_a_user_creates_sessions_only_for_themselves(
    cluster: Any, api: client.ApiClient, sessions_rbac: str
) -> None:
    ns = sessions_rbac
    with caller(cluster, "alice") as alice:
        # RBAC and the policy's informers settle: wait until alice may create her own
        assert wait_until(may_create(alice, ns, "alice"), 30)
        # the attack: a session mounting bob's home
        message = refusal(lambda: create(alice, ns, session("steal", "bob")))
        assert message == (
            f"{denied('steal')}: spec.user 'bob' is not the requesting user 'alice': "
            "only admins act on other users' sessions"
        )
        assert Objects(api, ns).session("steal") is None
        create(alice, ns, session("mine", "alice"))
        # and no changing bob's session (created by an admin) either
        create(api, ns, session("bobs", "bob"))
        refused = refusal(lambda: patch(alice, ns, "bobs", {"state": "hibernated"}))
        assert refused.startswith(f"{denied('bobs')}: spec.user 'bob' is not the requesting user")
        assert Objects(api, ns).spec("bobs")["state"] == "running"


def test_admins_and_the_facade_act_for_any_user(
    cluster: Any, api: client.ApiClient, sessions_rbac: str
) -> None:
    ns = sessions_rbac
    with caller(cluster, "carol", ADMINS) as carol, caller(cluster, FACADE_SA) as facade:
        assert wait_until(may_create(carol, ns, "bob"), 30)
        create(carol, ns, session("by-admin", "bob"))
        assert wait_until(may_create(facade, ns, "bob"), 30)
        create(facade, ns, session("by-facade", "bob"))
        patch(facade, ns, "by-admin", {"state": "hibernated"})


def test_the_username_prefix_is_stripped(
    cluster: Any, api: client.ApiClient, sessions_rbac: str
) -> None:
    ns, core = sessions_rbac, client.CoreV1Api(api)
    core.patch_namespaced_config_map(PARAMS[1], PARAMS[0], {"data": {"usernamePrefix": "oidc:"}})
    try:
        with caller(cluster, "oidc:alice") as alice:
            own = session("mine", "alice")
            assert wait_until(lambda: allowed(lambda: create(alice, ns, own, True)), 30)
            message = refusal(lambda: create(alice, ns, session("steal", "bob")))
            assert "spec.user 'bob' is not the requesting user 'alice'" in message
            # the prefix is stripped, not ignored: "oidc:alice" is not user "oidc-alice"
            refusal(lambda: create(alice, ns, session("other", "oidc-alice")))
    finally:
        apply_admission(api)


def test_without_its_parameters_the_policy_fails_closed(
    cluster: Any, api: client.ApiClient, sessions_rbac: str
) -> None:
    ns, core = sessions_rbac, client.CoreV1Api(api)
    core.delete_namespaced_config_map(PARAMS[1], PARAMS[0])
    try:
        with caller(cluster, "alice") as alice:
            own = session("mine", "alice")
            assert wait_until(lambda: not allowed(lambda: create(alice, ns, own, True)), 30)
            message = refusal(lambda: create(alice, ns, own, True), code=422)
            assert message.startswith(denied("mine"))
            assert "no params found" in message
    finally:
        apply_admission(api)
    with caller(cluster, "alice") as alice:
        assert wait_until(lambda: allowed(lambda: create(alice, ns, own, True)), 30)


def test_only_admins_revive_a_terminated_session_with_kubectl(
    cluster: Any, api: client.ApiClient, sessions_rbac: str
) -> None:
    ns = sessions_rbac
    with caller(cluster, "alice") as alice:
        assert wait_until(may_create(alice, ns, "alice"), 30)
        create(alice, ns, session("mine", "alice"))
        patch(alice, ns, "mine", {"state": "hibernated"})  # her own: any live state
        patch(alice, ns, "mine", {"state": "terminated"})
        for state in ("running", "hibernated"):
            message = refusal(lambda: patch(alice, ns, "mine", {"state": state}))  # noqa: B023
            assert message == (
                f"{denied('mine')}: the session is terminated: only admins may change spec.state back; "
                "create a new session instead"
            )
        patch(alice, ns, "mine", {"tags": ["kept"]})  # other changes stay hers
        assert Objects(api, ns).spec("mine")["state"] == "terminated"
    with caller(cluster, "carol", ADMINS) as carol:
        patch(carol, ns, "mine", {"state": "running"})
    assert Objects(api, ns).spec("mine")["state"] == "running"


def test_only_admins_revive_a_terminated_session_over_rest(
    api: client.ApiClient,
    namespace: str,
    database: str,
    start_facade: Callable[..., FacadeThread],
) -> None:
    Objects(api, namespace).create("templates", "firefox", TEMPLATE)
    facade = start_facade(DATABASE_URL=database)
    assert facade.app is not None
    assert wait_until(facade.app[SERVICES].mirror.ready.is_set, 60)
    alice = Client(facade.url, token("alice"))
    ops = Client(facade.url, token("olga", "operator"))
    admin = Client(facade.url, token("root", "admin"))
    created = alice.post("/api/v1/sessions", {"template": "firefox"})
    assert created.status == 201, created
    path = f"/api/v1/sessions/{created.body['id']}"
    assert alice.patch(path, {"state": "terminated"}).status == 200
    for who in (alice, ops):
        for state in ("running", "hibernated"):
            refused = who.patch(path, {"state": state})
            assert refused.status == 403, refused
            assert refused.body["code"] == "FORBIDDEN"
            assert "only admins may change its state back" in refused.body["error"]
    assert alice.patch(path, {"tags": ["kept"]}).status == 200
    assert Objects(api, namespace).spec(created.body["id"])["state"] == "terminated"
    revived = admin.patch(path, {"state": "running"})
    assert revived.status == 200, revived
    assert revived.body["state"] == "running"
    assert alice.patch(path, {"state": "hibernated"}).status == 200  # alive again: hers


def test_only_admins_transfer_a_session_with_kubectl(
    cluster: Any, api: client.ApiClient, sessions_rbac: str
) -> None:
    """Issue 19: spec.user may change (a hibernated session's transfer), but the requester rule
    alone would let a user whom RBAC lets write Sessions take another's: the policy stops it."""
    ns = sessions_rbac
    create(api, ns, session("alices", "alice", state="hibernated"))
    create(api, ns, session("mine", "alice", state="hibernated", sharedWith=[]))
    with caller(cluster, "alice") as alice, caller(cluster, "carol", ADMINS) as carol:
        assert wait_until(may_create(alice, ns, "alice"), 30)
        # handing her own session to bob: refused (it would be bob's home mounted for her)
        message = refusal(lambda: patch(alice, ns, "mine", {"user": "bob"}))
        assert message.startswith(denied("mine")), message
        assert Objects(api, ns).spec("mine")["user"] == "alice"
        # sharing her own session is hers to do
        patch(alice, ns, "mine", {"sharedWith": [{"user": "bob", "access": "view"}]})
        # an admin transfers it
        assert wait_until(lambda: allowed(lambda: patch(carol, ns, "alices", {"user": "bob"})), 30)
        assert Objects(api, ns).spec("alices")["user"] == "bob"
    # bob, whom RBAC lets write Sessions, takes alice's hibernated session: refused
    rbac = client.RbacAuthorizationV1Api(api)
    group = "rbac.authorization.k8s.io"
    rbac.patch_namespaced_role_binding(
        "sessions",
        ns,
        [
            {
                "op": "add",
                "path": "/subjects/-",
                "value": {"kind": "User", "name": "bob", "apiGroup": group},
            }
        ],
    )
    with caller(cluster, "bob") as bob:
        assert wait_until(may_create(bob, ns, "bob"), 30)
        taken = refusal(lambda: patch(bob, ns, "mine", {"user": "bob", "sharedWith": []}))
        assert taken == f"{denied('mine')}: only admins transfer a session to another user"
        assert Objects(api, ns).spec("mine")["user"] == "alice"
