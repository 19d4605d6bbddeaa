"""Terminals on the full profile: ``/api/v1/ws/exec/{namespace}/{pod}`` through the real API
server's ``pods/exec`` to kwok, which runs the command on this machine (``streamspace_dev.podexec``).

The session pods are the operator's (a Deployment's ReplicaSet's pods on kwok nodes); the pods
that are not ours carry the same labels, or even name the Session as their owner, and kwok
would run a shell in them just as well: only the facade's owner-chain check stands in the way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import psycopg
import pytest
from kubernetes import client

from facade_testing import Client, WebSocket, token
from streamspace.manifests import MANAGED_BY, SESSION_LABEL, USER_LABEL
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.e2e

UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {"TERMINAL_MAX_PER_USER": "2"}


@pytest.fixture
def running_session(full_cluster: Any, stack: Any, api: client.ApiClient) -> dict[str, Any]:
    """Alice's session, Running on a kwok node: its REST view (``podName``) and its uid."""
    assert full_cluster.plane is not None, "terminals are played by the local plane's kwok"
    Objects(api, stack.namespace).create("templates", "firefox", TEMPLATE)
    alice = stack.client("alice")
    sid = alice.post("/api/v1/sessions", {"template": "firefox"}).body["id"]
    view: dict[str, Any] = {}

    def running() -> bool:
        view.update(alice.get(f"/api/v1/sessions/{sid}").body)
        return view.get("phase") == "Running" and bool(view.get("podName"))

    assert wait_until(running, 90), view
    core = client.CoreV1Api(api)
    pod = core.read_namespaced_pod(view["podName"], stack.namespace)
    assert wait_until(
        lambda: (
            core.read_namespaced_pod(pod.metadata.name, stack.namespace).status.phase == "Running"
        ),
        60,
    )
    session = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, stack.namespace, "sessions", sid
    )
    return {**view, "uid": session["metadata"]["uid"]}


@pytest.fixture
def terminals() -> Iterator[Callable[..., WebSocket]]:
    opened: list[WebSocket] = []

    def open_(url: str, **kwargs: Any) -> WebSocket:
        ws = WebSocket(url, **kwargs)
        opened.append(ws)
        return ws.open()

    yield open_
    for ws in opened:
        ws.close()


def output(ws: WebSocket, wanted: str, kind: str = "stdout", timeout: float = 20) -> str:
    """The ``kind`` output received until it holds ``wanted``."""
    seen = ""

    def holds(data: Any) -> bool:
        nonlocal seen
        if isinstance(data, dict) and data.get("type") == kind:
            seen += data["data"]
        return wanted in seen

    ws.next(holds, timeout=timeout)
    return seen


def exit_of(ws: WebSocket) -> dict[str, Any]:
    said: dict[str, Any] = ws.next(lambda d: d.get("type") == "exit", timeout=20).data
    assert ws.closed.wait(10), "the terminal stayed open after the shell exited"
    assert ws.close_code == 1000
    return said


def exec_url(stack: Any, pod: str, query: str = "") -> str:
    return f"{stack.url}/api/v1/ws/exec/{stack.namespace}/{pod}{query}"


