"""Template repositories: written as TemplateRepository CRs, listed from the mirror.

Credentials go to a Secret made for the repository, owned by it and never returned; the facade
only ever creates these (never reads, changes or deletes one): the garbage collector deletes it
with the repository (decision 90). Sync requests set the ``stream.space/sync-requested``
annotation, which the operator acts on.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from streamspace.catalog.credentials import (
    REPOSITORY_LABEL,
    credential_secret,
    credential_secret_prefix,
)
from streamspace.catalog.git import RepositoryError, normalize_url
from streamspace.catalog.netguard import refusal
from streamspace.db.mirror import REPOSITORIES
from streamspace.naming import is_dns_label, is_object_name, label_value
from streamspace.sync_requests import SYNC_REQUESTED, stamp
from streamspace_facade import paging
from streamspace_facade.errors import ApiError, conflict, not_found
from streamspace_facade.responses import json_response
from streamspace_facade.state import (
    Fields,
    Services,
    audit,
    duration_problem,
    iso,
    json_body,
    principal,
    require,
    services,
)
from streamspace_facade.storage.repositories import RepositoryRow

log = logging.getLogger(__name__)

AUTH_TYPES = ("none", "token", "basic", "ssh")
# Request fields carrying credentials → the Secret keys the operator reads.
CREDENTIAL_FIELDS = {
    "token": "token",
    "username": "username",
    "password": "password",
    "sshPrivateKey": "ssh-privatekey",
    "knownHosts": "known_hosts",
}


REPOSITORY_FIELDS = {
    "name", "url", "branch", "type", "authType", "authSecret", "syncInterval",
    "autoInstall", "suspend", *CREDENTIAL_FIELDS,
}  # fmt: skip
# Creates of a repository's credential Secret: a name the API server generates is taken only by
# a 1 in 27^5 chance, and servers since Kubernetes 1.32 try another one themselves.
SECRET_CREATE_ATTEMPTS = 3
NEEDED_KEYS = {
    "token": {"token"},
    "basic": {"username", "password"},
    "ssh": {"ssh-privatekey", "known_hosts"},
}


async def request_sync(request: web.Request, names: list[str]) -> None:
    svc = services(request)
    # now, to the microsecond: the operator reacts to a change of the value, and two requests
    # within one second must both be seen
    value = stamp(datetime.now(UTC))
    for name in names:
        await svc.kube.patch(
            "TemplateRepository",
            svc.namespace,
            name,
            {"metadata": {"annotations": {SYNC_REQUESTED: value}}},
        )


async def sync_all(request: web.Request) -> web.Response:
    svc = services(request)
    require(request, "operator")
    items, _ = await svc.kube.list("TemplateRepository", svc.namespace)
    names = sorted(
        str(i["metadata"]["name"]) for i in items if not (i.get("spec") or {}).get("suspend")
    )
    await request_sync(request, names)
    audit(request, "sync", "repository", "*", {"repositories": names})
    return json_response({"repositories": names, "total": len(names)}, status=202)


# --- repositories -------------------------------------------------------------------------------


def repository_view(row: RepositoryRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "namespace": row.namespace,
        "url": row.url,
        "branch": row.branch,
        "type": row.type,
        "authType": row.auth_type,
        "authSecret": row.auth_secret,
        "syncInterval": row.sync_interval,
        "autoInstall": row.auto_install,
        "suspend": row.suspend,
        "status": row.status,
        "message": row.message,
        "lastSync": iso(row.last_sync),
        "lastSyncCommit": row.last_sync_commit,
        "templateCount": row.template_count,
        "pluginCount": row.plugin_count,
        "createdAt": iso(row.created_at),
    }


def repository_summary(row: RepositoryRow) -> dict[str, Any]:
    """What a plain user may see of a repository: URL, branch and sync messages are for operators
    (a message is ours, never remote bytes, but it still says how the sync went)."""
    return {"id": row.id, "name": row.name, "status": row.status}


async def list_repositories(request: web.Request) -> web.Response:
    svc, who = services(request), principal(request)
    win = paging.window(request, "repositories", {"role": who.role})
    view = repository_view if who.at_least("operator") else repository_summary
    rows = await svc.db().repositories.list(svc.scope)
    return json_response(
        paging.in_memory(request, win, "repositories", rows, key=repository_key, view=view)
    )


def repository_key(row: RepositoryRow) -> paging.Key:
    return (row.name, row.namespace)


def _name_from_url(url: str) -> str:
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git").lower()
    name = re.sub(r"[^a-z0-9-]+", "-", tail).strip("-")[:55].strip("-")
    return name or "repository"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def _credentials(fields: Fields, auth_type: str, existing_secret: str | None) -> dict[str, str]:
    """The credentials sent with the request, as the Secret keys the operator reads."""
    credentials = {
        key: value
        for field, key in CREDENTIAL_FIELDS.items()
        if (value := fields.get(field, str)) is not None
    }
    if auth_type == "none" and (credentials or existing_secret):
        fields.fail("authType", "credentials were given; set authType to token, basic or ssh")
    elif auth_type != "none" and not credentials and not existing_secret:
        fields.fail("authType", f"{auth_type} auth needs credentials or authSecret")
    elif credentials and existing_secret:
        fields.fail("authSecret", "give either credentials or authSecret, not both")
    missing = NEEDED_KEYS.get(auth_type, set()) - set(credentials)
    if credentials and missing:
        fields.fail("authType", f"{auth_type} auth needs {', '.join(sorted(missing))}")
    return credentials


def _address_problem(url: str, allow_private: bool) -> str | None:
    """Why a URL whose host is an IP address is refused; host names are judged at sync time."""
    try:
        address = ipaddress.ip_address((urlsplit(url).hostname or "").split("%", 1)[0])
    except ValueError:
        return None
    why = refusal(address, allow_private)
    return None if why is None else f"the host is {why}; such addresses are refused"


def _repository_request(
    body: dict[str, Any], allow_local: bool, allow_private: bool
) -> tuple[str, dict[str, Any], str, dict[str, str]]:
    """Validate a create request: the repository name, its spec, the auth type and any
    credentials. With credentials the spec has no ``auth`` yet: it names the Secret once that
    exists."""
    fields = Fields(body, REPOSITORY_FIELDS)
    url = fields.get("url", str, required=True)
    if url is not None:
        try:
            problem = _address_problem(normalize_url(url, allow_local), allow_private)
        except RepositoryError as exc:
            problem = str(exc)
        if problem:
            fields.fail("url", problem)
    name = fields.get(
        "name",
        str,
        check=lambda n: (
            None if is_dns_label(n) and len(n) <= 58 else "must be a DNS label of 1-58 characters"
        ),
    )
    spec: dict[str, Any] = {}
    for key, kind, check in (
        ("branch", str, None),
        ("type", str, _one_of("template", "plugin")),
        ("syncInterval", str, duration_problem),
        ("autoInstall", bool, None),
        ("suspend", bool, None),
    ):
        value = fields.get(key, kind, check=check)
        if value is not None:
            spec[key] = value
    auth_type = fields.get("authType", str, check=_one_of(*AUTH_TYPES)) or "none"
    existing_secret = fields.get(
        "authSecret", str, check=lambda n: None if is_object_name(n) else "must be a Secret name"
    )
    credentials = _credentials(fields, auth_type, existing_secret)
    fields.done()
    name = name or _name_from_url(str(url))
    spec["url"] = str(url).strip()
    if existing_secret:
        spec["auth"] = {"type": auth_type, "secretRef": {"name": existing_secret}}
    return name, spec, auth_type, credentials


async def create_repository(request: web.Request) -> web.Response:
    return await create_repository_from(request, await json_body(request))


async def create_repository_from(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Create a repository from a request body (the plugin routes' one has its type set)."""
    svc = services(request)
    require(request, "operator")
    name, spec, auth_type, credentials = _repository_request(
        body,
        svc.settings.sync.allow_local_repos,
        svc.settings.network.allow_private_networks,
    )
    obj = await svc.kube.create(
        "TemplateRepository", svc.namespace, {"metadata": {"name": name}, "spec": spec}
    )
    if credentials:
        obj = await _attach_credentials(svc, obj, auth_type, credentials)
        spec["auth"] = obj["spec"]["auth"]
    await svc.mirror.observed(REPOSITORIES, obj)
    audit(
        request,
        "create",
        "repository",
        name,
        {**spec, "credentials": sorted(credentials) or None},  # which keys, never the values
    )
    row = RepositoryRow.of(REPOSITORIES.row(obj))
    return json_response(repository_view(row), status=201)


