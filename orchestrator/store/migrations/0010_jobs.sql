-- Jobs are one table for every kind of script run (sync, action, webhook, event): `sync_jobs` becomes
-- `jobs` and its `sync_name` becomes `script_name` (sync_state, sync_variants and the other tables keep
-- `sync_name`: they are about syncs only). Foreign keys (job_counts, script_logs, job_seen_records,
-- notification_attempts) point at the table, not its name, and keep working.
--
-- The error's type becomes a column: a failed action, webhook or event job stored "type: message" in
-- `error`; from now on `error_type` holds the type and `error` the message. Existing rows are split
-- here (at the first ": ", as the readers did). Sync jobs keep their error text whole.

ALTER TABLE sync_jobs RENAME TO jobs;
ALTER TABLE jobs RENAME COLUMN sync_name TO script_name;
ALTER SEQUENCE sync_jobs_id_seq RENAME TO jobs_id_seq;

ALTER INDEX sync_jobs_pkey RENAME TO jobs_pkey;
ALTER INDEX sync_jobs_conn_idx RENAME TO jobs_conn_idx;
ALTER INDEX sync_jobs_one_running RENAME TO jobs_one_running_sync;
ALTER INDEX sync_jobs_public_id RENAME TO jobs_public_id;
ALTER INDEX sync_jobs_env_kind_idx RENAME TO jobs_env_kind_idx;

ALTER TABLE jobs RENAME CONSTRAINT sync_jobs_status_check TO jobs_status_check;
ALTER TABLE jobs RENAME CONSTRAINT sync_jobs_environment_id_fkey TO jobs_environment_id_fkey;
ALTER TABLE jobs RENAME CONSTRAINT sync_jobs_connection_pk_fkey TO jobs_connection_pk_fkey;

ALTER TABLE jobs ADD COLUMN error_type text;

UPDATE jobs SET error_type = left(error, strpos(error, ': ') - 1), error = substr(error, strpos(error, ': ') + 2)
WHERE kind IN ('action', 'webhook', 'event') AND strpos(error, ': ') > 0;

-- During a rolling upgrade, pods of the previous release still read and write `sync_jobs` until they
-- are replaced. This plain view over `jobs` is automatically updatable (PostgreSQL rewrites its
-- INSERT/UPDATE/DELETE onto `jobs`, with the table's defaults), so they keep working meanwhile. The
-- platform's own code never names it (tests/test_architecture.py checks); a later release drops it.
CREATE VIEW sync_jobs AS
SELECT id, environment_id, connection_pk, script_name AS sync_name, variant, kind, status, full_resync,
       workflow_id, run_id, started_at, ended_at, error, error_details, public_id, input, output, error_payload,
       attempts
FROM jobs;
