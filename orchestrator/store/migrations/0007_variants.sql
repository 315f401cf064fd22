-- Variants of a sync for one connection (Nango's sync variants): each has its own schedule,
-- state and records (records.variant), created and deleted through the API.
CREATE TABLE sync_variants (
    connection_pk bigint NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    sync_name     text NOT NULL,
    variant       text NOT NULL CHECK (variant <> 'base' AND length(variant) BETWEEN 1 AND 255),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_pk, sync_name, variant)
);
