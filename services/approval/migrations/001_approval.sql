-- What approval knows of each order: a projection of OrderPlaced / OrderExpired / OrderCanceled.
-- A row may be a tombstone (amount NULL): an expiry or cancellation seen before its OrderPlaced,
-- kept so that the late OrderPlaced cannot make the order payable again.
CREATE TABLE order_intents (
    order_id      text        PRIMARY KEY,
    amount        bigint      CHECK (amount > 0),
    currency      text,
    customer_key  text,
    expires_at    timestamptz,
    status        text        NOT NULL
                  CHECK (status IN ('PAYABLE', 'EXPIRED', 'CANCELED', 'PAID')),
    paid_by       text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'PAYABLE' OR amount IS NOT NULL),
    CHECK ((status = 'PAID') = (paid_by IS NOT NULL))
);

-- One row per paymentKey the PG authenticated. See services/approval/domain.py for the states.
CREATE TABLE payment_attempts (
    payment_key       text        PRIMARY KEY,
    order_id          text        NOT NULL,
    presented_amount  bigint      NOT NULL,
    expected_amount   bigint,
    payment_type      text        NOT NULL,
    authenticated_at  timestamptz NOT NULL,
    client_ip         text,
    user_agent        text,
    state             text        NOT NULL CHECK (state IN (
                          'RECEIVED', 'AWAITING_ORDER', 'VERIFIED', 'CONFIRMING', 'UNKNOWN',
                          'APPROVED', 'DECLINED', 'REJECTED')),
    reason            text,
    pg_code           text,
    pg_message        text,
    idempotency_key   text        UNIQUE,
    method            text,
    approved_at       timestamptz,
    lease_owner       text,
    lease_until       timestamptz,
    tries             integer     NOT NULL DEFAULT 0,
    next_check_at     timestamptz,
    event_id          uuid        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- The PG is called only once the key is stored, and only with the stored amount.
    CHECK (state NOT IN ('CONFIRMING', 'UNKNOWN', 'APPROVED', 'DECLINED')
           OR (idempotency_key IS NOT NULL AND expected_amount IS NOT NULL)),
    CHECK (state <> 'APPROVED' OR presented_amount = expected_amount)
);

-- At most one attempt per order may hold it: two workers racing cannot both pass verification.
CREATE UNIQUE INDEX payment_attempts_one_live_per_order ON payment_attempts (order_id)
    WHERE state IN ('VERIFIED', 'CONFIRMING', 'UNKNOWN', 'APPROVED');
CREATE INDEX payment_attempts_due ON payment_attempts (next_check_at)
    WHERE state IN ('VERIFIED', 'CONFIRMING', 'UNKNOWN');
CREATE INDEX payment_attempts_awaiting ON payment_attempts (order_id)
    WHERE state = 'AWAITING_ORDER';

-- RefundRequested → a PG cancel, idempotent by refund_id.
CREATE TABLE refunds (
    refund_id        text        PRIMARY KEY,
    order_id         text        NOT NULL,
    payment_key      text        NOT NULL,
    amount           bigint      CHECK (amount > 0),
    reason           text        NOT NULL,
    state            text        NOT NULL
                     CHECK (state IN ('REQUESTED', 'CANCELING', 'UNKNOWN', 'SUCCEEDED', 'FAILED')),
    idempotency_key  text        NOT NULL UNIQUE,
    refunded_amount  bigint,
    balance_amount   bigint,
    pg_code          text,
    pg_message       text,
    lease_owner      text,
    lease_until      timestamptz,
    tries            integer     NOT NULL DEFAULT 0,
    next_check_at    timestamptz,
    event_id         uuid        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_due ON refunds (next_check_at)
    WHERE state IN ('REQUESTED', 'CANCELING', 'UNKNOWN');