def test_a_shell_in_the_owners_session_pod(
    stack: Any, running_session: dict[str, Any], terminals: Callable[..., WebSocket]
) -> None:
    url = exec_url(stack, running_session["podName"])

    # without a TTY: stdin in, stdout and stderr apart, the exit code from the status channel
    plain = terminals(url + "?tty=false", token=token("alice"))
    plain.send({"type": "stdin", "data": "echo hello from $TERM\n"})
    assert "hello from xterm-256color\n" in output(plain, "hello from")
    plain.send({"type": "stdin", "data": "echo oops >&2\n"})
    assert output(plain, "oops", "stderr") == "oops\n"
    plain.send({"type": "stdin", "data": "exit 3\n"})
    assert exit_of(plain) == {"type": "exit", "code": 3}

    # with a TTY (the default): the resize reaches the pty, the exit code 0 is reported
    tty = terminals(url, token=token("alice"))
    tty.send({"type": "resize", "cols": 123, "rows": 45})
    tty.send({"type": "stdin", "data": "stty size\n"})
    assert "45 123" in output(tty, "45 123")
    tty.send({"type": "stdin", "data": "exit\n"})
    assert exit_of(tty) == {"type": "exit", "code": 0}

    # an operator may open one too, through the subprotocol a browser uses
    ops = terminals(url, protocols=("streamspace.v1", "bearer." + token("ops", "operator")))
    assert ops.protocol == "streamspace.v1"
    ops.send({"type": "stdin", "data": "echo $((6 * 7))\n"})
    assert "42" in output(ops, "42")
    ops.send({"type": "stdin", "data": "exit 0\n"})
    assert exit_of(ops)["code"] == 0

    # an open row as each terminal opened, a close row (written once the handler is done)
    where = f"{stack.namespace}/{running_session['podName']}"
    rows = terminal_audit(stack.database_url, 6)
    assert sorted((r[0], r[1], r[2]) for r in rows) == [
        ("alice", "close", where),
        ("alice", "close", where),
        ("alice", "open", where),
        ("alice", "open", where),
        ("ops", "close", where),
        ("ops", "open", where),
    ]
    assert rows[0][1] == "open" and rows[0][3]["status"] == 101
    closes = sorted(
        (r[3] for r in rows if r[1] == "close"), key=lambda c: (c["exitCode"], c["tty"])
    )
    assert [(c["exitCode"], c["tty"], c["reason"]) for c in closes] == [
        (0, True, "exited"),
        (0, True, "exited"),
        (3, False, "exited"),
    ]
    assert {c["session"] for c in closes} == {running_session["id"]}
    assert {c["command"] for c in closes} == {"/bin/sh"}


def terminal_audit(database_url: str, count: int) -> list[Any]:
    """The terminal audit rows, oldest first, once there are ``count`` of them."""
    rows: list[Any] = []

    def stored() -> bool:
        with psycopg.connect(database_url) as conn:
            rows[:] = conn.execute(
                "SELECT user_id, action, resource_id, changes FROM audit_log"
                " WHERE resource_type = 'terminal' ORDER BY id"
            ).fetchall()
        return len(rows) >= count

    assert wait_until(stored, 20), rows
    return rows


def foreign_pod(core: client.CoreV1Api, namespace: str, name: str, owner: Any = None) -> str:
    """A pod labelled like alice's session pods (and optionally naming an owner), on kwok."""
    labels = {**MANAGED_BY, SESSION_LABEL: "alice-firefox", USER_LABEL: "alice"}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    core.create_namespaced_pod(
        namespace,
        {"metadata": meta, "spec": {"containers": [{"name": "app", "image": "example/app"}]}},
    )
    assert wait_until(
        lambda: core.read_namespaced_pod(name, namespace).status.phase == "Running", 60
    )
    return name


