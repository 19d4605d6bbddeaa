-- The StreamSpace schema (SPEC §5). The sessions, connections and repositories tables mirror
-- custom resources: keyed by the object's UID, written only by the mirror (one writer).

CREATE TABLE users (
    id          text PRIMARY KEY,              -- the user name, a DNS label as in Session.spec.user
    email       text,
    name        text,
    role        text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'operator', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_login  timestamptz
);

CREATE TABLE api_keys (
    id            bigserial PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL DEFAULT '',
    prefix        text NOT NULL,               -- first characters, to recognise a key in lists
    key_hash      text NOT NULL UNIQUE,        -- SHA-256 of the whole key; the key is never stored
    role          text NOT NULL CHECK (role IN ('user', 'operator', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    expires_at    timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id);

CREATE TABLE sessions (
    uid                   uuid PRIMARY KEY,
    id                    text NOT NULL,       -- Session name
    namespace             text NOT NULL,
    user_id               text NOT NULL,
    template_name         text NOT NULL,
    state                 text NOT NULL,
    phase                 text,
    app_type              text,
    active_connections    integer NOT NULL DEFAULT 0,
    url                   text,
    pod_name              text,
    tags                  text[] NOT NULL DEFAULT '{}',
    resources             jsonb NOT NULL DEFAULT '{}',
    persistent_home       boolean NOT NULL DEFAULT true,
    idle_timeout          text,
    max_session_duration  text,
    last_activity         timestamptz,
    idle_deadline         timestamptz,
    started_at            timestamptz,
    hibernated_at         timestamptz,
    resource_version      text NOT NULL DEFAULT '',
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, id)
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_state_idx ON sessions (state);

CREATE TABLE connections (
    uid               uuid PRIMARY KEY,
    id                text NOT NULL,           -- Connection name
    namespace         text NOT NULL,
    session_id        text NOT NULL,
    user_id           text NOT NULL,
    client_ip         text,
    user_agent        text,
    state             text NOT NULL DEFAULT 'active',
    connected_at      timestamptz,
    last_heartbeat    timestamptz,
    resource_version  text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL,
    UNIQUE (namespace, id)
);
CREATE INDEX connections_session_idx ON connections (namespace, session_id);

CREATE TABLE repositories (
    uid               uuid PRIMARY KEY,
    id                text NOT NULL,           -- TemplateRepository name
    namespace         text NOT NULL,
    name              text NOT NULL,
    url               text NOT NULL,
    branch            text NOT NULL DEFAULT 'main',
    type              text NOT NULL DEFAULT 'template' CHECK (type IN ('template', 'plugin')),
    auth_type         text NOT NULL DEFAULT 'none',
    auth_secret       text,                    -- the Secret's name only, never its contents
    sync_interval     text,
    auto_install      boolean NOT NULL DEFAULT false,
    suspend           boolean NOT NULL DEFAULT false,
    status            text NOT NULL DEFAULT 'pending',
    message           text,
    last_sync         timestamptz,
    last_sync_commit  text,
    template_count    integer NOT NULL DEFAULT 0,
    plugin_count      integer NOT NULL DEFAULT 0,
    resource_version  text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, id)
);

-- Catalog rows are replaced per repository in one transaction by the sync; they refer to the
-- repository by UID without a foreign key, so the catalog writer never waits on the mirror.
CREATE TABLE catalog_templates (
    id              bigserial PRIMARY KEY,
    repository_uid  uuid NOT NULL,
    name            text NOT NULL,
    display_name    text NOT NULL,
    description     text NOT NULL DEFAULT '',
    category        text NOT NULL DEFAULT '',
    app_type        text NOT NULL DEFAULT 'desktop' CHECK (app_type IN ('desktop', 'webapp')),
    icon            text,
    base_image      text NOT NULL,
    tags            text[] NOT NULL DEFAULT '{}',
    manifest        jsonb NOT NULL,
    source_path     text NOT NULL DEFAULT '',
    install_count   integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (repository_uid, name)
);
CREATE INDEX catalog_templates_category_idx ON catalog_templates (category);
CREATE INDEX catalog_templates_tags_idx ON catalog_templates USING gin (tags);

CREATE TABLE configuration (
    key          text PRIMARY KEY,
    value        text NOT NULL,
    type         text NOT NULL DEFAULT 'string' CHECK (type IN ('string', 'number', 'boolean', 'json', 'duration')),
    category     text NOT NULL DEFAULT 'general',
    description  text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text
);

CREATE TABLE audit_log (
    id             bigserial PRIMARY KEY,
    user_id        text,
    action         text NOT NULL,
    resource_type  text NOT NULL,
    resource_id    text,
    changes        jsonb NOT NULL DEFAULT '{}',
    "timestamp"    timestamptz NOT NULL DEFAULT now(),
    ip_address     text
);
CREATE INDEX audit_log_timestamp_idx ON audit_log ("timestamp");
CREATE INDEX audit_log_user_idx ON audit_log (user_id);

CREATE TABLE catalog_plugins (
    id              bigserial PRIMARY KEY,
    repository_uid  uuid NOT NULL,
    name            text NOT NULL,
    version         text NOT NULL,
    display_name    text NOT NULL,
    description     text NOT NULL DEFAULT '',
    category        text NOT NULL DEFAULT '',
    plugin_type     text NOT NULL CHECK (plugin_type IN ('extension', 'webhook', 'api', 'ui', 'theme')),
    icon_url        text,
    manifest        jsonb NOT NULL,
    tags            text[] NOT NULL DEFAULT '{}',
    install_count   integer NOT NULL DEFAULT 0,
    avg_rating      numeric(3, 2) NOT NULL DEFAULT 0,
    rating_count    integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (repository_uid, name)
);

CREATE TABLE installed_plugins (
    id                 bigserial PRIMARY KEY,
    catalog_plugin_id  bigint REFERENCES catalog_plugins (id) ON DELETE SET NULL,
    name               text NOT NULL UNIQUE,
    version            text NOT NULL,
    enabled            boolean NOT NULL DEFAULT true,
    config             jsonb NOT NULL DEFAULT '{}',
    installed_by       text,
    installed_at       timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plugin_ratings (
    id           bigserial PRIMARY KEY,
    plugin_id    bigint NOT NULL REFERENCES catalog_plugins (id) ON DELETE CASCADE,
    user_id      text NOT NULL,
    rating       smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    review_text  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (plugin_id, user_id)
);
