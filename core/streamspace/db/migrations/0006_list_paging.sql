-- Keyset paging of the session list (issue 17): newest first by (created_at, uid), with
-- the filters the list offers most (the caller's own sessions; one namespace).
CREATE INDEX sessions_page_idx ON sessions (created_at, uid);
CREATE INDEX sessions_user_page_idx ON sessions (user_id, created_at, uid);
CREATE INDEX sessions_namespace_page_idx ON sessions (namespace, created_at, uid);