def refused(url: str, **kwargs: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        WebSocket(url, **kwargs).open()
    return raised.value.status


def test_attack_terminals_only_for_owners_and_only_in_session_pods(
    stack: Any,
    api: client.ApiClient,
    running_session: dict[str, Any],
    terminals: Callable[..., WebSocket],
) -> None:
    core = client.CoreV1Api(api)
    pod = running_session["podName"]
    url = exec_url(stack, pod)

    assert refused(url) == 401, "no credential"
    assert refused(url, token=token("bob")) == 404, "another user's session pod"
    origin = {"Origin": "https://evil.example"}
    assert refused(url, token=token("alice"), headers=origin) == 403, "another site's page"

    # pods that are not a session's: the labels copied, or even the Session named as owner
    copied = foreign_pod(core, stack.namespace, "alice-firefox-copy")
    claimed = foreign_pod(
        core,
        stack.namespace,
        "alice-firefox-claim",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Session",
            "name": running_session["id"],
            "uid": running_session["uid"],
            "controller": True,
        },
    )
    for name in (copied, claimed):
        for who in (token("alice"), token("ops", "operator"), token("root", "admin")):
            assert refused(exec_url(stack, name), token=who) == 404, name
    assert refused(exec_url(stack, "no-such-pod"), token=token("alice")) == 404

    # bad requests are JSON errors before any upgrade
    alice = Client(stack.url, token("alice"))
    bad = alice.get(
        f"/api/v1/ws/exec/{stack.namespace}/{pod}?command=/usr/bin/python3", headers=UPGRADE
    )
    assert bad.status == 422 and "query.command" in bad.body["details"]["fields"], bad
    bad = alice.get(f"/api/v1/ws/exec/{stack.namespace}/{pod}?container=other", headers=UPGRADE)
    assert bad.status == 422 and "query.container" in bad.body["details"]["fields"], bad
    plain = alice.get(f"/api/v1/ws/exec/{stack.namespace}/{pod}")  # no upgrade: no shell
    assert plain.status == 426 and plain.body["code"] == "UPGRADE_REQUIRED", plain

    # two terminals per user (TERMINAL_MAX_PER_USER=2 here); a third is refused, naming it
    first = terminals(url, token=token("alice"))
    terminals(url, token=token("alice"))
    third = alice.get(f"/api/v1/ws/exec/{stack.namespace}/{pod}", headers=UPGRADE)
    assert third.status == 429, third
    assert third.body["details"] == {"limit": "TERMINAL_MAX_PER_USER", "max": 2}
    first.send({"type": "stdin", "data": "exit\n"})
    exit_of(first)

    def when_free() -> WebSocket:  # a slot is free once the server is done with a terminal
        opened: list[WebSocket] = []

        def reopen() -> bool:
            try:
                opened.append(terminals(url, token=token("alice")))
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 429
                return False
            return True

        assert wait_until(reopen, 20)
        return opened[0]

    again = when_free()
    again.send({"type": "stdin", "data": "echo back\n"})
    assert "back" in output(again, "back")
    again.send({"type": "stdin", "data": "exit\n"})
    exit_of(again)

    # a message the terminal does not understand closes it (1003), naming the problem
    odd = when_free()
    odd.send({"type": "signal", "name": "KILL"})
    assert odd.closed.wait(10)
    assert odd.close_code == 1003 and "stdin or resize" in (odd.close_reason or "")

    # a message over 64 KiB closes it (1009): pastes that large are split by clients
    big = when_free()
    big.send({"type": "stdin", "data": "x" * (65 * 1024)})
    assert big.closed.wait(10)
    assert big.close_code == 1009

    with psycopg.connect(stack.database_url) as conn:
        refusals = conn.execute(
            "SELECT user_id, changes->>'status' FROM audit_log"
            " WHERE resource_type = 'terminal' AND action = 'open'"
            " AND changes->>'status' <> '101' ORDER BY id"
        ).fetchall()
    assert ("bob", "404") in refusals and ("alice", "429") in refusals, refusals

    def ended() -> set[str]:  # close rows are written as each handler finishes
        return {r[3].get("reason") for r in terminal_audit(stack.database_url, 1)}

    assert wait_until(lambda: {"bad message", "message too big", "exited"} <= ended(), 20), ended()


def test_an_idle_terminal_is_closed(
    stack: Any,
    running_session: dict[str, Any],
    start_facade: Callable[..., Any],
) -> None:
    facade = start_facade(DATABASE_URL=stack.database_url, TERMINAL_IDLE_TIMEOUT="2s")
    url = f"{facade.url}/api/v1/ws/exec/{stack.namespace}/{running_session['podName']}"
    with WebSocket(url, token=token("alice")) as ws:
        ws.send({"type": "stdin", "data": "echo still here\n"})
        assert "still here" in output(ws, "still here")
        assert ws.closed.wait(30), "the idle terminal stayed open"
        assert ws.close_code == 4408 and ws.close_reason == "idle timeout"
