-- Tampering and forgery refused by approval, for operators (`python -m services.approval
-- security-events`). Each row commits with the rejection it explains; client_ip and user_agent
-- are the ones checkout recorded with the redirect.
CREATE TABLE security_events (
    id           bigserial   PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN (
                     'AMOUNT_MISMATCH', 'FOREIGN_PAYMENT_KEY', 'UNKNOWN_PAYMENT_KEY',
                     'ALREADY_PAID')),
    order_id     text        NOT NULL,
    payment_key  text        NOT NULL,
    expected     text        NOT NULL,
    presented    text        NOT NULL,
    client_ip    text,
    user_agent   text,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    -- An attempt is refused once: a redelivered message cannot record its finding twice.
    CONSTRAINT security_events_once UNIQUE (payment_key, kind)
);
CREATE INDEX security_events_occurred_at ON security_events (occurred_at);
