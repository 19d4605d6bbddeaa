"""The plugin routes under ``/api/v1/plugins`` (docs/PLUGINS.md §3): the catalog, installed
plugins, ratings and plugin repositories; the writes on installed plugins are in
``plugin_writes``.

Reading is for any authenticated user; installing, configuring and repositories need the
operator role, approving the admin role. Installed plugins are read from the mirror
(``installed_plugins``); the catalog from the operator's sync (``catalog_plugins``). Plugin
repositories are TemplateRepositories of ``type: plugin``, made by the template repository code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from aiohttp import web

from streamspace.naming import is_object_name
from streamspace_facade import paging, plugin_writes, repositories
from streamspace_facade.errors import ApiError, invalid, not_found
from streamspace_facade.plugin_views import (
    PLUGIN_TYPES,
    catalog_view,
    installed_view,
    public_view,
    store,
)
from streamspace_facade.responses import json_response
from streamspace_facade.state import (
    Fields,
    audit,
    json_body,
    principal,
    require,
    services,
)
from streamspace_facade.storage.plugins import CatalogFilter, InstalledPlugin

BASE = "/api/v1/plugins"
MAX_REVIEW = 4000


def _catalog_id(request: web.Request) -> int:
    raw = request.match_info["catalogId"]
    if not raw.isdigit() or len(raw) > 18:
        raise not_found("catalog plugin", raw)
    return int(raw)


async def list_catalog(request: web.Request) -> web.Response:
    svc, q = services(request), request.query
    plugin_type = q.get("type") or None
    if plugin_type is not None and plugin_type not in PLUGIN_TYPES:
        raise invalid({"query.type": f"must be one of {', '.join(PLUGIN_TYPES)}"})
    where = CatalogFilter(
        namespace=svc.scope,
        search=q.get("q") or None,
        category=q.get("category") or None,
        plugin_type=plugin_type,
        tag=q.get("tag") or None,
    )
    win = paging.window(
        request, "plugin-catalog", asdict(where), default=20, maximum=100, numbered=True
    )
    if win.page is None and win.after is None:
        win = replace(win, page=1)  # the seed's clients read "page" in every answer
    rows, total, more = await store(request).catalog_page(where, win.limit, win.offset, win.after)
    last = (rows[-1].display_name, rows[-1].name, rows[-1].id) if more and rows else None
    return json_response(
        paging.envelope(
            request, win, "plugins", [catalog_view(r) for r in rows], total=total, last=last
        )
    )


async def get_catalog_entry(request: web.Request) -> web.Response:
    catalog_id = _catalog_id(request)
    entry = await store(request).catalog_entry(catalog_id, services(request).scope)
    if entry is None:
        raise not_found("catalog plugin", str(catalog_id))
    return json_response(catalog_view(entry, detail=True))


async def rate(request: web.Request) -> web.Response:
    """One rating per user per catalog plugin: a second one replaces the first."""
    who = principal(request)
    catalog_id = _catalog_id(request)
    fields = Fields(await json_body(request), {"rating", "review"})
    rating = fields.get(
        "rating",
        int,
        required=True,
        check=lambda v: None if 1 <= v <= 5 else "must be an integer from 1 to 5",
    )
    review = fields.get(
        "review",
        str,
        check=lambda v: None if len(v) <= MAX_REVIEW else f"at most {MAX_REVIEW} characters",
    )
    fields.done()
    if await store(request).catalog_entry(catalog_id, services(request).scope) is None:
        raise not_found("catalog plugin", str(catalog_id))
    stored = await store(request).rate(catalog_id, who.user, int(rating), review)
    if stored is None:  # removed by a sync in between
        raise not_found("catalog plugin", str(catalog_id))
    audit(request, "rate", "plugin", str(catalog_id), {"rating": rating})
    return json_response(
        {
            "catalogId": stored.catalog_id,
            "user": stored.user_id,
            "rating": stored.rating,
            "review": stored.review,
            "avgRating": float(stored.avg_rating),
            "ratingCount": stored.rating_count,
        }
    )


async def list_installed(request: web.Request) -> web.Response:
    win = paging.window(request, "plugins", {"role": principal(request).role})
    rows = await store(request).installed(services(request).scope)
    return json_response(
        paging.in_memory(
            request,
            win,
            "plugins",
            rows,
            key=lambda r: (r.id, r.namespace),
            view=_view_for(request),
        )
    )


async def get_installed(request: web.Request) -> web.Response:
    svc, name = services(request), request.match_info["id"]
    row = await store(request).installed_one(svc.namespace, name) if is_object_name(name) else None
    if row is None:
        raise not_found("plugin", name)
    return json_response(_view_for(request)(row))


def _view_for(request: web.Request) -> Callable[[InstalledPlugin], dict[str, Any]]:
    if principal(request).at_least("operator"):
        return installed_view
    return lambda row: public_view(installed_view(row))


# --- plugin repositories ------------------------------------------------------------------------


async def list_repositories(request: web.Request) -> web.Response:
    view = (
        repositories.repository_view
        if principal(request).at_least("operator")
        else repositories.repository_summary
    )
    svc = services(request)
    win = paging.window(request, "plugin-repositories", {"role": principal(request).role})
    rows = await svc.db().repositories.list(svc.scope, "plugin")
    return json_response(
        paging.in_memory(
            request, win, "repositories", rows, key=repositories.repository_key, view=view
        )
    )


async def create_repository(request: web.Request) -> web.Response:
    require(request, "operator")
    body: dict[str, Any] = await json_body(request)
    if body.get("type", "plugin") != "plugin":
        raise invalid({"type": "must be plugin here (template repositories: /api/v1/repositories)"})
    return await repositories.create_repository_from(request, {**body, "type": "plugin"})


async def sync_repository(request: web.Request) -> web.Response:
    svc = services(request)
    require(request, "operator")
    name = request.match_info["id"]
    try:
        obj = await svc.kube.get("TemplateRepository", svc.namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            raise not_found("plugin repository", name) from None
        raise
    if (obj.get("spec") or {}).get("type") != "plugin":
        raise not_found("plugin repository", name)
    await repositories.request_sync(request, [name])
    audit(request, "sync", "repository", name)
    return json_response({"repositories": [name], "total": 1}, status=202)


def add_routes(router: web.UrlDispatcher) -> None:
    # fixed paths before /{id}: aiohttp matches in this order
    router.add_get(BASE + "/catalog", list_catalog)
    router.add_get(BASE + "/catalog/{catalogId}", get_catalog_entry)
    router.add_post(BASE + "/catalog/{catalogId}/rate", rate)
    router.add_post(BASE + "/install", plugin_writes.install)
    router.add_get(BASE + "/installed", list_installed)
    router.add_get(BASE + "/repositories", list_repositories)
    router.add_post(BASE + "/repositories", create_repository)
    router.add_post(BASE + "/repositories/{id}/sync", sync_repository)
    router.add_get(BASE + "/{id}", get_installed)
    router.add_delete(BASE + "/{id}", plugin_writes.uninstall)
    router.add_post(BASE + "/{id}/enable", plugin_writes.enable)
    router.add_post(BASE + "/{id}/disable", plugin_writes.disable)
    router.add_put(BASE + "/{id}/config", plugin_writes.update_config)
    router.add_post(BASE + "/{id}/approve", plugin_writes.approve)