async def _attach_credentials(
    svc: Services, repository: dict[str, Any], auth_type: str, credentials: Mapping[str, str]
) -> dict[str, Any]:
    """Create the credential Secret of the repository just made, named by the API server and
    owned by the repository from the start, then point the repository at it (the spec change
    makes the operator sync it again; a first sync may have run without credentials). Until
    then the repository names no Secret, so none made by someone else can ever serve it. Should
    either step fail, the repository goes again (this one only: uid precondition)."""
    meta = repository["metadata"]
    body = credential_secret(
        credential_secret_prefix(meta["name"]),
        repository["spec"]["url"],
        credentials,
        {REPOSITORY_LABEL: label_value(meta["name"])},
        repository,
        generate_name=True,
    )
    try:
        for attempt in range(1, SECRET_CREATE_ATTEMPTS + 1):
            try:
                secret = await svc.kube.create_secret(svc.namespace, body)
                break
            except ApiError as exc:  # 409: the generated name exists (servers before 1.32)
                if exc.status != 409 or attempt == SECRET_CREATE_ATTEMPTS:
                    raise
        auth = {"type": auth_type, "secretRef": {"name": secret["metadata"]["name"]}}
        patch = {"metadata": {"uid": meta["uid"]}, "spec": {"auth": auth}}  # uid: a precondition
        try:
            patched: dict[str, Any] = await svc.kube.patch(
                "TemplateRepository", svc.namespace, meta["name"], patch
            )
        except ApiError as exc:
            if exc.status == 422:  # "metadata.uid is immutable": deleted and made again since
                raise conflict(f"repository {meta['name']!r} was replaced meanwhile") from None
            raise
    except ApiError:
        await _take_back(svc, meta)
        raise
    return patched


