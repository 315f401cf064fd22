-- Issue 20, retention and pruning.
--
-- * PATCH /records/prune (store/records.py `prune`) drops a record's payload and keeps the row as a tombstone:
--   `pruned_at` says when. The body becomes `{"id": ...}` plus the metadata, rendered with `pruned_at`, and the
--   hash is emptied so the next save of the record is an update that brings its payload back. A writer that
--   replaces the body of a pruned record (it renders `"pruned_at":null`) has the column cleared by the render
--   trigger, so the column always says what the body says; rows never pruned pay only the trigger's WHEN.
-- * Retention (control/retention.py): three per-environment settings in days, NULL = keep forever (the default).
--   Soft-deleted records are found by a partial index on `deleted_at` (only deleted rows are in it, so saves of
--   live records never touch it); jobs are walked by id along jobs_env_kind_idx (ids grow with `started_at`).
-- * A deleted connection keeps its jobs: the foreign key from jobs goes (connection ids are never reused, so the
--   kept `connection_pk` names nothing else), and the connection id and integration key are copied onto its
--   jobs just before the connection (or its integration) is deleted, so GET /jobs still shows them. The
--   environment's own cascade still deletes its jobs (the copy is skipped then: they are going too).

ALTER TABLE records ADD COLUMN pruned_at timestamptz;

CREATE FUNCTION records_meta(first_seen_at timestamptz, last_modified_at timestamptz, last_action text,
                             deleted_at timestamptz, pruned_at timestamptz, cur bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT ',"_nango_metadata":{"first_seen_at":' || to_json(first_seen_at)::text
    || ',"last_modified_at":' || to_json(last_modified_at)::text
    || ',"last_action":"' || last_action
    || '","deleted_at":' || coalesce(to_json(deleted_at)::text, 'null')
    || ',"pruned_at":' || coalesce(to_json(pruned_at)::text, 'null')
    || ',"cursor":"'
    || rtrim(translate(encode(convert_to('c' || cur::text, 'UTF8'), 'base64'), '+/', '-_'), '=') || '"}}'
$$;

CREATE OR REPLACE FUNCTION records_render() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    m text;
BEGIN
    IF NEW.body = OLD.body THEN
        m := records_meta(NEW.first_seen_at, NEW.last_modified_at, NEW.last_action, NEW.deleted_at, NEW.pruned_at,
                          NEW.cursor);
        NEW.body := left(OLD.body, -OLD.meta_len) || m;
        NEW.meta_len := length(m);
    ELSIF NEW.pruned_at IS NOT DISTINCT FROM OLD.pruned_at THEN
        NEW.pruned_at := NULL;  -- a writer replaced a pruned record's payload
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER records_render ON records;
CREATE TRIGGER records_render BEFORE UPDATE ON records
    FOR EACH ROW WHEN (NEW.body = OLD.body OR OLD.pruned_at IS NOT NULL) EXECUTE FUNCTION records_render();

CREATE INDEX records_deleted_idx ON records (environment_id, deleted_at) WHERE deleted_at IS NOT NULL;

ALTER TABLE environments
    ADD COLUMN records_retention_days integer CHECK (records_retention_days > 0),
    ADD COLUMN jobs_retention_days integer CHECK (jobs_retention_days > 0),
    ADD COLUMN webhooks_retention_days integer CHECK (webhooks_retention_days > 0);

ALTER TABLE jobs
    DROP CONSTRAINT jobs_connection_pk_fkey,
    ADD COLUMN connection_id text,
    ADD COLUMN integration_key text;

CREATE FUNCTION connections_keep_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs SET connection_id = OLD.connection_id,
                    integration_key = coalesce(integration_key,
                                               (SELECT unique_key FROM integrations WHERE id = OLD.integration_id))
    WHERE connection_pk = OLD.id AND EXISTS (SELECT 1 FROM environments e WHERE e.id = jobs.environment_id);
    RETURN OLD;
END
$$;
CREATE TRIGGER connections_keep_jobs BEFORE DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION connections_keep_jobs();

CREATE FUNCTION integrations_keep_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs j SET integration_key = OLD.unique_key FROM connections c
    WHERE c.integration_id = OLD.id AND j.connection_pk = c.id
      AND EXISTS (SELECT 1 FROM environments e WHERE e.id = j.environment_id);
    RETURN OLD;
END
$$;
CREATE TRIGGER integrations_keep_jobs BEFORE DELETE ON integrations
    FOR EACH ROW EXECUTE FUNCTION integrations_keep_jobs();
