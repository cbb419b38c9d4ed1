-- Only the PG settles an attempt (services/approval/domain.py): it may report an approval for an
-- attempt we had settled otherwise (a late completion, a confirm made outside our flow) or for an
-- amount that differs from the order's (refunded by the order), so an approved attempt records
-- what the PG approved, and no longer holds its order: the intent's PAID status does that.
ALTER TABLE payment_attempts ADD COLUMN approved_amount bigint;
-- The confirm key's generation: a new one only after the PG refused us for our own configuration.
ALTER TABLE payment_attempts ADD COLUMN generation integer NOT NULL DEFAULT 0;
UPDATE payment_attempts SET approved_amount = expected_amount WHERE state = 'APPROVED';

ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_check;
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_check1;
-- The PG is called only once the key is stored, and only with the stored amount.
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_key_before_the_pg
    CHECK (state NOT IN ('CONFIRMING', 'UNKNOWN')
           OR (idempotency_key IS NOT NULL AND expected_amount IS NOT NULL));
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_approved_amount
    CHECK (state <> 'APPROVED' OR approved_amount IS NOT NULL);

-- An attempt holds its order while it could still turn out approved: no second payment of the
-- order is confirmed meanwhile.
DROP INDEX payment_attempts_one_live_per_order;
CREATE UNIQUE INDEX payment_attempts_one_live_per_order ON payment_attempts (order_id)
    WHERE state IN ('VERIFIED', 'CONFIRMING', 'UNKNOWN');

-- The cancel key's generation: an operator's retry of a refused refund is a new request.
ALTER TABLE refunds ADD COLUMN generation integer NOT NULL DEFAULT 0;
CREATE INDEX refunds_by_state ON refunds (state, updated_at) WHERE state IN ('FAILED', 'UNKNOWN');
