-- Answers to POST requests that carried an Idempotency-Key, kept for replay (IDEMPOTENCY_TTL).
-- key_hash is sha256 of (caller, key): the key itself is never stored. status is NULL while the
-- first request is being served; locked_until frees a key whose first request died with its
-- process.
CREATE TABLE idempotency_keys (
    key_hash      text PRIMARY KEY,
    user_id       text NOT NULL,
    fingerprint   text NOT NULL,
    status        integer,
    body          text,
    content_type  text,
    locked_until  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
