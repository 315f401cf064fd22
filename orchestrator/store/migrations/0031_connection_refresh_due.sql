-- When a connection's token is renewed (store/connections.py `refresh_due_at`): 15 minutes before it expires, or
-- halfway through the life its token response stated when that is shorter. With the fixed 15 minutes, a token that
-- lives 15 minutes or less (Snowflake's live 10) was due again as soon as it was issued: renewed on every proxy
-- call, run start and refresher pass. Written with the credentials; rows from before this migration get the
-- 15 minutes they had. A row written meanwhile by an older release (a rolling upgrade) is NULL here, and the
-- refresher reads it by its expiry as before (`due_for_refresh`).
ALTER TABLE connections ADD COLUMN credentials_refresh_at timestamptz;

UPDATE connections SET credentials_refresh_at = credentials_expires_at - interval '15 minutes'
    WHERE credentials_expires_at IS NOT NULL;

CREATE INDEX connections_refresh_at_idx ON connections (credentials_refresh_at)
    WHERE refreshable AND refresh_error IS NULL AND credentials_refresh_at IS NOT NULL;
