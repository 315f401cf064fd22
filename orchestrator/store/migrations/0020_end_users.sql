-- Issue 19: end users and tags, as Nango keeps them. A connect session names the end user (and organization) the
-- connection is made for, plus tags; the connection keeps them (`end_user`: {id, email, display_name, tags,
-- organization: {id, display_name}}; `tags`: string pairs, the end user's fields among them) so that
-- GET /connections can filter by endUserId, endUserOrganizationId and tags. A reconnect session re-authorizes
-- one existing connection.
ALTER TABLE connections
    ADD COLUMN end_user jsonb,
    ADD COLUMN tags     jsonb NOT NULL DEFAULT '{}';
CREATE INDEX connections_end_user_idx ON connections (environment_id, (end_user->>'id')) WHERE end_user IS NOT NULL;

ALTER TABLE connect_sessions
    ADD COLUMN end_user  jsonb,
    ADD COLUMN tags      jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN reconnect boolean NOT NULL DEFAULT false;

ALTER TABLE oauth_states
    ADD COLUMN end_user jsonb,
    ADD COLUMN tags     jsonb NOT NULL DEFAULT '{}';
