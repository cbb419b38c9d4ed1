-- Every redirect the PG sent a buyer back with. Checkout owns these; nobody else reads them.

-- One row per authentication: the first success redirect for a paymentKey. Its insert and the
-- PaymentAuthenticated event commit together; a refresh only bumps repeat_count.
CREATE TABLE success_redirects (
    payment_key  text        PRIMARY KEY CHECK (char_length(payment_key) BETWEEN 1 AND 200),
    order_id     text        NOT NULL CHECK (order_id ~ '^[A-Za-z0-9_-]{6,64}$'),
    amount       bigint      NOT NULL CHECK (amount > 0),
    payment_type text        NOT NULL CHECK (payment_type IN ('NORMAL', 'BRANDPAY', 'KEYIN')),
    client_ip    text,
    user_agent   text,
    event_id     uuid        NOT NULL UNIQUE,
    received_at  timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    repeat_count integer     NOT NULL DEFAULT 0
);
CREATE INDEX success_redirects_order_id ON success_redirects (order_id);

-- A known paymentKey presented again with a different orderId, amount or paymentType: a replay
-- or tampering attempt. Kept for the audit trail; never announced.
CREATE TABLE conflicting_redirects (
    id           bigserial   PRIMARY KEY,
    payment_key  text        NOT NULL REFERENCES success_redirects (payment_key),
    order_id     text        NOT NULL,
    amount       bigint      NOT NULL,
    payment_type text        NOT NULL,
    client_ip    text,
    user_agent   text,
    received_at  timestamptz NOT NULL
);
CREATE INDEX conflicting_redirects_payment_key ON conflicting_redirects (payment_key);

-- Fail redirects, one row per distinct (orderId, code, message). event_id is null when nothing
-- was announced (the buyer closed the window and the PG sent no orderId).
CREATE TABLE fail_redirects (
    id           bigserial   PRIMARY KEY,
    order_id     text        CHECK (order_id ~ '^[A-Za-z0-9_-]{6,64}$'),
    code         text        NOT NULL CHECK (code ~ '^[A-Z][A-Z0-9_]{0,99}$'),
    message      text        NOT NULL CHECK (char_length(message) <= 500),
    client_ip    text,
    user_agent   text,
    event_id     uuid        UNIQUE,
    received_at  timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    repeat_count integer     NOT NULL DEFAULT 0,
    CONSTRAINT fail_redirects_once UNIQUE NULLS NOT DISTINCT (order_id, code, message),
    CONSTRAINT fail_redirects_announced_with_order CHECK ((event_id IS NULL) = (order_id IS NULL))
);
