-- Usage history (issue 19): the mirror writes one row each time a session's phase changes (and
-- when it goes), in the same transaction as the sessions row. A row holds the phase entered and
-- the requests of the workload at that moment (status.resources); the usage report integrates
-- the time between one row and the next of the same session.
CREATE TABLE session_transitions (
    id             bigserial PRIMARY KEY,
    session_uid    uuid NOT NULL,
    namespace      text NOT NULL,
    session_id     text NOT NULL,
    user_id        text NOT NULL,
    template_name  text NOT NULL,
    phase          text NOT NULL,         -- Pending, Running, Hibernated, Failed, Terminated, Deleted
    cpu_millis     bigint NOT NULL DEFAULT 0,
    memory_bytes   bigint NOT NULL DEFAULT 0,
    gpus           integer NOT NULL DEFAULT 0,
    at             timestamptz NOT NULL
);
CREATE INDEX session_transitions_at_idx ON session_transitions (at);
CREATE INDEX session_transitions_session_idx ON session_transitions (session_uid, at, id);

ALTER TABLE sessions ADD COLUMN requests jsonb NOT NULL DEFAULT '{}';
