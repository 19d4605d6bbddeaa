"""Templates and the catalog.

Templates are read from and written to the API server (they are few and small). The catalog is
read from PostgreSQL, where the operator's repository sync stores it; the repositories it comes
from are ``repositories``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from streamspace.manifests import MANAGED_BY
from streamspace.naming import is_object_name
from streamspace.templates import infer_app_type
from streamspace_facade import paging
from streamspace_facade.errors import invalid, not_found
from streamspace_facade.responses import json_response
from streamspace_facade.state import (
    audit,
    iso,
    json_body,
    require,
    services,
)
from streamspace_facade.storage.catalog import CatalogEntry, CatalogFilter

log = logging.getLogger(__name__)

# --- templates ----------------------------------------------------------------------------------


def template_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta, spec, status = obj["metadata"], dict(obj.get("spec") or {}), obj.get("status") or {}
    return {
        **spec,
        "id": meta["name"],
        "name": meta["name"],
        "namespace": meta["namespace"],
        "appType": status.get("appType") or spec.get("appType") or infer_app_type(spec),
        "valid": status.get("valid"),
        "message": status.get("message"),
        "createdAt": meta.get("creationTimestamp"),
    }


async def list_templates(request: web.Request) -> web.Response:
    svc = services(request)
    category = request.query.get("category") or None
    win = paging.window(request, "templates", {"category": category})
    items, _ = await svc.kube.list("Template", svc.scope)
    chosen = [t for t in items if not category or (t.get("spec") or {}).get("category") == category]
    return json_response(
        paging.in_memory(request, win, "templates", chosen, key=_template_key, view=template_view)
    )


def _template_key(obj: Mapping[str, Any]) -> paging.Key:
    meta = obj["metadata"]
    return (str(meta["name"]), str(meta.get("namespace", "")))


async def get_template(request: web.Request) -> web.Response:
    svc = services(request)
    name = request.match_info["id"]
    obj = await svc.kube.get("Template", svc.namespace, name)
    return json_response(template_view(obj))


async def create_template(request: web.Request) -> web.Response:
    svc = services(request)
    require(request, "operator")
    body = await json_body(request)
    name = body.pop("name", None)
    spec = body.pop("spec", None)
    if spec is None:  # flat form: every other field is a spec field
        spec, body = body, {}
    errors: dict[str, str] = {}
    if not isinstance(name, str) or not is_object_name(name):
        errors["name"] = "required: a Kubernetes object name (lower-case, digits, '-', '.')"
    if not isinstance(spec, dict):
        errors["spec"] = "must be an object"
    errors.update({key: "unknown field" for key in body})
    if errors:
        raise invalid(errors)
    obj = await svc.kube.create(
        "Template", svc.namespace, {"metadata": {"name": name}, "spec": spec}
    )
    audit(request, "create", "template", name, {"spec": spec})
    return json_response(template_view(obj), status=201)


async def delete_template(request: web.Request) -> web.Response:
    svc = services(request)
    require(request, "operator")
    name = request.match_info["id"]
    await svc.kube.delete("Template", svc.namespace, name)
    svc.templates_seen.pop(name, None)
    audit(request, "delete", "template", name)
    return web.Response(status=204)


# --- catalog ------------------------------------------------------------------------------------


def catalog_view(row: CatalogEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "displayName": row.display_name,
        "description": row.description,
        "category": row.category,
        "appType": row.app_type,
        "icon": row.icon,
        "baseImage": row.base_image,
        "tags": list(row.tags or []),
        "installCount": row.install_count,
        "sourcePath": row.source_path,
        "repository": {"id": row.repository_id, "url": row.repository_url},
        "updatedAt": iso(row.updated_at),
    }


async def list_catalog(request: web.Request) -> web.Response:
    svc = services(request)
    q = request.query
    app_type = q.get("appType") or None
    if app_type is not None and app_type not in ("desktop", "webapp"):
        raise invalid({"query.appType": "must be desktop or webapp"})
    where = CatalogFilter(
        namespace=svc.scope,
        category=q.get("category") or None,
        tag=q.get("tag") or None,
        app_type=app_type,
        search=q.get("search") or None,
    )
    win = paging.window(
        request, "catalog", dataclasses.asdict(where), default=20, maximum=100, numbered=True
    )
    if win.page is None and win.after is None:
        win = dataclasses.replace(win, page=1)  # the seed's clients read "page" in every answer
    found = await svc.db().catalog.page(where, limit=win.limit, offset=win.offset, after=win.after)
    last = found.entries[-1] if found.more and found.entries else None
    return json_response(
        paging.envelope(
            request,
            win,
            "templates",
            [catalog_view(e) for e in found.entries],
            total=found.total,
            last=None if last is None else (last.display_name, last.name, last.id),
        )
    )


async def install_catalog_template(request: web.Request) -> web.Response:
    svc = services(request)
    require(request, "operator")
    raw_id = request.match_info["id"]
    if not raw_id.isdigit() or len(raw_id) > 18:
        raise not_found("catalog template", raw_id)
    source = await svc.db().catalog.install_source(int(raw_id), svc.scope)
    if source is None:
        raise not_found("catalog template", raw_id)
    manifest = source.manifest or {}
    obj = await svc.kube.create(
        "Template",
        svc.namespace,
        {
            "metadata": {
                "name": source.name,
                "labels": {**MANAGED_BY, "stream.space/catalog-repository": source.repository},
            },
            "spec": manifest.get("spec") or {},
        },
    )
    await svc.db().catalog.count_install(int(raw_id))
    audit(request, "install", "template", source.name, {"catalogId": int(raw_id)})
    return json_response(template_view(obj), status=201)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/templates", list_templates)
    router.add_post("/api/v1/templates", create_template)
    router.add_get("/api/v1/templates/{id}", get_template)
    router.add_delete("/api/v1/templates/{id}", delete_template)
    router.add_get("/api/v1/catalog/templates", list_catalog)
    router.add_post("/api/v1/catalog/templates/{id}/install", install_catalog_template)
