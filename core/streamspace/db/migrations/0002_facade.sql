-- The facade's additions: webhook delivery de-duplication, and updated_at on connections so that
-- every mirror table records when its row last changed.

ALTER TABLE connections ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- Delivery ids (GitHub X-GitHub-Delivery, GitLab X-Gitlab-Event-UUID) already acted upon; a
-- redelivery is acknowledged without a second sync. Old rows are pruned by the facade.
CREATE TABLE webhook_deliveries (
    provider     text NOT NULL,
    delivery_id  text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, delivery_id)
);
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at);

CREATE INDEX audit_log_resource_idx ON audit_log (resource_type, resource_id);
