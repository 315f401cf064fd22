-- Records are grouped in scopes, one per (connection, model, variant), and keyed (scope_id, external_id).
--
-- * Writers lock the scope row (SELECT ... FOR UPDATE). That serialises the writers of one scope, so cursors
--   become visible in commit order, and makes a connection delete (which cascades to its scopes) wait until
--   a batch has committed.
-- * Id lookups probe the primary key (scope_id, external_id). Reads page through the partial index
--   (scope_id, cursor) WHERE cursor > 0, so one connection's reads never scan another's rows. The partial
--   predicate is deliberate: only a query that says `cursor > ...` can use that index, so the planner can
--   never answer an id lookup by walking a whole scope in cursor order (with stale statistics it did, once
--   per looked-up id).
-- * records has no foreign key (a per-row check on every insert); its scope row has one, and deleting a scope
--   (directly or by the connection's cascade) deletes the scope's records by trigger.
-- * A two-column key keeps COPY fast. The rows still carry their environment, connection, model and variant
--   (as in 0001, for anyone who queries the table), but no index uses them.

CREATE TABLE record_scopes (
    id              bigserial PRIMARY KEY,
    connection_pk   bigint NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    model           text NOT NULL,
    variant         text NOT NULL DEFAULT 'base',
    environment_id  bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (connection_pk, model, variant)
);

ALTER TABLE records RENAME TO records_v1;
ALTER INDEX records_pkey RENAME TO records_v1_pkey;

CREATE TABLE records (
    scope_id         bigint NOT NULL,
    environment_id   bigint NOT NULL,
    connection_pk    bigint NOT NULL,
    cursor           bigint NOT NULL DEFAULT nextval('records_cursor_seq'),
    job_id           bigint,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_modified_at timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    model            text NOT NULL,
    variant          text NOT NULL,
    external_id      text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 255),
    last_action      text NOT NULL CHECK (last_action IN ('ADDED', 'UPDATED', 'DELETED')),
    data_hash        bytea NOT NULL,
    data             jsonb NOT NULL,
    PRIMARY KEY (scope_id, external_id)
);
CREATE INDEX records_scope_cursor_idx ON records (scope_id, cursor) WHERE cursor > 0;

INSERT INTO record_scopes (connection_pk, model, variant, environment_id)
SELECT connection_pk, model, variant, min(environment_id) FROM records_v1 GROUP BY 1, 2, 3;

INSERT INTO records (scope_id, environment_id, connection_pk, cursor, job_id, first_seen_at, last_modified_at,
                     deleted_at, model, variant, external_id, last_action, data_hash, data)
SELECT s.id, r.environment_id, r.connection_pk, r.cursor, r.job_id, r.first_seen_at, r.last_modified_at,
       r.deleted_at, r.model, r.variant, r.external_id, r.last_action, r.data_hash, r.data
FROM records_v1 r
JOIN record_scopes s ON s.connection_pk = r.connection_pk AND s.model = r.model AND s.variant = r.variant;

DROP TABLE records_v1;

CREATE FUNCTION record_scopes_delete_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM records WHERE scope_id = OLD.id;
    RETURN OLD;
END
$$;

CREATE TRIGGER record_scopes_delete_records AFTER DELETE ON record_scopes
    FOR EACH ROW EXECUTE FUNCTION record_scopes_delete_records();
