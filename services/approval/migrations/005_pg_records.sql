-- Cancels the PG made that we did not ask for (the merchant console) are recorded beside ours,
-- each once (refund_id 'pg_' + the PG's transaction key), and every refund keeps the PG's own
-- time of the cancel: reconciliation compares our books with the PG's day by the PG's clock.
ALTER TABLE refunds ADD COLUMN external boolean NOT NULL DEFAULT false;
ALTER TABLE refunds ADD COLUMN canceled_at timestamptz;
CREATE INDEX refunds_by_payment ON refunds (payment_key);
CREATE INDEX refunds_canceled_at ON refunds (canceled_at) WHERE canceled_at IS NOT NULL;
CREATE INDEX payment_attempts_approved_at ON payment_attempts (approved_at)
    WHERE state = 'APPROVED';
