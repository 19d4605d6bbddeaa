-- Users and groups (issue 19). A row is made on a user's first sign-in. A user's groups are the
-- union of what the identity provider said at the last sign-in (idp_groups, replaced on every
-- sign-in) and what an admin set (groups, only changed by PATCH /api/v1/users/{id}).
ALTER TABLE users
    ADD COLUMN idp_groups  text[] NOT NULL DEFAULT '{}',
    ADD COLUMN groups      text[] NOT NULL DEFAULT '{}',
    ADD COLUMN disabled    boolean NOT NULL DEFAULT false,
    ADD COLUMN updated_at  timestamptz NOT NULL DEFAULT now();
