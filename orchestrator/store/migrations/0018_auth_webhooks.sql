-- Issue 19: auth webhooks, Nango's `type: "auth"` payloads to the environment's webhook URLs: a connection created
-- or its credentials replaced (success or failure), a token refresh the provider refused, a connection deleted.
-- The two switches are Nango's (on for a new environment, as Nango sets them); deletion follows on_auth_creation.
ALTER TABLE environments
    ADD COLUMN on_auth_creation      boolean NOT NULL DEFAULT true,
    ADD COLUMN on_auth_refresh_error boolean NOT NULL DEFAULT true;

-- Every delivery attempt of an auth webhook (no job to hang them on, unlike sync results); the connection is named,
-- not referenced, so the record of a deletion's webhook outlives the connection.
CREATE TABLE auth_webhook_attempts (
    id             bigserial PRIMARY KEY,
    environment_id bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    integration    text NOT NULL,
    connection_id  text NOT NULL,
    operation      text NOT NULL,
    success        boolean NOT NULL,
    url            text NOT NULL,
    status         integer,
    error          text,
    attempted_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_webhook_attempts_env_idx ON auth_webhook_attempts (environment_id, id DESC);
