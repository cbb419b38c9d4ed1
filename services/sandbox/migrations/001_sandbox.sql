-- The sandbox PG's own state: payments, idempotent responses, fault knobs, webhook deliveries.

CREATE TABLE payments (
    payment_key           text        PRIMARY KEY,
    order_id              text        NOT NULL,
    order_name            text        NOT NULL,
    customer_key          text        NOT NULL,
    total_amount          bigint      NOT NULL CHECK (total_amount > 0),
    balance_amount        bigint      NOT NULL CHECK (balance_amount >= 0),
    status                text        NOT NULL CHECK (status IN ('READY', 'IN_PROGRESS', 'DONE',
                              'CANCELED', 'PARTIAL_CANCELED', 'ABORTED', 'EXPIRED')),
    card_number           text,
    secret                text        NOT NULL,
    requested_at          timestamptz NOT NULL,
    authenticated_at      timestamptz,
    approved_at           timestamptz,
    expires_at            timestamptz NOT NULL,
    last_transaction_key  text,
    failure_code          text,
    failure_message       text,
    cancels               jsonb       NOT NULL DEFAULT '[]',
    confirm_calls         integer     NOT NULL DEFAULT 0,
    approvals             integer     NOT NULL DEFAULT 0 CHECK (approvals BETWEEN 0 AND 1),
    last_confirm_idempotency_key text,
    CHECK (balance_amount <= total_amount)
);
CREATE INDEX payments_by_order ON payments (order_id, requested_at);
CREATE INDEX payments_expirable ON payments (expires_at) WHERE status IN ('READY', 'IN_PROGRESS');

-- Idempotency-Key: identity is key + secret key (hashed) + method + path. status NULL = in flight.
CREATE TABLE idempotent_requests (
    idempotency_key text        NOT NULL,
    secret_digest   text        NOT NULL,
    method          text        NOT NULL,
    path            text        NOT NULL,
    status          smallint,
    body            bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL DEFAULT now() + interval '15 days',
    PRIMARY KEY (idempotency_key, secret_digest, method, path)
);
CREATE INDEX idempotent_requests_expiry ON idempotent_requests (expires_at);

-- One row: the fault knobs every sandbox process obeys.
CREATE TABLE faults (
    id                  boolean          PRIMARY KEY DEFAULT true CHECK (id),
    confirm_latency_ms  integer          NOT NULL DEFAULT 0,
    drop_response_rate  double precision NOT NULL DEFAULT 0,
    error_rate          double precision NOT NULL DEFAULT 0,
    error_code          text             NOT NULL DEFAULT 'PROVIDER_ERROR',
    clock_scale         double precision NOT NULL DEFAULT 1 CHECK (clock_scale > 0)
);
INSERT INTO faults (id) VALUES (true);

-- Outgoing PAYMENT_STATUS_CHANGED webhooks, enqueued in the transaction that changes the status.
CREATE TABLE webhook_deliveries (
    id               bigserial   PRIMARY KEY,
    transmission_id  uuid        NOT NULL UNIQUE,
    url              text        NOT NULL,
    payment_key      text        NOT NULL,
    body             jsonb       NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    last_status      integer,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
