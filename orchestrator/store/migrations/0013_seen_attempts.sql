-- Deletion detection and counts that reflect only the attempt that completed (issue 23, point 1).
--
-- A retried run_sync_script reuses its job. Each seen row now says which attempt saw it and whether a
-- saved checkpoint covers it: a new attempt that resumes from the checkpoint keeps exactly the covered
-- rows, one that starts over keeps none, and deletion detection counts only covered rows and rows of
-- the job's current attempt (`jobs.seen_attempt`), so a dead or frozen attempt's rows never count. A job
-- that ends without success keeps its covered rows: the next job resuming from its checkpoint takes them.
ALTER TABLE job_seen_records ADD COLUMN attempt integer NOT NULL DEFAULT 0;
ALTER TABLE job_seen_records ADD COLUMN covered boolean NOT NULL DEFAULT false;
ALTER TABLE jobs ADD COLUMN seen_attempt integer NOT NULL DEFAULT 0;

-- What a record was before the job first changed it (only records that existed then; a record the job
-- created has no row here). A job that was retried recomputes its counts from this and the records as
-- they end up, so they equal the provider's change whatever the dead attempts wrote. Emptied when the
-- job ends, as the seen rows are.
CREATE TABLE job_prior_records (
    job_id      bigint NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    scope_id    bigint NOT NULL,
    external_id text NOT NULL,
    prior_hash  bytea,
    prior_live  boolean NOT NULL,
    PRIMARY KEY (job_id, scope_id, external_id)
);
