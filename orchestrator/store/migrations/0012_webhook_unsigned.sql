-- Provider webhooks need a signing secret: an integration without one refuses them unless it opts in
-- to unsigned webhooks explicitly. A payload no connection matches is kept as 'unmatched' (never fanned out).
ALTER TABLE integrations ADD COLUMN webhook_accept_unsigned boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN webhook_payloads.status IS
    'received | dispatched | processed | failed | ignored (no script subscribes) | unmatched (no connection matches)';
