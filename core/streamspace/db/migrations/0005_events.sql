-- The plugin event outbox (docs/PLUGINS.md §4). The mirror writer inserts one plugin_events row
-- per event it derives and one plugin_deliveries row per subscribed plugin, in the transaction
-- of the row change that caused them; the delivery worker (on the same replica) sends them.
-- No foreign key to installed_plugins: a delivery outlives its plugin's row (the log stays
-- readable, the worker marks it dead), and the mirror never waits on another table's writer.

CREATE TABLE plugin_events (
    id          uuid PRIMARY KEY,            -- the CloudEvent id
    seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- commit order of the writer
    type        text NOT NULL,               -- session.created, ... (without space.stream.)
    subject     text NOT NULL,               -- sessions/<name>, connections/<name>, ...
    namespace   text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}',
    "time"      timestamptz NOT NULL,        -- when the writer observed the change
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plugin_events_created_idx ON plugin_events (created_at);

CREATE TABLE plugin_deliveries (
    id                uuid PRIMARY KEY,      -- webhook-id: stable across retries
    seq               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- order within a subject
    event_id          uuid NOT NULL REFERENCES plugin_events (id) ON DELETE CASCADE,
    plugin_uid        uuid NOT NULL,
    plugin_namespace  text NOT NULL,
    plugin_name       text NOT NULL,
    subject           text NOT NULL,         -- the event's, copied: the worker orders by it
    url               text NOT NULL,         -- the target, as it was when the event happened
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_error        text,
    last_status       integer,               -- the receiver's last HTTP status, if it answered
    latency_ms        double precision,      -- from the event to the receiver's 2xx
    delivered_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
-- The worker: due pending deliveries in order ...
CREATE INDEX plugin_deliveries_due_idx ON plugin_deliveries (next_attempt_at, seq)
    WHERE status = 'pending';
-- ... each waiting while an older pending one of its plugin and subject exists.
CREATE INDEX plugin_deliveries_queue_idx ON plugin_deliveries (plugin_uid, subject, seq)
    WHERE status = 'pending';
-- The delivery log of one plugin, newest first.
CREATE INDEX plugin_deliveries_plugin_idx
    ON plugin_deliveries (plugin_namespace, plugin_name, seq DESC);
CREATE INDEX plugin_deliveries_event_idx ON plugin_deliveries (event_id);
