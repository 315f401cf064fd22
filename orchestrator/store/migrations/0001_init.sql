-- The platform's first tables. One environment owns everything below it.

CREATE TABLE environments (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    secret_key_hash text NOT NULL UNIQUE,
    webhook_url     text,
    webhook_secret  bytea,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE integrations (
    id              bigserial PRIMARY KEY,
    environment_id  bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    unique_key      text NOT NULL,
    provider        text NOT NULL,
    display_name    text,
    oauth_client_id text,
    oauth_client_secret bytea,
    webhook_secret  bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (environment_id, unique_key)
);

CREATE TABLE connections (
    id                bigserial PRIMARY KEY,
    environment_id    bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    integration_id    bigint NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    connection_id     text NOT NULL,
    credentials       bytea NOT NULL,            -- AES-GCM sealed JSON
    credentials_expires_at timestamptz,
    connection_config jsonb NOT NULL DEFAULT '{}',
    metadata          jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (integration_id, connection_id)
);
CREATE INDEX connections_env_idx ON connections (environment_id, connection_id);

-- The deployed version of each script: the bundle it lives in and its nango.yaml entry.
CREATE TABLE deployed_scripts (
    id              bigserial PRIMARY KEY,
    environment_id  bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    integration_id  bigint NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('sync', 'action', 'event')),
    bundle_sha256   text NOT NULL,
    bundle_key      text NOT NULL,
    module_path     text NOT NULL,
    config          jsonb NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    version         integer NOT NULL DEFAULT 1,
    deployed_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (integration_id, kind, name)
);

-- Per (connection, sync): what the next run needs and what operators asked for.
CREATE TABLE sync_state (
    connection_pk      bigint NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    sync_name          text NOT NULL,
    variant            text NOT NULL DEFAULT 'base',
    last_success_at    timestamptz,
    last_job_id        bigint,
    checkpoint         jsonb,
    reset_requested    boolean NOT NULL DEFAULT false,
    frequency_override text,
    PRIMARY KEY (connection_pk, sync_name, variant)
);

CREATE TABLE sync_jobs (
    id              bigserial PRIMARY KEY,
    environment_id  bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    connection_pk   bigint NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    sync_name       text NOT NULL,
    variant         text NOT NULL DEFAULT 'base',
    kind            text NOT NULL DEFAULT 'sync',
    status          text NOT NULL CHECK (status IN ('running', 'success', 'failed', 'cancelled')),
    full_resync     boolean NOT NULL DEFAULT false,
    workflow_id     text,
    run_id          text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    error           text,
    error_details   text
);
CREATE INDEX sync_jobs_conn_idx ON sync_jobs (connection_pk, sync_name, id DESC);
-- At most one running job per (connection, sync, variant): a retried activity reuses it.
CREATE UNIQUE INDEX sync_jobs_one_running ON sync_jobs (connection_pk, sync_name, variant) WHERE status = 'running';

CREATE SEQUENCE records_cursor_seq;

-- One row per (connection, model, record id). `cursor` moves only when the record really changed.
CREATE TABLE records (
    connection_pk    bigint NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    model            text NOT NULL,
    variant          text NOT NULL DEFAULT 'base',
    external_id      text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 255),
    environment_id   bigint NOT NULL,
    data             jsonb NOT NULL,
    data_hash        bytea NOT NULL,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_modified_at timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    last_action      text NOT NULL CHECK (last_action IN ('ADDED', 'UPDATED', 'DELETED')),
    job_id           bigint,
    cursor           bigint NOT NULL DEFAULT nextval('records_cursor_seq'),
    PRIMARY KEY (connection_pk, model, variant, external_id)
);
CREATE UNIQUE INDEX records_cursor_idx ON records (connection_pk, model, variant, cursor);

CREATE TABLE script_logs (
    id          bigserial PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES sync_jobs(id) ON DELETE CASCADE,
    level       text NOT NULL,
    message     text NOT NULL,
    fields      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX script_logs_job_idx ON script_logs (job_id, id);

-- What each job really changed, per model. Incremented in the same transaction as the rows.
CREATE TABLE job_counts (
    job_id  bigint NOT NULL REFERENCES sync_jobs(id) ON DELETE CASCADE,
    model   text NOT NULL,
    added   bigint NOT NULL DEFAULT 0,
    updated bigint NOT NULL DEFAULT 0,
    deleted bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, model)
);

-- Ids a track_deletes job has saved (changed or not); emptied when the job ends.
CREATE TABLE job_seen_records (
    job_id      bigint NOT NULL REFERENCES sync_jobs(id) ON DELETE CASCADE,
    model       text NOT NULL,
    external_id text NOT NULL,
    PRIMARY KEY (job_id, model, external_id)
);
