"""``streamspace dev run``: the whole product on one machine, in the foreground.

Full-profile control plane (or the cluster ``KUBECONFIG`` names, when asked), PostgreSQL (or
``DATABASE_URL``), migrations, an admin API key, the example Template and a local example
template repository, then ``streamspace operator`` and ``streamspace facade`` as child processes,
with webhook and JWT secrets made up for the run unless configured. What it prints at the end is
a curl walkthrough of the REST API that works as pasted (``tests/e2e/test_walkthrough.py`` runs
the same steps). Ctrl-C stops what this command started, newest first, and nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shlex
import shutil
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import yaml
from dulwich import porcelain
from dulwich.refs import Ref

from streamspace import API_GROUP, API_VERSION
from streamspace.auth.apikeys import create_api_key
from streamspace.config import Settings, load_settings
from streamspace.db.migrate import migrate
from streamspace_dev import binaries, process
from streamspace_dev.cluster import ControlPlane
from streamspace_dev.objects import ClusterError, ensure_namespace
from streamspace_dev.postgres import LocalPostgres
from streamspace_dev.settings import EXAMPLES, DevSettings

EXAMPLE_TEMPLATE = EXAMPLES / "template-firefox.yaml"
EXAMPLE_REPOSITORY = "example-templates"


def _facade_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


Cleanups = list[Callable[[], object]]


def _kubeconfig(settings: Settings, dev: DevSettings, cleanups: Cleanups) -> Path:
    """The existing cluster's kubeconfig when asked for, else a local full-profile cluster."""
    if dev.use_existing_cluster:
        if not settings.kubernetes.kubeconfig:
            raise ClusterError("STREAMSPACE_USE_EXISTING_CLUSTER needs KUBECONFIG")
        print(f"using the existing cluster of {settings.kubernetes.kubeconfig}")
        return Path(settings.kubernetes.kubeconfig)
    plane = ControlPlane(dev.state_dir, dev.cache_dir)
    binaries.build(dev.cache_dir, "full")  # a step of its own, with progress; cached after
    print("starting the local control plane (full profile)...")
    already = plane.status()["running"]
    plane.up("full")
    if not already:
        cleanups.append(plane.down)
    return plane.kubeconfig


def _database(settings: Settings, dev: DevSettings, cleanups: Cleanups) -> str:
    """``DATABASE_URL``/``DB_*`` when configured, else a throw-away local server."""
    if settings.database.configured:
        return settings.database.url
    pg = LocalPostgres(dev.state_dir)
    already = pg.url() is not None
    url = pg.up()
    if not already:
        cleanups.append(pg.down)
    return url


def _apply_example_template(kubeconfig: Path, namespace: str) -> str:
    """Create the example Template in ``namespace`` unless one of its name is there; its name."""
    from kubernetes import client, config  # noqa: PLC0415 - heavy import, dev paths only
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    manifest = yaml.safe_load(EXAMPLE_TEMPLATE.read_text())
    manifest["metadata"]["namespace"] = namespace
    name = str(manifest["metadata"]["name"])
    ensure_namespace(kubeconfig, namespace)
    api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    with api_client as api:
        try:
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, "templates", manifest
            )
        except ApiException as exc:
            if exc.status != 409:  # already there: a previous run's, or the user's own
                raise
    return name


def _example_repository(state_dir: Path) -> Path:
    """A local Git repository (branch ``main``) holding the example Template, made once."""
    path = state_dir / EXAMPLE_REPOSITORY
    if (path / ".git").is_dir():
        return path
    shutil.rmtree(path, ignore_errors=True)  # what an interrupted first attempt left
    target = path / "browsers" / EXAMPLE_TEMPLATE.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(EXAMPLE_TEMPLATE.read_text())
    with porcelain.init(str(path)) as repo:
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
    author = b"StreamSpace dev <dev@streamspace.invalid>"
    porcelain.add(str(path), paths=[str(target)])
    porcelain.commit(str(path), message=b"example template", author=author, committer=author)
    return path


def child_env(settings: Settings, inherited: Mapping[str, str]) -> dict[str, str]:
    """The environment of the operator and the facade: ``inherited``, plus what the run adds.

    Webhook and JWT secrets are made up for this run unless configured, and ``ALLOW_LOCAL_REPOS``
    and ``ALLOW_PRIVATE_NETWORKS`` default to true, so that the example repository on this
    machine (and Git servers on a private network) can be added.
    """
    env = {**inherited}
    env.setdefault("ALLOW_LOCAL_REPOS", "true")
    env.setdefault("ALLOW_PRIVATE_NETWORKS", "true")  # Git servers on this machine or its LAN
    if not settings.auth.webhook_secret:
        env["WEBHOOK_SECRET"] = secrets.token_hex(16)
    if not settings.auth.jwt_secret:
        env["JWT_SECRET"] = secrets.token_urlsafe(32)
    return env


