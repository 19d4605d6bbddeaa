"""The session access gate behind a real reverse proxy (issue 13, item 7).

Debian's nginx plays the ingress controller: ``auth_request`` asks the real facade's
``/auth/session`` about every request, exactly as ingress-nginx does for the ``auth-url``
annotation (X-Original-URL, the auth answer's Set-Cookie copied to the client, the user header
passed on), in front of a loopback HTTP server playing the session's desktop. Only the owner's
credential gets through; bob's gets 403, nobody's 401, an expired or forged one 401.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client

from facade_testing import JWT_SECRET, Client, FacadeThread, token
from streamspace.auth.access import PARAMETER, Grant, issue, session_host, signing_key
from streamspace_dev.process import free_port, wait_until
from streamspace_facade.state import SERVICES
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.integration

DOMAIN = "sessions.test"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Desktop(BaseHTTPRequestHandler):
    """The session: answers who the gate said the caller is."""

    def do_GET(self) -> None:
        body = f"desktop for {self.headers.get('X-StreamSpace-User')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def desktop() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Desktop)
    thread = threading.Thread(target=server.serve_forever, name="desktop", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name *.{domain};
        # what ingress-nginx generates for nginx.ingress.kubernetes.io/auth-url
        location = /_external-auth {{
            internal;
            proxy_pass {auth_url};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
        location / {{
            auth_request /_external-auth;
            auth_request_set $auth_cookie $upstream_http_set_cookie;
            add_header Set-Cookie $auth_cookie;
            auth_request_set $auth_user $upstream_http_x_streamspace_user;
            proxy_set_header X-StreamSpace-User $auth_user;
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}
}}
"""


@dataclass
class Answer:
    status: int
    body: str
    cookie: str | None


@dataclass
class Gate:
    """HTTP to nginx as a browser sends it to a session's host."""

    port: int

    def get(self, host: str, path: str = "/", *, cookie: str | None = None) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Host": host}
        if cookie:
            headers["Cookie"] = f"{PARAMETER}={cookie}"
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read().decode(errors="replace")
            return Answer(response.status, body, response.getheader("Set-Cookie"))
        finally:
            connection.close()


@pytest.fixture
def start_nginx(tmp_path: Path) -> Iterator[Callable[[str, int], Gate]]:
    """nginx on a loopback port with a prefix, config and pid of its own, in the foreground."""
    started: list[subprocess.Popen[bytes]] = []

    def start(auth_url: str, upstream: int) -> Gate:
        port = free_port()
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        config = prefix / "nginx.conf"
        config.write_text(
            CONFIG.format(
                prefix=prefix, port=port, domain=DOMAIN, auth_url=auth_url, upstream=upstream
            )
        )
        command = [NGINX, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
        # its own messages go to the error log (-e): nothing to read from its output
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        gate = Gate(port)

        def listening() -> bool:
            assert process.poll() is None, (prefix / "error.log").read_text()
            try:
                gate.get("probe." + DOMAIN)
            except OSError:
                return False
            return True

        assert wait_until(listening, 30), "nginx did not start"
        return gate

    yield start
    for process in started:
        process.terminate()
        process.wait(30)


@pytest.fixture
def gated_facade(
    api: client.ApiClient, namespace: str, database: str, start_facade: Callable[..., FacadeThread]
) -> FacadeThread:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    objects.create("sessions", "alice-firefox", {"user": "alice", "template": "firefox"})
    objects.create("sessions", "bob-firefox", {"user": "bob", "template": "firefox"})
    facade = start_facade(
        DATABASE_URL=database,
        INGRESS_DOMAIN=DOMAIN,
        SESSION_AUTH_URL="http://127.0.0.1:1/auth/session",  # the operator's concern, unused here
    )
    assert facade.app is not None
    assert wait_until(facade.app[SERVICES].mirror.ready.is_set, 60), "mirror not ready"
    return facade


def connect(facade: FacadeThread, user: str, session: str) -> str:
    answer = Client(facade.url, token(user)).get(f"/api/v1/sessions/{session}/connect")
    assert answer.status == 200, answer
    access: str = answer.body["accessToken"]
    expires = datetime.fromisoformat(answer.body["accessExpiresAt"])
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)
    return access


