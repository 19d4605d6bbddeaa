"""The OpenAPI document against the facade: the same routes, and live answers that match it.

The first test compares the router's (method, path) pairs with the document's. The second runs
Schemathesis against a live facade (operator, PostgreSQL and a real API server) as an admin:
the document's examples, a few generated requests per operation, then generated requests on a
session, template and repository that exist. Nothing may answer 5xx, and every answer's status
code, content type and body must be one the document describes. The run is bounded and
derandomized, so it takes the same requests every time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kubernetes import client
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from facade_testing import JWT_SECRET, WEBHOOK_SECRET, token
from gitfixtures import PUBLIC_FORMAT, make_repo
from plugin_testing import add_catalog_plugin
from streamspace.config import load_settings
from streamspace_dev.process import wait_until
from streamspace_facade.app import create_app
from streamspace_facade.openapi import document
from streamspace_testing import TEMPLATE, Objects

if TYPE_CHECKING:
    from stack_testing import Stack

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 8
EXAMPLES_PER_KNOWN_OBJECT = 5
SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.generate],  # no shrinking: every failure is collected and reported as found
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SESSION = "/api/v1/sessions/{id}"
CATALOG = "/api/v1/catalog/templates"
PLUGIN = "/api/v1/plugins"


def test_document_names_exactly_the_routes() -> None:
    app = create_app(load_settings({"JWT_SECRET": JWT_SECRET}))
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    doc = document(app)
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented routes the app does not serve"
    schemathesis.openapi.from_dict(doc).validate()  # against the OpenAPI 3.0 meta-schema


class Runner:
    """Sends generated cases to the facade as an admin; collects failures rather than stopping."""

    def __init__(self, base_url: str, http: requests.Session) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token('admin', 'admin')}"}
        self.http = http
        self.failures: list[str] = []
        self.statuses: Counter[tuple[str, int]] = Counter()

    def run(self, strategy: st.SearchStrategy[Any], examples: int) -> None:
        @settings(SETTINGS, max_examples=examples)
        @given(case=strategy)
        def send(case: schemathesis.Case[Any]) -> None:
            self.send(case)

        send()

    def send(
        self, case: schemathesis.Case[Any], headers: dict[str, str] | None = None, **kw: Any
    ) -> None:
        try:
            response = case.call_and_validate(
                base_url=self.base_url,
                session=self.http,
                headers={**self.headers, **(headers or {})},
                checks=CHECKS,
                **kw,
            )
            self.statuses[(case.operation.label, response.status_code)] += 1
        except FailureGroup as failure:
            self.failures.append(str(failure))


@pytest.fixture
def runner(stack: Stack) -> Iterator[Runner]:
    with requests.Session() as http:
        yield Runner(stack.url, http)


@pytest.fixture
def known(stack: Stack, api: client.ApiClient, tmp_path: Path) -> dict[str, Any]:
    """Objects the generated requests can reach: a Template, a session of it with an open
    connection, a suspended repository, and a synced one whose templates fill the catalog."""
    Objects(api, stack.namespace).create("templates", "firefox", TEMPLATE)
    admin = stack.client("admin", "admin")
    session = admin.post("/api/v1/sessions", {"template": "firefox", "tags": ["openapi"]})
    assert session.status == 201, session
    connection = admin.get(f"/api/v1/sessions/{session.body['id']}/connect")
    assert connection.status == 200, connection
    local = make_repo(tmp_path / "templates", PUBLIC_FORMAT).url
    for body in (
        {"name": "suspended", "url": "https://git.invalid/templates.git", "suspend": True},
        {"name": "local", "url": local},
    ):
        created = admin.post("/api/v1/repositories", body)
        assert created.status == 201, created

    def catalog() -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = admin.get(CATALOG + "?limit=100").body["templates"]
        return listed

    assert wait_until(lambda: bool(catalog()), 60), "the catalog was not filled"
    plugin_catalog_id = add_catalog_plugin(stack)
    plugin = admin.post(
        "/api/v1/plugins/install",
        {"pluginId": plugin_catalog_id, "name": "known", "config": {"url": "https://h.example"}},
    )
    assert plugin.status == 201, plugin
    return {
        "plugin": "known",
        "pluginCatalog": plugin_catalog_id,
        "session": session.body["id"],
        "connection": connection.body["connectionId"],
        "template": "firefox",
        "repository": "suspended",
        "catalog": next(entry["id"] for entry in catalog() if entry["name"] == "chromium"),
        "url": local,
    }


# Schemathesis' strategies draw from the `random` module, which Hypothesis deprecates.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
def test_live_answers_match_the_document(
    stack: Stack, known: dict[str, Any], runner: Runner
) -> None:
    config = schemathesis.Config()
    # Loaded without credentials: the document is public. Schemathesis leaves out the operation
    # that served it.
    schema = schemathesis.openapi.from_url(stack.url + "/api/v1/openapi.json", config=config)
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document is valid: every operation loads
        operation = result.ok()
        for example in operation.get_strategies_from_examples():
            runner.run(example, 1)
        runner.run(operation.as_strategy(), EXAMPLES_PER_OPERATION)

    sid, cid = known["session"], known["connection"]
    on_objects: list[tuple[str, str, dict[str, Any], dict[str, str] | None]] = [
        ("GET", SESSION, {"id": sid}, None),
        ("GET", SESSION + "/connections", {"id": sid}, None),
        ("POST", SESSION + "/heartbeat", {"id": sid}, {"connectionId": cid}),
        ("GET", SESSION + "/connect", {"id": sid}, None),
        ("DELETE", SESSION + "/disconnect", {"id": sid}, {"connectionId": cid}),
        ("PATCH", SESSION, {"id": sid}, None),
        ("GET", "/api/v1/templates/{id}", {"id": known["template"]}, None),
        ("POST", "/api/v1/catalog/templates/{id}/install", {"id": known["catalog"]}, None),
        ("POST", "/api/v1/repositories/{id}/sync", {"id": known["repository"]}, None),
        ("DELETE", "/api/v1/repositories/{id}", {"id": known["repository"]}, None),
        ("GET", SESSION + "/shares", {"id": sid}, None),
        ("POST", SESSION + "/shares", {"id": sid}, None),
        ("DELETE", SESSION + "/shares/{user}", {"id": sid, "user": "bob"}, None),
        ("POST", SESSION + "/transfer", {"id": sid}, None),
        ("DELETE", SESSION, {"id": sid}, None),
        ("GET", PLUGIN + "/catalog/{catalogId}", {"catalogId": known["pluginCatalog"]}, None),
        ("POST", PLUGIN + "/catalog/{catalogId}/rate", {"catalogId": known["pluginCatalog"]}, None),
        ("GET", PLUGIN + "/{id}", {"id": known["plugin"]}, None),
        ("POST", PLUGIN + "/{id}/disable", {"id": known["plugin"]}, None),
        ("POST", PLUGIN + "/{id}/enable", {"id": known["plugin"]}, None),
        ("PUT", PLUGIN + "/{id}/config", {"id": known["plugin"]}, None),
        ("POST", PLUGIN + "/{id}/approve", {"id": known["plugin"]}, None),
        ("POST", PLUGIN + "/repositories/{id}/sync", {"id": "plugins"}, None),
        ("DELETE", PLUGIN + "/{id}", {"id": known["plugin"]}, None),
    ]
    for method, path, path_parameters, query in on_objects:
        operation = schema[path][method]
        strategy = operation.as_strategy(path_parameters=path_parameters, query=query)
        runner.run(strategy, EXAMPLES_PER_KNOWN_OBJECT)

    # Signed deliveries, which generated ones never are: a push (202) and a tag (200, ignored).
    webhook = schema["/webhooks/repository/sync"]["POST"]
    for ref in ("refs/heads/main", "refs/tags/v1"):
        raw = json.dumps({"repository_url": known["url"], "ref": ref}).encode()
        delivery, stamp = f"msg_{ref[-4:]}", str(int(time.time()))
        signed = f"{delivery}.{stamp}.".encode() + raw
        signature = hmac.new(WEBHOOK_SECRET.encode(), signed, hashlib.sha256).digest()
        headers = {
            "webhook-id": delivery,
            "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(signature).decode(),
        }
        case = webhook.Case(body={}, media_type="application/json")
        runner.send(case, headers, data=raw)

    print(
        "\n".join(
            f"{n:3} {label} → {status}" for (label, status), n in sorted(runner.statuses.items())
        )
    )
    assert not runner.failures, "\n\n".join(runner.failures)