def made_up_secrets(settings: Settings, env: Mapping[str, str]) -> dict[str, str]:
    """The secrets ``child_env`` made up (not configured), by variable name."""
    configured = {
        "WEBHOOK_SECRET": settings.auth.webhook_secret,
        "JWT_SECRET": settings.auth.jwt_secret,
    }
    return {name: env[name] for name, value in configured.items() if not value}


def standalone_operator_argv(liveness_port: int, metrics_port: int = 0) -> list[str]:
    """``streamspace operator`` for one local replica, its liveness and metrics on loopback
    (``metrics_port`` 0: no metrics endpoint)."""
    return [
        sys.executable,
        "-m",
        "streamspace.cli",
        "operator",
        "--standalone",
        f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
        "--metrics-host=127.0.0.1",
        f"--metrics-port={metrics_port}",
    ]


def _start_processes(
    env: dict[str, str], logs: Path, metrics_port: int, cleanups: Cleanups
) -> list[process.Started]:
    facade = [sys.executable, "-m", "streamspace.cli", "facade", "--host", "127.0.0.1"]
    children = [
        process.start(
            "operator",
            standalone_operator_argv(process.free_port(), metrics_port),
            logs / "operator.log",
            env=env,
        ),
        process.start("facade", facade, logs / "facade.log", env=env),
    ]
    for child in children:
        cleanups.append(functools.partial(process.stop, child))
    return children


def run_stack(settings: Settings, dev: DevSettings, port: int | None = None) -> int:
    cleanups: Cleanups = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        kubeconfig = _kubeconfig(settings, dev, cleanups)
        db_url = _database(settings, dev, cleanups)
        applied = migrate(db_url)
        print(f"database ready ({len(applied)} migration(s) applied)")
        with psycopg.connect(db_url, autocommit=True) as conn:
            admin_key = create_api_key(conn, "admin", "admin", name="make run")
        namespace = settings.kubernetes.namespace
        facade_port = port or settings.http.port
        env = {
            **child_env(settings, os.environ),
            "KUBECONFIG": str(kubeconfig),
            "DATABASE_URL": db_url,
            "NAMESPACE": namespace,
            "PORT": str(facade_port),
        }
        local_repos = load_settings(env).sync.allow_local_repos  # as the children will see it
        template = _apply_example_template(kubeconfig, namespace)
        repository = _example_repository(dev.state_dir) if local_repos else None
        logs = dev.state_dir / "logs"
        operator_metrics = process.free_port()
        children = _start_processes(env, logs, operator_metrics, cleanups)
        facade = children[1]
        process.wait_until(
            lambda: _facade_healthy(facade_port) or not process.is_running(facade), 60
        )
        if not _facade_healthy(facade_port):
            raise ClusterError("the facade did not start:\n" + process.log_tail(facade))
        about = Welcome(
            api=f"http://127.0.0.1:{facade_port}",
            operator_metrics=f"http://127.0.0.1:{operator_metrics}/metrics",
            key=admin_key,
            template=template,
            repository=repository,
            made_up=made_up_secrets(settings, env),
            database=db_url,
            kubeconfig=kubeconfig,
            logs=logs,
            namespace=namespace,
        )
        print(welcome(about), flush=True)
        while not stop.wait(1.0):
            for child in children:
                if not process.is_running(child):
                    print(f"{child.name} exited; last lines of {child.log}:")
                    print(process.log_tail(child))
                    return 1
        print("\nstopping...")
        return 0
    finally:
        for cleanup in reversed(cleanups):
            with contextlib.suppress(Exception):
                cleanup()


# -- what to try -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Welcome:
    """What the start-up message needs to know about the run."""

    api: str
    operator_metrics: str
    """The operator's Prometheus endpoint (the facade's is ``{api}/metrics``)."""
    key: str
    """The admin API key minted for this run."""
    template: str
    """The Template applied at start-up."""
    repository: Path | None
    """The example Git repository, when local repositories are allowed."""
    made_up: dict[str, str]
    """Secrets made up for this run (``WEBHOOK_SECRET``, ``JWT_SECRET``), to export."""
    database: str
    """The database's URL, for ``streamspace token`` (which never guesses one)."""
    kubeconfig: Path
    logs: Path
    namespace: str = "streamspace"
    """Where the sessions go (the quota of the many-users steps is applied there)."""


