"""The delivery worker's pure rules: which URLs it may post to, and its settings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from streamspace.config import ConfigError, load_settings
from streamspace_facade.deliveries import in_cluster_url, url_problem
from streamspace_facade.storage.deliveries import Due

pytestmark = pytest.mark.unit


def due(url: str, name: str = "rec", namespace: str = "team") -> Due:
    return Due(
        id=uuid.uuid4(),
        plugin_uid=uuid.uuid4(),
        plugin_namespace=namespace,
        plugin_name=name,
        url=url,
        attempts=1,
        event_id=uuid.uuid4(),
        type="session.created",
        subject="sessions/s1",
        namespace=namespace,
        data={},
        time=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    ("url", "allow_private", "problem"),
    [
        ("https://hooks.example.com/x", False, None),
        ("https://127.0.0.1:8443/events", True, None),
        ("https://127.0.0.1:8443/events", False, "loopback, private or link-local"),
        ("https://10.1.2.3/events", False, "loopback, private or link-local"),
        ("https://169.254.169.254/latest", True, "cloud metadata"),
        ("https://[::ffff:127.0.0.1]/x", False, "loopback, private or link-local"),
        ("http://hooks.example.com/x", True, "must be https"),
        ("ftp://hooks.example.com/x", True, "must be https"),
        ("https:///nohost", True, "must be https"),
        # the plugin's own Service, as the operator sets it: http inside the cluster
        ("http://plugin-rec.team.svc:8080/events", False, None),
        ("http://plugin-rec.team.svc.cluster.local:8080/events", False, None),
        # ... but not another plugin's, another namespace's, or another path
        ("http://plugin-other.team.svc:8080/events", False, "must be https"),
        ("http://plugin-rec.elsewhere.svc:8080/events", False, "must be https"),
        ("http://plugin-rec.team.svc:8080/admin", False, "must be https"),
        ("http://plugin-rec.team.svc.evil.com:8080/events", False, "must be https"),
    ],
)
def test_url_problem(url: str, allow_private: bool, problem: str | None) -> None:
    found = url_problem(due(url), allow_private)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_in_cluster_url_escapes_names() -> None:
    assert not in_cluster_url(due("http://plugin-rXc.team.svc:80/events", name="r.c"))
    assert in_cluster_url(due("http://plugin-r.c.team.svc:80/events", name="r.c"))


def test_event_settings() -> None:
    settings = load_settings(
        {"EVENT_RETRY_BASE": "100ms", "EVENT_RETRY_BUDGET": "3", "EVENT_CA_BUNDLE": "/ca.pem"}
    ).events
    assert settings.retry_base == timedelta(milliseconds=100)
    assert settings.retry_budget == 3
    assert str(settings.ca_bundle) == "/ca.pem"
    assert settings.lease > settings.delivery_timeout
    with pytest.raises(ConfigError) as err:
        load_settings({"EVENT_DELIVERY_TIMEOUT": "30s", "EVENT_DELIVERY_LEASE": "10s",
                       "EVENT_RETRY_BUDGET": "0"})  # fmt: skip
    assert any("EVENT_DELIVERY_LEASE" in p for p in err.value.problems)
    assert any("EVENT_RETRY_BUDGET" in p for p in err.value.problems)