def test_only_the_owner_passes_the_gate(
    gated_facade: FacadeThread, desktop: int, start_nginx: Callable[[str, int], Gate]
) -> None:
    gate = start_nginx(f"{gated_facade.url}/auth/session", desktop)
    alice_host = session_host("alice-firefox", DOMAIN)
    bob_host = session_host("bob-firefox", DOMAIN)
    alice = connect(gated_facade, "alice", "alice-firefox")
    bob = connect(gated_facade, "bob", "bob-firefox")

    # anonymous: 401, however the session's URL was learnt
    assert gate.get(alice_host).status == 401
    assert gate.get(alice_host, "/vnc.html?autoconnect=1").status == 401

    # the owner, with the credential in the query once: in, and it comes back as a cookie
    first = gate.get(alice_host, f"/?{PARAMETER}={alice}")
    assert (first.status, first.body) == (200, "desktop for alice")
    cookie = first.cookie or ""
    assert cookie.startswith(f"{PARAMETER}={alice};"), cookie
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "samesite=lax" in cookie.lower()
    assert "secure" not in attributes  # plain http here; https answers set it
    assert "domain" not in attributes  # host-only: the session's host and nothing else
    # ... and with the cookie alone from then on
    later = gate.get(alice_host, "/websockify", cookie=alice)
    assert (later.status, later.body, later.cookie) == (200, "desktop for alice", None)

    # bob, with his own valid credential, on alice's session: 403, by query or by cookie
    assert gate.get(bob_host, cookie=bob).status == 200
    assert gate.get(alice_host, f"/?{PARAMETER}={bob}").status == 403
    assert gate.get(alice_host, cookie=bob).status == 403
    # nor does alice's credential open bob's session
    assert gate.get(bob_host, cookie=alice).status == 403
    # and bob cannot get a credential for alice's session: it does not exist for him
    stolen = Client(gated_facade.url, token("bob")).get("/api/v1/sessions/alice-firefox/connect")
    assert stolen.status == 404

    # an expired credential signed with the facade's real key, a forged and a cut one: 401
    key = signing_key(JWT_SECRET)
    now = datetime.now(UTC)
    namespace = gated_facade.settings.kubernetes.namespace
    grant = Grant(namespace, "alice-firefox", "alice", "alice", now + timedelta(minutes=5))
    assert gate.get(alice_host, cookie=issue(key, grant)).status == 200  # the key is the real one
    expired = issue(key, replace(grant, expires=now - timedelta(seconds=1)))
    assert gate.get(alice_host, cookie=expired).status == 401
    assert gate.get(alice_host, f"/?{PARAMETER}={expired}").status == 401
    forged = issue(signing_key("an attacker's own key of 32 chars!"), grant)
    assert gate.get(alice_host, cookie=forged).status == 401
    assert gate.get(alice_host, cookie=alice[:-3] + "abc").status == 401
    # an admin may open a connection to alice's session, but gets no credential for it
    admin = Client(gated_facade.url, token("root", "admin"))
    answer = admin.get("/api/v1/sessions/alice-firefox/connect")
    assert answer.status == 200 and answer.body["accessToken"] is None


def test_the_check_speaks_traefik_and_sets_secure_cookies_for_https(
    gated_facade: FacadeThread,
) -> None:
    """Traefik's ForwardAuth sends X-Forwarded-*; the facade answers the same way."""
    alice = connect(gated_facade, "alice", "alice-firefox")
    check = Client(gated_facade.url)  # no bearer token: the gate has a credential of its own
    host = session_host("alice-firefox", DOMAIN)
    traefik = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": host}
    answer = check.get(
        "/auth/session", headers={**traefik, "X-Forwarded-Uri": f"/?{PARAMETER}={alice}"}
    )
    assert answer.status == 200, answer
    assert answer.body["user"] == "alice" and answer.body["session"] == "alice-firefox"
    assert answer.headers["X-StreamSpace-User"] == "alice"
    assert "Secure" in answer.headers["Set-Cookie"]
    by_cookie = check.get("/auth/session", headers={**traefik, "Cookie": f"{PARAMETER}={alice}"})
    assert by_cookie.status == 200 and "Set-Cookie" not in by_cookie.headers
    # failures keep the API's error shape and never echo the credential
    for headers, status in (
        (traefik, 401),
        ({**traefik, "X-Forwarded-Host": "evil.example", "Cookie": f"{PARAMETER}={alice}"}, 403),
        ({"X-Original-URL": "http://[broken", "Cookie": f"{PARAMETER}={alice}"}, 403),
        ({**traefik, "Cookie": f"{PARAMETER}=v1.%%%.x"}, 401),
    ):
        refused = check.get("/auth/session", headers=headers)
        assert refused.status == status, (headers, refused)
        assert set(refused.body) == {"error", "code", "details"}
        assert alice not in str(refused.body)