def _command() -> str:
    """How to call ``streamspace`` from the directory this run was started in."""
    script = Path(sys.executable).with_name("streamspace")
    if not script.exists():
        return "streamspace"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def welcome(w: Welcome) -> str:
    """The start-up message: where things are, then a curl walkthrough to paste into a shell."""
    q = shlex.quote
    auth = '-H "Authorization: Bearer $TOKEN"'
    js = '-H "Content-Type: application/json"'
    cli = q(_command())
    if w.repository is not None:
        repo_name, repo_url = EXAMPLE_REPOSITORY, f"file://{w.repository}"
        repo_note = "a local Git repository holding the example Template, to add below"
    else:
        repo_name, repo_url = "your-templates", "https://github.com/your-org/your-templates"
        repo_note = "local repositories are off (ALLOW_LOCAL_REPOS); name one of yours"
    session = {
        "user": "alice",
        "template": w.template,
        "resources": {"memory": "2Gi", "cpu": "1000m"},
    }
    repository = {"name": repo_name, "url": repo_url, "branch": "main", "authType": "none"}
    push = {"repository_url": repo_url, "branch": "main", "ref": "refs/heads/main"}
    secrets_lines = "\n".join(
        f"  export {name}={q(w.made_up[name])}   # made up for this run"
        if name in w.made_up
        else f"  # {name}: as configured in your environment"
        for name in ("WEBHOOK_SECRET", "JWT_SECRET")
    )
    return f"""
StreamSpace is running.

  Console:     {w.api}/   (open it in a browser and sign in with the admin API key below)
  API:         {w.api}   (health: /health; OpenAPI: /api/v1/openapi.json)
  Metrics:     {w.api}/metrics (facade), {w.operator_metrics} (operator)
  Template:    {w.template} ({EXAMPLE_TEMPLATE.name}), applied at start-up
  Repository:  {repo_url}
               ({repo_note})
  Kubeconfig:  {w.kubeconfig}
  Logs:        {w.logs}/operator.log, {w.logs}/facade.log

Paste into a shell to try the REST API; every /api/v1 call needs the Authorization header.

  export API={w.api}
  export TOKEN={w.key}   # an admin API key, not shown again
{secrets_lines}
  export DATABASE_URL={q(w.database)}   # for `streamspace token`
  field() {{ python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }}
  phase() {{ for _ in $(seq 90); do  # wait up to 90 s for the session's phase to be $1
    [ "$(curl -s {auth} $API/api/v1/sessions/$SID | field phase)" = "$1" ] && break; sleep 1
  done; curl -s {auth} $API/api/v1/sessions/$SID | field phase; }}

  # no sessions yet; create one for alice (an admin may name another user), see it run
  curl -s {auth} $API/api/v1/sessions; echo
  SID=$(curl -s {auth} {js} \\
    -d {q(json.dumps(session))} \\
    $API/api/v1/sessions | field id); echo $SID
  curl -s {auth} $API/api/v1/sessions; echo
  phase Running; curl -s {auth} $API/api/v1/sessions/$SID; echo   # with a url now

  # hibernate it (its pod goes away); connecting wakes it again
  curl -s -X PATCH {auth} {js} -d '{{"state": "hibernated"}}' $API/api/v1/sessions/$SID; echo
  phase Hibernated
  CONN=$(curl -s {auth} $API/api/v1/sessions/$SID/connect | field connectionId); echo $CONN
  phase Running; curl -s {auth} $API/api/v1/sessions/$SID/connect; echo   # "ready": true
  curl -s -X POST {auth} "$API/api/v1/sessions/$SID/heartbeat?connectionId=$CONN"; echo

  # templates, then the catalog: empty until a repository is synced (ids are names)
  curl -s {auth} $API/api/v1/templates; echo
  curl -s {auth} "$API/api/v1/catalog/templates?category=Web%20Browsers"; echo
  curl -s {auth} {js} \\
    -d {q(json.dumps(repository))} \\
    $API/api/v1/catalog/repositories; echo
  curl -s {auth} $API/api/v1/catalog/repositories; echo   # "status": "pending"
  curl -s -X POST {auth} $API/api/v1/catalog/repositories/{repo_name}/sync; echo
  curl -s -X POST {auth} $API/api/v1/catalog/sync; echo
  for _ in $(seq 60); do  # wait up to 60 s for the sync to fill the catalog
    [ "$(curl -s {auth} "$API/api/v1/catalog/templates?category=Web%20Browsers" | field total)" \\
      != 0 ] && break; sleep 1
  done
  curl -s {auth} "$API/api/v1/catalog/templates?category=Web%20Browsers"; echo
  curl -s {auth} $API/api/v1/catalog/repositories; echo   # "status": "synced"

  # a push notification as a Git host sends it, signed with WEBHOOK_SECRET
  # (Standard Webhooks): 202
  BODY={q(json.dumps(push))}
  ID=msg_$(date +%s%N); TS=$(date +%s)
  SIG=$(printf '%s' "$ID.$TS.$BODY" | openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" -binary | base64)
  curl -s {js} -H "webhook-id: $ID" -H "webhook-timestamp: $TS" -H "webhook-signature: v1,$SIG" \\
    -d "$BODY" $API/webhooks/repository/sync; echo
  curl -s {js} -H "webhook-id: $ID" -H "webhook-timestamp: $TS" -H "webhook-signature: v1,$SIG" \\
    -d "$BODY" $API/webhooks/repository/sync; echo   # the same delivery again: "duplicate"
  curl -s -o /dev/null -w '%{{http_code}}\\n' {js} -H "webhook-id: $ID" \\
    -H "webhook-timestamp: $TS" -H "webhook-signature: v1,$(printf %043d 0)=" -d "$BODY" \\
    $API/webhooks/repository/sync   # a wrong signature: 401

  # other callers: bob's API key gets 404 for alice's session; a JWT for alice sees it
  BOB=$({cli} token create --user bob)
  curl -s -H "Authorization: Bearer $BOB" $API/api/v1/sessions/$SID; echo
  ALICE=$({cli} token jwt --user alice)
  curl -s -H "Authorization: Bearer $ALICE" $API/api/v1/sessions/$SID; echo

  # many users: a quota of two running sessions for alice holds over REST and kubectl
  export KUBECONFIG={q(str(w.kubeconfig))}
  printf '%s\\n' 'apiVersion: stream.space/v1alpha1' 'kind: SessionQuota' \\
    'metadata: {{name: alice, namespace: {w.namespace}}}' \\
    'spec: {{users: [alice], limits: {{runningSessions: 2}}}}' | kubectl apply -f -
  A2=$(curl -s -H "Authorization: Bearer $ALICE" {js} -d '{{"template": "{w.template}"}}' \\
    $API/api/v1/sessions | field id); echo $A2   # her second running session
  curl -s -H "Authorization: Bearer $ALICE" {js} -d '{{"template": "{w.template}"}}' \\
    $API/api/v1/sessions; echo   # a third: 403 QUOTA_EXCEEDED, with used and allowed
  curl -s -H "Authorization: Bearer $ALICE" $API/api/v1/me; echo   # her quota and its use

  # sharing: bob sees and connects to the session alice shares with him, not after she revokes
  curl -s -H "Authorization: Bearer $ALICE" {js} -d '{{"user": "bob", "access": "control"}}' \\
    $API/api/v1/sessions/$SID/shares; echo
  curl -s -H "Authorization: Bearer $BOB" $API/api/v1/sessions; echo   # "access": "control"
  curl -s -H "Authorization: Bearer $BOB" $API/api/v1/sessions/$SID/connect; echo
  curl -s -o /dev/null -w '%{{http_code}}\\n' -X DELETE -H "Authorization: Bearer $ALICE" \\
    $API/api/v1/sessions/$SID/shares/bob   # 204
  curl -s -H "Authorization: Bearer $BOB" $API/api/v1/sessions/$SID/connect; echo   # 404

  # a session of bob's scheduled to start in two minutes and to stop two minutes later
  START=$(date -u -d '+2 min' '+%M %H'); STOP=$(date -u -d '+4 min' '+%M %H')
  SCHEDULE=$(printf '{{"start": "%s * * *", "stop": "%s * * *", "timeZone": "UTC"}}' \\
    "$START" "$STOP")
  PLANNED=$(curl -s -H "Authorization: Bearer $BOB" {js} -d "$(printf \\
    '{{"template": "%s", "state": "hibernated", "schedule": %s}}' {w.template} "$SCHEDULE")" \\
    $API/api/v1/sessions | field id); echo $PLANNED
  kubectl get session $PLANNED -n {w.namespace} -o wide   # Next Start, Next Stop; then watch it

  # a terminal: the console's Terminal button on a running session (WebSocket
  # /api/v1/ws/exec/{w.namespace}/<podName>); the usage report of all this, with a price
  curl -s {auth} "$API/api/v1/analytics/usage?groupBy=user&cpuHourPrice=0.04"; echo

  # disconnect, then delete the session: 204
  curl -s -X DELETE {auth} "$API/api/v1/sessions/$SID/disconnect?connectionId=$CONN"; echo
  curl -s -o /dev/null -w '%{{http_code}}\\n' -X DELETE {auth} $API/api/v1/sessions/$SID

Live updates: in a second shell, watch the sessions stream while you run the steps above
(`cluster` and `logs <namespace>/<pod>` are the other streams):
  STREAMSPACE_TOKEN={w.key} {cli} watch sessions --summary --url {w.api}

The same objects with kubectl:
  export KUBECONFIG={q(str(w.kubeconfig))}
  kubectl get sessions,templates,connections,templaterepositories

Press Ctrl-C to stop everything this command started.
"""
