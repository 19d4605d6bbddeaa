"""The plugin routes in the OpenAPI document: their operations and component schemas
(docs/PLUGINS.md §3). ``openapi`` adds both to the document.
"""

from __future__ import annotations

from streamspace.naming import DNS_LABEL
from streamspace_facade.openapi_ops import KUBE, Op, paged, path_param, query_param
from streamspace_facade.openapi_schemas import (
    Schema,
    _array,
    _bool,
    _enum,
    _list,
    _nullable,
    _request,
    _response,
    _time,
    integer,
    string,
)
from streamspace_facade.plugin_views import OPERATOR_ONLY, PLUGIN_TYPES, RISKS
from streamspace_facade.plugin_writes import MAX_NAME
from streamspace_facade.plugins import BASE, MAX_REVIEW

PLUGIN = path_param("The installed plugin's id (its Plugin's name).")
REPOSITORY = path_param("The plugin repository's name.")
CATALOG_ID = {
    **path_param("The catalog entry's id.", integer(minimum=1, format="int64")),
    "name": "catalogId",
}
TYPE = _enum("The plugin's type.", *PLUGIN_TYPES)
PLUGIN_PHASE = _enum(
    "What the operator observed (Pending until it has).",
    "Pending",
    "PendingApproval",
    "Ready",
    "Disabled",
    "Failed",
)
JSON_OBJECT: Schema = {"type": "object", "additionalProperties": True}
MAY_INSTALL = "(operator)"

PLUGIN_OPERATIONS: tuple[Op, ...] = (
    Op("get", BASE + "/catalog", "listPluginCatalog", "Plugins found in plugin repositories, "
       "a page at a time", {200: "CatalogPluginList"}, (422,),
       (query_param("q", "In the name, display name or description."),
        query_param("category", "Only of this category."),
        query_param("type", "Only of this type.", TYPE),
        query_param("tag", "Only with this tag."),
        *paged(20, 100, numbered=True))),
    Op("get", BASE + "/catalog/{catalogId}", "getPluginCatalogEntry", "One catalog plugin, "
       "with its configSchema", {200: "CatalogPluginDetail"}, (404,), (CATALOG_ID,)),
    Op("post", BASE + "/catalog/{catalogId}/rate", "ratePlugin", "Rate a catalog plugin "
       "(one rating per user: a second replaces the first)", {200: "PluginRatingResult"},
       (404,), (CATALOG_ID,), body="PluginRating"),
    Op("post", BASE + "/install", "installPlugin", "Install a catalog plugin as a Plugin "
       f"{MAY_INSTALL}; the answer holds its signing secret, this once",
       {201: "InstalledPluginWithSecret"}, (403, 409, *KUBE), body="PluginInstall"),
    Op("get", BASE + "/installed", "listInstalledPlugins", "Installed plugins",
       {200: "InstalledPluginList"}, (422,), paged()),
    Op("get", BASE + "/repositories", "listPluginRepositories", "Plugin repositories",
       {200: "RepositoryList"}, (422,), paged()),
    Op("post", BASE + "/repositories", "createPluginRepository", "Add a plugin repository "
       f"{MAY_INSTALL}", {201: "Repository"}, (403, 409, *KUBE), body="RepositoryCreate"),
    Op("post", BASE + "/repositories/{id}/sync", "syncPluginRepository", "Sync a plugin "
       f"repository now {MAY_INSTALL}", {202: "SyncResult"}, (403, 404, *KUBE), (REPOSITORY,)),
    Op("get", BASE + "/{id}", "getInstalledPlugin", "One installed plugin",
       {200: "InstalledPlugin"}, (404,), (PLUGIN,)),
    Op("delete", BASE + "/{id}", "uninstallPlugin", f"Uninstall a plugin {MAY_INSTALL}: its "
       "Secret and runtime go with it", {204: None}, (403, 404, 409, *KUBE), (PLUGIN,)),
    Op("post", BASE + "/{id}/enable", "enablePlugin", f"Enable a plugin {MAY_INSTALL}",
       {200: "InstalledPlugin"}, (403, 404, 409, *KUBE), (PLUGIN,)),
    Op("post", BASE + "/{id}/disable", "disablePlugin", f"Disable a plugin {MAY_INSTALL}",
       {200: "InstalledPlugin"}, (403, 404, 409, *KUBE), (PLUGIN,)),
    Op("put", BASE + "/{id}/config", "configurePlugin", f"Replace a plugin's configuration "
       f"{MAY_INSTALL}; secret properties left out keep their value",
       {200: "InstalledPlugin"}, (403, 404, 409, *KUBE), (PLUGIN,), body="PluginConfig"),
    Op("post", BASE + "/{id}/approve", "approvePlugin", "Approve every high-risk permission "
       "the catalog manifest asks for now (admin)", {200: "InstalledPlugin"},
       (403, 404, 409, *KUBE), (PLUGIN,)),
)  # fmt: skip

