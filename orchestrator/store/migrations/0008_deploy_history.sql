-- Every applied deploy, per integration: who, when, what changed, which bundle. A rollback re-applies
-- an earlier entry's bundle and config (bundles are content-addressed, so the old one is still stored).
CREATE TABLE deploy_history (
    id              bigserial PRIMARY KEY,
    environment_id  bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    integration_id  bigint NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    version         integer NOT NULL,
    deployed_at     timestamptz NOT NULL DEFAULT now(),
    deployed_by     text NOT NULL DEFAULT 'api',
    bundle_sha256   text NOT NULL,
    bundle_key      text NOT NULL,
    changes         jsonb NOT NULL,
    only_scripts    text[],            -- a partial deploy (--sync/--action) names what it touched
    rollback_of     integer,           -- the version this deploy restored, if it was a rollback
    UNIQUE (integration_id, version)
);

-- Which code each deployed script runs: its own sha256 (its module and what it imports), so a deploy
-- that touches one script reports only that script as updated.
ALTER TABLE deployed_scripts ADD COLUMN script_sha256 text;
