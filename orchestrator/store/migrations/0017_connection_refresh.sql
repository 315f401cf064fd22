-- Issue 19: tokens kept fresh. A background refresher renews OAuth2 tokens before they expire; a refresh the
-- provider refuses marks the connection (refresh_error: {id, message, at}) so that neither the refresher nor the
-- connection's syncs call the provider again until it is reconnected or a forced refresh succeeds.
-- refreshable: the credentials carry a refresh token (false: the refresher never selects the row).
ALTER TABLE connections
    ADD COLUMN refresh_error jsonb,
    ADD COLUMN refreshable   boolean NOT NULL DEFAULT true;

CREATE INDEX connections_refresh_due_idx ON connections (credentials_expires_at)
    WHERE refreshable AND refresh_error IS NULL AND credentials_expires_at IS NOT NULL;