async def _take_back(svc: Services, meta: Mapping[str, Any]) -> None:
    """Delete the repository just made (its Secret, if made, goes with it by garbage
    collection); one made since under the same name is left alone."""
    try:
        await svc.kube.delete("TemplateRepository", svc.namespace, meta["name"], uid=meta["uid"])
    except ApiError as exc:
        if exc.status not in (404, 409):  # gone, or another one by now
            log.warning(
                "repository %s/%s kept without its credentials: %s",
                svc.namespace,
                meta["name"],
                exc,
            )


async def _repository(request: web.Request) -> dict[str, Any]:
    svc = services(request)
    name = request.match_info["id"]
    try:
        obj: dict[str, Any] = await svc.kube.get("TemplateRepository", svc.namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            raise not_found("repository", name) from None
        raise
    return obj


async def sync_repository(request: web.Request) -> web.Response:
    require(request, "operator")
    obj = await _repository(request)
    name = obj["metadata"]["name"]
    await request_sync(request, [name])
    audit(request, "sync", "repository", name)
    return json_response({"repositories": [name], "total": 1}, status=202)


async def delete_repository(request: web.Request) -> web.Response:
    svc = services(request)
    require(request, "operator")
    obj = await _repository(request)
    name = obj["metadata"]["name"]
    await svc.kube.delete("TemplateRepository", svc.namespace, name)
    await svc.mirror.forget(REPOSITORIES, obj["metadata"]["uid"])
    # its credential Secret, if the API made one, goes with it: the garbage collector follows
    # the Secret's owner reference
    audit(request, "delete", "repository", name)
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/api/v1/catalog/sync", sync_all)
    for base in ("/api/v1/repositories", "/api/v1/catalog/repositories"):
        router.add_get(base, list_repositories)
        router.add_post(base, create_repository)
        router.add_post(base + "/{id}/sync", sync_repository)
        router.add_delete(base + "/{id}", delete_repository)
