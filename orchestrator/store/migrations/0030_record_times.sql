-- Issue 21: records' `_nango_metadata` times in the one form of every timestamp the API shows (UTC, milliseconds,
-- `Z`: 2026-12-03T18:20:42.123Z, orchestrator/timestamps.py `iso`, as Nango's records API writes them), where
-- `to_json(timestamptz)` wrote up to six fraction digits and `+00:00`.
--
-- * `records_time` renders one time as JSON (quoted, NULL as null). Milliseconds are truncated, never rounded up,
--   so a rendered last_modified_at passed back as `modified_after` (`last_modified_at >= ...`) still matches the
--   record it came from. It is a plain SQL expression, inlined where it is called; measured on 1,000,000 rows,
--   to_char costs 0.2-0.3 us a row more than to_json, which a write never notices: the writers render now() once
--   a batch and one first_seen_at per changed record (store/records.py); only the trigger and prune call it per
--   time of each row they touch.
-- * Both `records_meta` (0015's, five arguments, kept for queries by hand, and 0025's) render with it, so the
--   trigger of 0025 and prune do too.
-- * Existing rows are re-rendered by one UPDATE that changes no column the trigger does not render (the body is
--   unchanged, so the trigger re-renders its metadata; the cursor and the times stay as they were). One statement,
--   not batches: migrate() runs each migration in one transaction, so batches would commit together anyway. It
--   rewrites each row once, as 0015 did (3.4 s per 100,000 records of 1 KB, measured on a busy 2-core VM with
--   fsync off; the processes that start meanwhile wait for the migration lock); readers are never blocked (they
--   read the old bytes until the commit, then every record in the new form at once); a writer of a record waits
--   for the commit. A release older than this one, still running during a rolling upgrade,
--   writes the old form until replaced; running this UPDATE again afterwards (with `WHERE last_modified_at >=`
--   the upgrade's start) converts what it wrote.

CREATE OR REPLACE FUNCTION records_time(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT coalesce('"' || to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'null')
$$;

CREATE OR REPLACE FUNCTION records_meta(first_seen_at timestamptz, last_modified_at timestamptz, last_action text,
                                        deleted_at timestamptz, pruned_at timestamptz, cur bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT ',"_nango_metadata":{"first_seen_at":' || records_time(first_seen_at)
    || ',"last_modified_at":' || records_time(last_modified_at)
    || ',"last_action":"' || last_action
    || '","deleted_at":' || records_time(deleted_at)
    || ',"pruned_at":' || records_time(pruned_at)
    || ',"cursor":"'
    || rtrim(translate(encode(convert_to('c' || cur::text, 'UTF8'), 'base64'), '+/', '-_'), '=') || '"}}'
$$;

CREATE OR REPLACE FUNCTION records_meta(first_seen_at timestamptz, last_modified_at timestamptz, last_action text,
                                        deleted_at timestamptz, cur bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT records_meta(first_seen_at, last_modified_at, last_action, deleted_at, NULL, cur)
$$;

UPDATE records SET last_modified_at = last_modified_at;
