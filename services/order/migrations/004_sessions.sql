-- Storefront sessions: each visitor gets a customer of their own (a guest) and a random session
-- id in an HttpOnly cookie; only the id's SHA-256 is stored. Guests have no bearer token.
ALTER TABLE customers ALTER COLUMN token_hash DROP NOT NULL;
ALTER TABLE customers ADD COLUMN guest boolean NOT NULL DEFAULT false;
ALTER TABLE customers ADD CONSTRAINT customers_guest_or_token
    CHECK (guest OR token_hash IS NOT NULL);

CREATE TABLE sessions (
    session_hash bytea       PRIMARY KEY CHECK (octet_length(session_hash) = 32),
    customer_id  bigint      NOT NULL REFERENCES customers (customer_id),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);
CREATE INDEX sessions_by_customer ON sessions (customer_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
