"""The Helm chart as rendered: lint, the API server's verdict on every scenario, and its rules.

Every ``helm/streamspace/ci/*-values.yaml`` scenario is linted (``--strict``), rendered and sent to
the real API server as a server-side dry run; the RBAC rules, the chart's copies of the CRDs and
of the admission policy, and the pods' security settings are checked on the rendered objects.
Installing for real is tests/e2e/test_chart_install.py.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from helm_testing import CHART, REPO, SCENARIOS, Helm, helm_binary
from streamspace_testing import new_namespace

pytestmark = pytest.mark.integration

RBAC_KINDS = {"Role", "ClusterRole"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


@pytest.fixture(scope="module")
def helm(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_binary(), cluster.kubeconfig, tmp_path_factory.mktemp("helm"))


@pytest.fixture
def target(api: client.ApiClient) -> Iterator[str]:
    """A namespace to render into, with the Secrets the external-database scenario names."""
    with new_namespace(api) as name:
        core = client.CoreV1Api(api)
        for secret in ("streamspace-database", "streamspace-auth"):
            core.create_namespaced_secret(name, {"metadata": {"name": secret}, "data": {}})
        yield name


def test_the_scenarios_are_the_ones_users_need() -> None:
    assert {p.name.removesuffix("-values.yaml") for p in SCENARIOS} == {
        "default",
        "all-namespaces",
        "external-database",
        "ingress-tls",
        "bundled-database",
    }


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name)
def test_lint_strict_is_clean(helm: Helm, values: Path) -> None:
    out = helm.run("lint", "--strict", str(CHART), "-f", str(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_a_misspelt_value_is_an_error(helm: Helm) -> None:
    out = helm.run("lint", "--strict", str(CHART), "--set", "facade.replica=3", check=False)
    assert "additional properties 'replica' not allowed" in out, out
    out = helm.run("lint", "--strict", str(CHART), "--set", "config.JWT_SECRET=x", check=False)
    assert "1 chart(s) failed" in out, out


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name)
def test_every_scenario_is_accepted_by_the_api_server(
    helm: Helm, cluster: Any, target: str, values: Path
) -> None:
    objects = helm.template(target, "-f", str(values))
    # The CRDs are installed already (the control plane applies crds/); the rest is dry-run
    # applied the way Helm applies it (server-side), in the target namespace.
    rest = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
    proc = subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={cluster.kubeconfig}",
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=helm",
            "-f",
            "-",
        ],
        input=yaml.safe_dump_all(rest),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    applied = proc.stdout.strip().splitlines()
    assert len(applied) == len(rest), proc.stdout
    assert all("(server dry run)" in line for line in applied), proc.stdout


def _rules(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", rule)
        for o in objects
        if o["kind"] in RBAC_KINDS
        for rule in o.get("rules") or []
    ]


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name)
def test_rbac_has_no_wildcards_and_the_scope_follows_all_namespaces(
    helm: Helm, values: Path
) -> None:
    objects = helm.template("streamspace", "-f", str(values))
    rules = _rules(objects)
    assert rules
    for owner, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in (rule.get(field) or []), (owner, rule)
            assert not any("*" in item for item in rule.get(field) or []), (owner, rule)
        # nothing that would let a ServiceAccount grant itself more
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), (owner, rule)
        assert not {"roles", "rolebindings", "clusterroles", "clusterrolebindings"} & set(
            rule["resources"]
        ), (owner, rule)
    cluster_wide = {o["kind"] for o in objects if o["kind"].startswith("ClusterRole")}
    if yaml.safe_load(values.read_text()).get("allNamespaces"):
        assert cluster_wide == {"ClusterRole", "ClusterRoleBinding"}
    else:
        assert cluster_wide == set(), "a namespaced install needs no cluster-wide rule"


def test_every_rule_says_why() -> None:
    """Each rule of the RBAC template has a comment just above it."""
    lines = (CHART / "templates" / "rbac.yaml").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(starts) >= 20
    for i in starts:
        assert lines[i - 1].strip().startswith("#"), f"rbac.yaml:{i + 1} says not why: {lines[i]}"


def test_chart_crds_are_the_top_level_crds() -> None:
    top = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    # the admission policy is a template in the chart (it names the release's ServiceAccounts)
    assert set(top) - set(chart) == {"session-admission.yaml"}
    assert set(chart) <= set(top)
    for name, text in chart.items():
        assert text == top[name], f"helm/streamspace/crds/{name} differs from crds/{name}"


def test_chart_admission_policy_is_the_shipped_one_bound_to_the_release(helm: Helm) -> None:
    shipped = next(yaml.safe_load_all((REPO / "crds" / "session-admission.yaml").read_text()))
    objects = helm.template("tenant-a", "--set", "sessions.ingressNamespace=ingress")
    by_kind = {o["kind"]: o for o in objects if "Admission" in o["kind"]}
    policy, binding = (
        by_kind["ValidatingAdmissionPolicy"],
        by_kind["ValidatingAdmissionPolicyBinding"],
    )
    assert policy["spec"] == shipped["spec"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["paramRef"]["namespace"] == "tenant-a"
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "tenant-a"}
    }
    params = next(
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == binding["spec"]["paramRef"]["name"]
    )
    assert params["data"]["trustedUsers"].split(",") == [
        "system:serviceaccount:tenant-a:streamspace-facade",
        "system:serviceaccount:tenant-a:streamspace-operator",
    ]
    everywhere = helm.template("tenant-a", "--set", "allNamespaces=true")
    binding = next(o for o in everywhere if o["kind"] == "ValidatingAdmissionPolicyBinding")
    assert "matchResources" not in binding["spec"]


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name)
def test_every_pod_meets_the_restricted_standard_and_has_probes(helm: Helm, values: Path) -> None:
    objects = helm.template("streamspace", "-f", str(values))
    workloads = [o for o in objects if o["kind"] in WORKLOADS]
    assert {o["kind"] for o in workloads} >= {"Deployment", "Job"}
    for o in workloads:
        pod = o["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, o["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            if o["kind"] == "Deployment":
                assert c["livenessProbe"] and c["readinessProbe"], c["name"]


def test_secrets_never_reach_the_config_map(helm: Helm) -> None:
    objects = helm.template(
        "streamspace", "--set", "auth.oidc.issuer=https://idp.example.com", "--set", "config.X=1"
    )
    config = next(o for o in objects if o["metadata"]["name"] == "streamspace-config")
    assert not {"DATABASE_URL", "JWT_SECRET", "WEBHOOK_SECRET", "SESSION_ACCESS_SECRET"} & set(
        config["data"]
    )
    assert config["data"]["OIDC_ISSUER"] == "https://idp.example.com"
    assert config["data"]["X"] == "1"
    for o in objects:
        if o["kind"] in WORKLOADS:
            for c in o["spec"]["template"]["spec"]["containers"]:
                for env in c.get("env") or []:
                    if re.search(r"SECRET|PASSWORD|DATABASE_URL", env["name"]):
                        assert "valueFrom" in env and "value" not in env, env
