-- Plugins (issue 16, docs/PLUGINS.md). installed_plugins was never written: it becomes the
-- mirror of Plugin custom resources, keyed by the object's UID like sessions and written only by
-- the facade's mirror (one writer, resourceVersion ordering). It never holds a secret: config is
-- the Plugin's spec.config (non-secret properties only) and secret_keys names the secret
-- properties that have a value, never the values.
--
-- The catalog entry a Plugin came from is not a column: catalog rows keep their id across
-- re-syncs, but a Plugin names its entry by (repository, plugin name) and may be applied before
-- the entry exists, so reads join catalog_plugins on that pair (decision 121).

DROP TABLE installed_plugins;

CREATE TABLE installed_plugins (
    uid                   uuid PRIMARY KEY,
    id                    text NOT NULL,            -- Plugin name
    namespace             text NOT NULL,
    repository            text NOT NULL DEFAULT '', -- spec.catalogPlugin.repository
    plugin_name           text NOT NULL DEFAULT '', -- spec.catalogPlugin.name
    version               text,                     -- status.version, else the spec's
    plugin_type           text,                     -- status.pluginType
    enabled               boolean NOT NULL DEFAULT true,
    config                jsonb NOT NULL DEFAULT '{}',
    secret_keys           text[] NOT NULL DEFAULT '{}',
    phase                 text,
    message               text,
    approved              boolean NOT NULL DEFAULT false,  -- the Approved condition is True
    approved_permissions  text[] NOT NULL DEFAULT '{}',
    permissions           jsonb NOT NULL DEFAULT '[]',     -- [{name, risk}] as requested
    events                text[] NOT NULL DEFAULT '{}',
    url                   text,
    secret_name           text,
    installed_by          text,
    resource_version      text NOT NULL DEFAULT '',
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, id)
);
CREATE INDEX installed_plugins_catalog_idx ON installed_plugins (namespace, repository, plugin_name);

-- Ratings: one per user per catalog plugin (UNIQUE (plugin_id, user_id) from 0001); the
-- catalog row's avg_rating and rating_count are rewritten in the rating's transaction.
CREATE INDEX plugin_ratings_plugin_idx ON plugin_ratings (plugin_id);
CREATE INDEX catalog_plugins_category_idx ON catalog_plugins (category);
CREATE INDEX catalog_plugins_tags_idx ON catalog_plugins USING gin (tags);
