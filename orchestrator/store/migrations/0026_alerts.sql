-- Issue 20, alerts: a sync that fails `alert_after_failures` runs in a row (per environment, 3 by default, 0 turns
-- alerts off) sends one signed "failing" webhook, and one "recovered" webhook when it next succeeds (runs/alerts.py).
ALTER TABLE environments
    ADD COLUMN alert_after_failures integer NOT NULL DEFAULT 3 CHECK (alert_after_failures BETWEEN 0 AND 1000);

-- Each sync now in a failure streak. When one of its runs ends, `failures` is counted again from its jobs (the failed
-- runs since its last success; cancelled runs neither count nor end a streak), so any worker may end the next run.
-- `alerted_at` is set by the one worker that claims the failing webhook; the success that deletes the row sends the
-- recovered webhook when it is set. The dashboard's front page lists the rows at or past the environment's setting.
CREATE TABLE sync_failure_streaks (
    connection_pk      bigint NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    sync_name          text NOT NULL,
    variant            text NOT NULL DEFAULT 'base',
    environment_id     bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    failures           integer NOT NULL,
    last_failed_job_id bigint NOT NULL,  -- not a foreign key: a job pruned by retention leaves the streak as it is
    since              timestamptz NOT NULL,  -- when the streak's first failed run started
    alerted_at         timestamptz,
    PRIMARY KEY (connection_pk, sync_name, variant)
);
CREATE INDEX sync_failure_streaks_env_idx ON sync_failure_streaks (environment_id, failures DESC);
-- The front page's chart of the last day's runs reads jobs by (environment_id, started_at), 0025's index.
