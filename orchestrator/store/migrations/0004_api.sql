-- The public API (issue 7): environment variables, OAuth app overrides, the OAuth2
-- authorization-code flow (connect sessions and their one-time states).

-- Environment variables scripts read with nango.get_environment_variables(); values sealed (AES-GCM).
CREATE TABLE environment_variables (
    environment_id bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    value          bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment_id, name)
);

-- Per-integration OAuth app settings; the URLs override the provider catalog's (e.g. a GitHub
-- Enterprise host, or the demo provider in tests).
ALTER TABLE integrations
    ADD COLUMN oauth_scopes            text,
    ADD COLUMN oauth_authorization_url text,
    ADD COLUMN oauth_token_url         text;

-- A connect session: created with the secret key, handed to a browser as a short-lived token
-- (only its hash is stored) that may start the OAuth flow for the integrations it allows.
CREATE TABLE connect_sessions (
    id                   bigserial PRIMARY KEY,
    environment_id       bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    token_hash           text NOT NULL UNIQUE,
    allowed_integrations text[],                 -- NULL: every integration of the environment
    connection_id        text,                   -- NULL: the caller picks it in the connect URL
    connection_config    jsonb NOT NULL DEFAULT '{}',
    metadata             jsonb NOT NULL DEFAULT '{}',
    return_url           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL
);

-- One authorization attempt: `state` sent to the provider, single use, short-lived.
CREATE TABLE oauth_states (
    state              text PRIMARY KEY,
    environment_id     bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    integration_id     bigint NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    connection_id      text NOT NULL,
    connection_config  jsonb NOT NULL DEFAULT '{}',
    metadata           jsonb NOT NULL DEFAULT '{}',
    redirect_uri       text NOT NULL,
    return_url         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    used_at            timestamptz
);
CREATE INDEX oauth_states_expires_idx ON oauth_states (expires_at);
