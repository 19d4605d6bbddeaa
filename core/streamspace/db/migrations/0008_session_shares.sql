-- Session sharing (issue 19): the mirror keeps spec.sharedWith, as the API shows it (shared_with,
-- a JSON list of {user, access}) and as the lists filter on it (shared_users: who sees the
-- session besides its owner; a GIN index answers "sessions shared with me").
ALTER TABLE sessions
    ADD COLUMN shared_with  jsonb  NOT NULL DEFAULT '[]',
    ADD COLUMN shared_users text[] NOT NULL DEFAULT '{}';
CREATE INDEX sessions_shared_users_idx ON sessions USING gin (shared_users);
