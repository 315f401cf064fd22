-- Hosts an integration's scripts and proxy calls may reach besides its provider's host
-- (orchestrator/providers/egress.py). Public hosts only: internal addresses need the operator's
-- EGRESS_ALLOW setting. Set through PATCH /integrations/{key} {"egress_allow": [...]}.
ALTER TABLE integrations ADD COLUMN IF NOT EXISTS egress_allow text[] NOT NULL DEFAULT '{}';
