-- Issue 17: the fingerprint of ENCRYPTION_KEY (HMAC-SHA256 of a constant under the key, 16 hex
-- characters; never the key). The first API or worker process to start writes it; every later one
-- refuses to start with a key of another fingerprint, so a regenerated key cannot silently make
-- every stored credential unreadable. `nango admin keys rotate-encryption` replaces it.
CREATE TABLE encryption_key_fingerprint (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    fingerprint text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
