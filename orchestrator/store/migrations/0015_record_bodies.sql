-- Records keep their response bytes (issue 18, goal 3): reads copy stored text to the wire.
--
-- * `body` is the record exactly as GET /records sends it: its JSON (sorted keys, as saved) with
--   `"_nango_metadata": {...}` spliced in before the closing brace. `meta_len` is the length of that
--   suffix (`,"_nango_metadata":{...}}`, ASCII), so the record's own JSON is `left(body, -meta_len) || '}'`.
-- * The writer renders `body` when it writes a record (it knows the cursor, now() and the action). Any
--   other UPDATE that leaves `body` as it was (a delete, a manual fix of a timestamp) is re-rendered from
--   the row by the BEFORE UPDATE trigger below, so `body` always says what the columns say.
-- * The `data` jsonb column goes: it is never stored or parsed on write (the jsonb parse was a large part
--   of the write cost). Whoever queries the table by hand reads the view `records_json` below, whose
--   `data` is computed from `body` when read (no generated column: those need PostgreSQL 18 to be virtual).
-- * A rolling upgrade from an earlier release: its pods name `data`, so until they are replaced their
--   record reads and writes fail loudly (a 500, a failed sync run that runs again on its schedule) rather
--   than serve or store anything wrong. deploy/helm/README.md "Upgrade" says how to avoid even that.
-- * Existing rows are carried over with the bytes the old read path sent: `data::text` with the metadata
--   spliced in by the same expression.

CREATE FUNCTION records_meta(first_seen_at timestamptz, last_modified_at timestamptz, last_action text,
                             deleted_at timestamptz, cur bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT ',"_nango_metadata":{"first_seen_at":' || to_json(first_seen_at)::text
    || ',"last_modified_at":' || to_json(last_modified_at)::text
    || ',"last_action":"' || last_action
    || '","deleted_at":' || coalesce(to_json(deleted_at)::text, 'null')
    || ',"pruned_at":null,"cursor":"'
    || rtrim(translate(encode(convert_to('c' || cur::text, 'UTF8'), 'base64'), '+/', '-_'), '=') || '"}}'
$$;

ALTER TABLE records RENAME TO records_v2;
ALTER INDEX records_pkey RENAME TO records_v2_pkey;
ALTER INDEX records_scope_cursor_idx RENAME TO records_v2_scope_cursor_idx;

CREATE TABLE records (
    scope_id         bigint NOT NULL,
    environment_id   bigint NOT NULL,
    connection_pk    bigint NOT NULL,
    cursor           bigint NOT NULL DEFAULT nextval('records_cursor_seq'),
    job_id           bigint,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_modified_at timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    meta_len         integer NOT NULL,
    model            text NOT NULL,
    variant          text NOT NULL,
    external_id      text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 255),
    last_action      text NOT NULL CHECK (last_action IN ('ADDED', 'UPDATED', 'DELETED')),
    data_hash        bytea NOT NULL,
    body             text NOT NULL,
    PRIMARY KEY (scope_id, external_id)
);

INSERT INTO records (scope_id, environment_id, connection_pk, cursor, job_id, first_seen_at, last_modified_at,
                     deleted_at, meta_len, model, variant, external_id, last_action, data_hash, body)
SELECT r.scope_id, r.environment_id, r.connection_pk, r.cursor, r.job_id, r.first_seen_at, r.last_modified_at,
       r.deleted_at, length(m.m), r.model, r.variant, r.external_id, r.last_action, r.data_hash,
       left(r.data::text, -1) || m.m
FROM records_v2 r
CROSS JOIN LATERAL records_meta(r.first_seen_at, r.last_modified_at, r.last_action, r.deleted_at, r.cursor) AS m(m);

DROP TABLE records_v2;
CREATE INDEX records_scope_cursor_idx ON records (scope_id, cursor) WHERE cursor > 0;

CREATE FUNCTION records_render() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    m text := records_meta(NEW.first_seen_at, NEW.last_modified_at, NEW.last_action, NEW.deleted_at, NEW.cursor);
BEGIN
    NEW.body := left(OLD.body, -OLD.meta_len) || m;
    NEW.meta_len := length(m);
    RETURN NEW;
END
$$;

CREATE TRIGGER records_render BEFORE UPDATE ON records
    FOR EACH ROW WHEN (NEW.body = OLD.body) EXECUTE FUNCTION records_render();

-- For people and tools that query records by hand: each record's own JSON as jsonb, without the metadata.
CREATE VIEW records_json AS
SELECT scope_id, environment_id, connection_pk, model, variant, external_id, cursor, job_id, first_seen_at,
       last_modified_at, deleted_at, last_action, (left(body, -meta_len) || '}')::jsonb AS data
FROM records;
