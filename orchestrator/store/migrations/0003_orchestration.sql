-- Actions, webhooks and events run as jobs too; only syncs are limited to one running job.
DROP INDEX sync_jobs_one_running;
CREATE UNIQUE INDEX sync_jobs_one_running ON sync_jobs (connection_pk, sync_name, variant)
    WHERE status = 'running' AND kind = 'sync';

ALTER TABLE sync_jobs
    ADD COLUMN public_id uuid,
    ADD COLUMN input jsonb,
    ADD COLUMN output jsonb,
    ADD COLUMN error_payload jsonb,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX sync_jobs_public_id ON sync_jobs (public_id) WHERE public_id IS NOT NULL;
CREATE INDEX sync_jobs_env_kind_idx ON sync_jobs (environment_id, kind, id DESC);

-- Incoming provider webhooks: stored before they are acknowledged, so none is ever lost.
CREATE TABLE webhook_payloads (
    id              bigserial PRIMARY KEY,
    public_id       uuid NOT NULL UNIQUE,
    environment_id  bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    integration_id  bigint NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    event_type      text,
    headers         jsonb NOT NULL,
    body            bytea NOT NULL,
    status          text NOT NULL DEFAULT 'received',   -- received | dispatched | processed | failed | ignored
    connections     text[] NOT NULL DEFAULT '{}',
    error           text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz
);
CREATE INDEX webhook_payloads_env_idx ON webhook_payloads (environment_id, id DESC);

-- Outgoing webhooks to the customer's app (sync results), with every delivery attempt.
CREATE TABLE notification_attempts (
    id          bigserial PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES sync_jobs(id) ON DELETE CASCADE,
    url         text NOT NULL,
    status      integer,
    error       text,
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_attempts_job_idx ON notification_attempts (job_id, id);

ALTER TABLE integrations ADD COLUMN webhook_routing jsonb NOT NULL DEFAULT '{}';
ALTER TABLE environments ADD COLUMN notify_on_empty boolean NOT NULL DEFAULT false;
