-- Custom providers (internal or unlisted APIs), declared per environment with the catalog's fields
-- through POST /providers or the providers.yaml that `nango deploy` uploads. A custom provider
-- shadows a built-in one of the same name in its environment.
CREATE TABLE custom_providers (
    environment_id bigint NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    definition     jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment_id, name)
);
