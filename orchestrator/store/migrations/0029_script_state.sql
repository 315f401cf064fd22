-- Issue 21: what scripts other than syncs keep between runs, and the locks scripts coordinate with.
--
-- * script_checkpoints: the checkpoint of an action, webhook script or event script, one per (connection, kind,
--   script). A sync keeps its checkpoint in sync_state, as before. A retried attempt of a run reads it back, as a
--   retried sync attempt does.
-- * script_locks: nango.try_acquire_lock / release_lock. One holder per (connection, key) (the connection fixes the
--   environment); a lock past its expires_at is free. Both go with their connection.
CREATE TABLE script_checkpoints (
    connection_pk bigint NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('action', 'webhook', 'event')),
    script_name   text NOT NULL,
    checkpoint    jsonb NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_pk, kind, script_name)
);

CREATE TABLE script_locks (
    connection_pk bigint NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    key           text NOT NULL,
    holder        text NOT NULL,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (connection_pk, key)
);
