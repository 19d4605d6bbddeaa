"""Installing and changing plugins: each route writes the Plugin resource (and its Secret), and
the mirror row follows (read-your-writes through ``Mirror.observed``).

Install creates the Plugin first, then its Secret ``plugin-<name>`` owned by it (so the Secret
can never outlive or precede its owner), holding the signing secret and the secret config
properties; the signing secret is answered that once. Should the Secret fail, the Plugin goes
again. The operator may make the Secret of a new Plugin itself (it does for kubectl-applied
ones): then the facade takes that one over, after checking that the Plugin owns it. Config is
validated against the catalog manifest's ``configSchema`` on every write (422, field paths).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from streamspace import idempotency
from streamspace.db.mirror import INSTALLED_BY, PLUGINS, SECRET_KEYS
from streamspace.naming import is_dns_label
from streamspace.plugins import fields as plugin_config
from streamspace.plugins import secret as plugin_secret
from streamspace.plugins.policy import SECRET_ANNOTATION
from streamspace.plugins.workload import PluginRef
from streamspace.sync_requests import stamp
from streamspace_facade.errors import ApiError, conflict, invalid, not_found
from streamspace_facade.idempotency import IDEMPOTENCY, NOT_STORED
from streamspace_facade.plugin_views import (
    catalog_entry_of,
    fresh_view,
    high_risk,
    plugin,
    store,
)
from streamspace_facade.responses import json_response
from streamspace_facade.state import Fields, Services, audit, json_body, require, services
from streamspace_facade.storage.plugins import CatalogPlugin

log = logging.getLogger(__name__)

MAX_NAME = 56
"""Plugin names fit ``plugin-<name>`` into a DNS label (its Service and Deployment)."""
RESERVED = frozenset({"catalog", "install", "installed", "repositories"})
"""Names the routes under /api/v1/plugins/ use themselves."""


def _name_problem(name: str) -> str | None:
    if not is_dns_label(name) or len(name) > MAX_NAME:
        return f"must be a DNS label of 1-{MAX_NAME} characters"
    if name in RESERVED:
        return f"{name!r} is reserved"
    return None


def _schema(entry: CatalogPlugin) -> Any:
    schema = (entry.manifest or {}).get("configSchema")
    problem = plugin_config.schema_problem(schema) if schema is not None else None
    if problem:
        raise conflict(f"catalog plugin {entry.name!r}: {problem}")
    return schema


def _checked(schema: Any, config: Mapping[str, Any]) -> None:
    problems = plugin_config.nul_paths(config) or plugin_config.problems(schema, config)
    if problems:
        raise invalid(problems)


CONFIG_WRITTEN = "stream.space/config-written"
"""Stamped on every config change: a change of the Secret alone must still change the Plugin,
or the operator would not re-validate before its drift timer (decision 117)."""


def _annotations(secret: Mapping[str, Any]) -> dict[str, str | None]:
    return {
        SECRET_KEYS: ",".join(plugin_config.names(secret)) or None,
        CONFIG_WRITTEN: stamp(datetime.now(UTC)),
    }


async def install(request: web.Request) -> web.Response:
    svc, who = services(request), require(request, "operator")
    fields = Fields(await json_body(request), {"pluginId", "config", "name"})
    catalog_id = fields.get(
        "pluginId",
        int,
        required=True,
        check=lambda v: None if 1 <= v < 2**63 else "must be a catalog plugin id",
    )
    config = fields.get("config", dict) or {}
    name = fields.get("name", str, check=_name_problem)
    fields.done()
    entry = await store(request).catalog_entry(int(catalog_id), svc.namespace)
    if entry is None:
        raise invalid({"pluginId": f"no catalog plugin {catalog_id} in {svc.namespace}"})
    if name is None:
        problem = _name_problem(entry.name)
        if problem:
            raise invalid({"name": f"required: the catalog name {entry.name!r} {problem}"})
        name = entry.name
    schema = _schema(entry)
    _checked(schema, config)
    public, secret = plugin_config.split(schema, config)
    request[NOT_STORED] = True  # the answer holds the signing secret
    obj, created = await _create_plugin(
        request, name, entry=entry, public=public, secret=secret, user=who.user
    )
    try:
        signing = await _attach_secret(svc, obj, secret)
    except ApiError:
        if created:
            await _take_back(svc, obj)
        raise
    await svc.mirror.observed(PLUGINS, obj)
    if created:
        await store(request).count_install(entry.id)
    audit(
        request,
        "install",
        "plugin",
        name,
        {"catalogId": entry.id, "config": public, "secretConfig": plugin_config.names(secret)},
    )
    return json_response({**fresh_view(obj, entry), "signingSecret": signing}, status=201)


async def _create_plugin(
    request: web.Request,
    name: str,
    *,
    entry: CatalogPlugin,
    public: dict[str, Any],
    secret: dict[str, Any],
    user: str,
) -> tuple[dict[str, Any], bool]:
    """The Plugin, and whether this request made it (False: a retry of the request that did)."""
    svc = services(request)
    key = request.get(IDEMPOTENCY)
    # the facade makes the Secret (to hand out its signing secret): the operator waits for it
    annotations: dict[str, str] = {INSTALLED_BY: user, SECRET_ANNOTATION: "provided"}
    if secret:
        annotations[SECRET_KEYS] = ",".join(plugin_config.names(secret))
    if key is not None:
        annotations.update(idempotency.object_annotations(key))
    body = {
        "metadata": {
            "name": name,
            "labels": {**plugin_secret.MANAGED_BY, plugin_secret.PLUGIN_LABEL: name},
            "annotations": annotations,
        },
        "spec": {
            # no version: the Plugin follows its catalog entry, and an upgrade that asks for a
            # new high-risk permission waits for approval again (a pinned version would fail
            # with VersionUnavailable on every upgrade, and no route changes it)
            "catalogPlugin": {"repository": entry.repository_id, "name": entry.name},
            "enabled": True,
            "config": public,
        },
    }
    try:
        return await svc.kube.create("Plugin", svc.namespace, body), True
    except ApiError as exc:
        if exc.status != 409:
            raise
    existing: dict[str, Any] = await svc.kube.get("Plugin", svc.namespace, name)
    outcome = (
        idempotency.Outcome.PROCEED if key is None else idempotency.match_object(existing, key)
    )
    if outcome is idempotency.Outcome.REPLAY:
        return existing, False
    if outcome is idempotency.Outcome.MISMATCH:
        raise invalid({f"header.{idempotency.HEADER}": idempotency.REUSED})
    raise conflict(f"plugin {name!r} is installed already; choose another name")


async def _owned_secret(svc: Services, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Plugin's Secret if it exists; 409 if a Secret of that name belongs to another."""
    meta = obj["metadata"]
    name = plugin_secret.secret_name(meta["name"])
    try:
        secret: dict[str, Any] = await svc.kube.get_secret(svc.namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    if not plugin_secret.owned_by(secret, str(meta["uid"])):
        raise conflict(f"Secret {name!r} exists and does not belong to plugin {meta['name']!r}")
    return secret


def _ref(obj: Mapping[str, Any]) -> PluginRef:
    meta = obj["metadata"]
    return PluginRef(str(meta["name"]), str(meta["namespace"]), str(meta["uid"]))


async def _attach_secret(svc: Services, obj: Mapping[str, Any], secret: dict[str, Any]) -> str:
    """Create (or take over) the Plugin's Secret with ``secret`` as its config; the signing
    secret it holds."""
    signing = plugin_secret.new_signing_secret()
    try:
        await svc.kube.create_secret(
            svc.namespace, plugin_secret.plugin_secret(_ref(obj), signing, secret)
        )
    except ApiError as exc:
        if exc.status != 409:
            raise
    else:
        return signing
    existing = await _owned_secret(svc, obj)
    if existing is None:  # deleted in between: the garbage collector at work, or a person
        raise conflict(f"plugin {obj['metadata']['name']!r}: its Secret came and went; retry")
    current = plugin_secret.signing_secret(existing)
    await _write_secret(svc, existing, secret, None if current else signing)
    return current or signing


async def _write_secret(
    svc: Services, existing: Mapping[str, Any], secret: dict[str, Any], signing: str | None
) -> None:
    meta = existing["metadata"]
    patch = {"metadata": {"uid": meta["uid"]}, "data": plugin_secret.data(signing, secret)}
    await svc.kube.patch_secret(svc.namespace, meta["name"], patch)


async def _take_back(svc: Services, obj: Mapping[str, Any]) -> None:
    meta = obj["metadata"]
    try:
        await svc.kube.delete("Plugin", svc.namespace, meta["name"], uid=meta["uid"])
    except ApiError as exc:
        if exc.status not in (404, 409):
            log.warning("plugin %s kept without its Secret: %s", meta["name"], exc)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``old`` into ``new`` (removed keys become null)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or before != value:
            patch[key] = value
    return patch


async def update_config(request: web.Request) -> web.Response:
    """Replace the configuration. Secret properties left out keep their stored value (answers
    never show them, so a client cannot send them back)."""
    svc = services(request)
    require(request, "operator")
    fields = Fields(await json_body(request), {"config"})
    config = fields.get("config", dict, required=True)
    fields.done()
    obj = await plugin(request)
    entry = await catalog_entry_of(request, obj)
    schema = _schema(entry)
    public, given = plugin_config.split(schema, config)
    existing = await _owned_secret(svc, obj)
    stored = plugin_secret.secret_config(existing) if existing is not None else {}
    if isinstance(stored, str):  # unreadable: what this request gives replaces it
        stored = {}
    secret = plugin_config.merge(stored, given)
    _checked(schema, plugin_config.merge(public, secret))
    if existing is None:
        await _attach_secret(svc, obj, secret)
    else:
        await _write_secret(svc, existing, secret, None)
    meta, spec = obj["metadata"], obj.get("spec") or {}
    patch = {
        "metadata": {"uid": meta["uid"], "annotations": _annotations(secret)},
        "spec": {"config": merge_patch(spec.get("config") or {}, public)},
    }
    obj = await _patch(svc, meta["name"], patch)
    await svc.mirror.observed(PLUGINS, obj)
    audit(
        request,
        "configure",
        "plugin",
        meta["name"],
        {"config": public, "secretConfig": plugin_config.names(given)},
    )
    return json_response(fresh_view(obj, entry))


async def _patch(svc: Services, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    try:
        obj: dict[str, Any] = await svc.kube.patch("Plugin", svc.namespace, name, patch)
    except ApiError as exc:
        if exc.status == 404:
            raise not_found("plugin", name) from None
        if exc.status == 422 and "uid" in exc.message + str(exc.details):
            raise conflict(f"plugin {name!r} was replaced meanwhile") from None
        raise
    return obj


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    svc = services(request)
    require(request, "operator")
    obj = await plugin(request)
    meta = obj["metadata"]
    patch = {"metadata": {"uid": meta["uid"]}, "spec": {"enabled": enabled}}
    obj = await _patch(svc, meta["name"], patch)
    await svc.mirror.observed(PLUGINS, obj)
    audit(request, "enable" if enabled else "disable", "plugin", meta["name"])
    entry = await store(request).catalog_by_name(
        svc.namespace,
        str((obj["spec"].get("catalogPlugin") or {}).get("repository", "")),
        str((obj["spec"].get("catalogPlugin") or {}).get("name", "")),
    )
    return json_response(fresh_view(obj, entry))


async def enable(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


async def disable(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


async def approve(request: web.Request) -> web.Response:
    """Approve every high-risk permission the catalog manifest asks for now (an upgrade that
    adds one needs this again)."""
    svc = services(request)
    require(request, "admin")
    obj = await plugin(request)
    entry = await catalog_entry_of(request, obj)
    approved = high_risk(entry.manifest or {})
    meta = obj["metadata"]
    patch = {"metadata": {"uid": meta["uid"]}, "spec": {"approvedPermissions": approved}}
    obj = await _patch(svc, meta["name"], patch)
    await svc.mirror.observed(PLUGINS, obj)
    audit(request, "approve", "plugin", meta["name"], {"approvedPermissions": approved})
    return json_response(fresh_view(obj, entry))


async def uninstall(request: web.Request) -> web.Response:
    svc = services(request)
    require(request, "operator")
    obj = await plugin(request)
    meta = obj["metadata"]
    try:
        await svc.kube.delete("Plugin", svc.namespace, meta["name"], uid=meta["uid"])
    except ApiError as exc:
        if exc.status == 404:
            raise not_found("plugin", meta["name"]) from None
        raise
    # its Secret, Deployment, Service and NetworkPolicy go with it (owner references)
    await svc.mirror.forget(PLUGINS, str(meta["uid"]))
    audit(request, "uninstall", "plugin", meta["name"])
    return web.Response(status=204)
