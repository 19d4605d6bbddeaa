"""The chart with ``operator.shards``: one operator per shard, its rights in its namespaces only,
and the sets that cannot work refused at render time with a message that says why.

Rendered with the real ``helm``, dry-run applied on the real API server, and the shards'
ServiceAccounts and Roles applied for real, so that ``kubectl auth can-i`` answers for them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import yaml
from kubernetes import client

from helm_testing import CHART, Helm, can_i, helm_binary
from streamspace_testing import new_namespace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def helm(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_binary(), cluster.kubeconfig, tmp_path_factory.mktemp("helm"))


@pytest.fixture
def spaces(api: client.ApiClient) -> Iterator[list[str]]:
    """The release namespace and three tenant namespaces."""
    with ExitStack() as stack:
        yield [stack.enter_context(new_namespace(api)) for _ in range(4)]


def _shards(release: str, a: str, b: str, c: str) -> list[str]:
    """Shard east: the release namespace and a; shard west: b and c."""
    return [
        "--set", "allNamespaces=true",
        "--set", "operator.shards[0].name=east",
        "--set", f"operator.shards[0].namespaces={{{release},{a}}}",
        "--set", "operator.shards[1].name=west",
        "--set", f"operator.shards[1].namespaces={{{b},{c}}}",
    ]  # fmt: skip


def _apply(kubeconfig: Any, objects: list[dict[str, Any]], *, dry_run: bool) -> str:
    proc = subprocess.run(
        [
            "kubectl", f"--kubeconfig={kubeconfig}", "apply", "--server-side",
            "--field-manager=helm", *(["--dry-run=server"] if dry_run else []), "-f", "-",
        ],
        input=yaml.safe_dump_all(objects),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_one_operator_per_shard_with_rights_in_its_namespaces_only(
    helm: Helm, cluster: Any, spaces: list[str]
) -> None:
    release, a, b, c = spaces
    objects = helm.template(release, *_shards(release, a, b, c))
    deployments = {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] == "Deployment" and "operator" in o["metadata"]["name"]
    }
    assert set(deployments) == {"streamspace-operator-east", "streamspace-operator-west"}
    for name, namespaces in (("east", f"{release},{a}"), ("west", f"{b},{c}")):
        deployment = deployments[f"streamspace-operator-{name}"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == f"streamspace-operator-{name}"
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["OPERATOR_NAMESPACES"] == namespaces
        assert deployment["spec"]["selector"]["matchLabels"]["stream.space/operator-shard"] == name
    # the operator's rights: Roles in the shard's namespaces, nothing cluster-wide
    roles = {
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "Role"
    }
    assert {r for r in roles if "operator" in r[1]} == {
        (release, "streamspace-operator-east"),
        (a, "streamspace-operator-east"),
        (b, "streamspace-operator-west"),
        (c, "streamspace-operator-west"),
    }
    cluster_roles = [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"]
    assert cluster_roles == [f"{release}-streamspace-facade"]  # the facade serves every shard
    config = next(o for o in objects if o["metadata"]["name"] == "streamspace-config")
    assert config["data"]["ALL_NAMESPACES"] == "true"
    params = next(o for o in objects if o["metadata"]["name"] == "streamspace-session-admission")
    assert params["data"]["trustedUsers"].split(",") == [
        f"system:serviceaccount:{release}:streamspace-facade",
        f"system:serviceaccount:{release}:streamspace-operator-east",
        f"system:serviceaccount:{release}:streamspace-operator-west",
    ]

    # the API server accepts all of it; the RBAC objects for real, to ask can-i
    rest = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
    _apply(cluster.kubeconfig, rest, dry_run=True)
    rbac = [o for o in rest if o["kind"] in {"ServiceAccount", "Role", "RoleBinding"}]
    _apply(cluster.kubeconfig, rbac, dry_run=False)
    east = f"system:serviceaccount:{release}:streamspace-operator-east"
    for namespace, answer in ((release, "yes"), (a, "yes"), (b, "no"), (c, "no")):
        assert can_i(cluster.kubeconfig, east, "create", "deployments.apps", namespace) == answer
        assert (
            can_i(cluster.kubeconfig, east, "patch", "sessions.stream.space", namespace) == answer
        )
        assert (
            can_i(cluster.kubeconfig, east, "create", "kopfpeerings.kopf.dev", namespace) == answer
        )
    assert can_i(cluster.kubeconfig, east, "list", "clusterkopfpeerings.kopf.dev", a) == "no"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            ["--set", "operator.shards[1].namespaces={b,a}"],
            'namespace "a" is in shard "east" and again in shard "west"',
        ),
        (
            ["--set", "operator.shards[0].namespaces={streamspace,a,a}"],
            'namespace "a" is in shard "east" and again in shard "east"',
        ),
        (["--set", "operator.shards[1].name=east"], 'two shards are named "east"'),
        (
            ["--set", "operator.shards[0].namespaces={a}"],
            'no shard serves the release namespace "streamspace"',
        ),
        (["--set", "allNamespaces=false"], "operator.shards needs allNamespaces: true"),
        (["--set", "operator.shards[0].namespaces={team-*}"], "does not match pattern"),
    ],
)
def test_sets_that_cannot_work_are_refused_when_rendered(
    helm: Helm, values: list[str], message: str
) -> None:
    base = _shards("streamspace", "a", "b", "c")
    out = helm.run(
        "template", "streamspace", str(CHART), "-n", "streamspace", *base, *values,
        check=False,
    )  # fmt: skip
    assert message in out, out