INSTALLED: dict[str, Schema] = {
    "id": string("The Plugin's name."),
    "name": string("Same as id."),
    "namespace": string(),
    "catalogId": _nullable(integer("Its catalog entry, while the catalog has it.", format="int64")),
    "repository": string("The plugin repository it comes from."),
    "pluginName": string("Its name in that repository's catalog."),
    "version": _nullable(string("The version installed (or asked for).")),
    "type": _enum("The plugin's type, once the operator saw it.", *PLUGIN_TYPES, nullable=True),
    "enabled": _bool("Whether it receives events (and its runtime runs)."),
    "config": {
        **JSON_OBJECT,
        "description": "The configuration without secret properties (operators only).",
    },
    "secretConfig": _array(
        string("A dotted path."),
        "The secret properties that have a value, never their values (operators only).",
    ),
    "phase": PLUGIN_PHASE,
    "message": _nullable(string("Why it is in this phase (operators only).")),
    "approved": _bool("Every high-risk permission it asks for is approved."),
    "approvedPermissions": _array(string(), "High-risk permissions an admin approved."),
    "permissions": _array(
        _response({"name": string(), "risk": string()}), "What the manifest requests."
    ),
    "events": _array(string(), "The event types it is subscribed to."),
    "url": _nullable(string("Where its events are delivered (operators only).")),
    "secretName": _nullable(string("Its Secret: signing secret, secret config (operators only).")),
    "installedBy": _nullable(string("Who installed it over the API (operators only).")),
    "createdAt": _time("When it was installed."),
}
CATALOG: dict[str, Schema] = {
    "id": integer("Install it with this.", format="int64"),
    "name": string("Its name in the repository (the default Plugin name)."),
    "version": string(),
    "displayName": string(),
    "description": string(),
    "category": string(),
    "type": TYPE,
    "icon": _nullable(string()),
    "tags": _array(string()),
    "permissions": _array(
        _response(
            {"name": string(), "risk": _enum("Risk level.", *RISKS), "description": string()}
        ),
        "What it asks for; high-risk ones need an admin's approval.",
    ),
    "events": _array(string(), "The event types it subscribes to."),
    "runnable": _bool("It ships an image and runs as a workload of its own."),
    "installCount": integer("How often it was installed.", minimum=0),
    "avgRating": {"type": "number", "minimum": 0, "maximum": 5},
    "ratingCount": integer("How many users rated it.", minimum=0),
    "repository": _response({"id": string(), "url": string()}),
    "updatedAt": _time("When the sync last wrote it."),
}


def plugin_schemas() -> dict[str, Schema]:
    return {
        "CatalogPlugin": _response(CATALOG),
        "CatalogPluginDetail": _response(
            {
                **CATALOG,
                "configSchema": _nullable(
                    {**JSON_OBJECT, "description": "The JSON Schema its config must satisfy."}
                ),
            }
        ),
        "CatalogPluginList": _list("plugins", "CatalogPlugin", numbered=True),
        # users get it without the operator-only fields (config, URL, message...)
        "InstalledPlugin": {
            **_response(INSTALLED),
            "required": [name for name in INSTALLED if name not in OPERATOR_ONLY],
        },
        "InstalledPluginWithSecret": _response(
            {
                **INSTALLED,
                "signingSecret": string(
                    "The Standard Webhooks secret its events are signed with: shown this once.",
                    pattern="^whsec_",
                ),
            }
        ),
        "InstalledPluginList": _list("plugins", "InstalledPlugin"),
        "PluginInstall": _request(
            {
                "pluginId": integer("The catalog entry's id.", minimum=1, format="int64"),
                "config": {**JSON_OBJECT, "description": "Checked against its configSchema."},
                "name": string(
                    "The Plugin's name (default: the catalog name).",
                    pattern=DNS_LABEL.pattern,
                    maxLength=MAX_NAME,
                ),
            },
            required=["pluginId"],
            example={"pluginId": 1, "config": {"url": "https://hooks.example.com/streamspace"}},
        ),
        "PluginConfig": _request(
            {"config": {**JSON_OBJECT, "description": "The whole configuration."}},
            required=["config"],
            example={"config": {"url": "https://hooks.example.com/streamspace"}},
        ),
        "PluginRating": _request(
            {
                "rating": integer("From 1 to 5.", minimum=1, maximum=5),
                "review": string("A review.", maxLength=MAX_REVIEW),
            },
            required=["rating"],
            example={"rating": 5, "review": "Does what it says."},
        ),
        "PluginRatingResult": _response(
            {
                "catalogId": integer(format="int64"),
                "user": string("Who rated."),
                "rating": integer(minimum=1, maximum=5),
                "review": _nullable(string()),
                "avgRating": {"type": "number", "minimum": 0, "maximum": 5},
                "ratingCount": integer(minimum=0),
            }
        ),
    }
