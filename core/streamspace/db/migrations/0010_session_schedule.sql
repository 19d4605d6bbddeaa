-- Scheduled sessions (issue 19): the mirror keeps a Session's spec.schedule and its next
-- scheduled start and stop (status.nextStart, status.nextStop) for the API's views.
ALTER TABLE sessions
    ADD COLUMN schedule    jsonb,
    ADD COLUMN next_start  timestamptz,
    ADD COLUMN next_stop   timestamptz;
