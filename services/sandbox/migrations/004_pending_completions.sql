-- Pending completions (late completions and scripted timelines): a confirm or cancel accepted
-- but applied only at pending_due_at, by whichever sandbox process finds it due. The idempotency
-- slot of the accepted request waits for that answer (pending: never taken over as stale).
-- Scripts: per order, the timeline its payment's first confirm follows.

ALTER TABLE payments
    ADD COLUMN pending        jsonb,
    ADD COLUMN pending_due_at timestamptz,
    ADD CONSTRAINT payments_pending_has_due_at CHECK ((pending IS NULL) = (pending_due_at IS NULL));
CREATE INDEX payments_pending_due ON payments (pending_due_at) WHERE pending_due_at IS NOT NULL;

ALTER TABLE idempotent_requests ADD COLUMN pending boolean NOT NULL DEFAULT false;

CREATE TABLE scripts (
    order_id   text        PRIMARY KEY,
    script     jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_by    text,        -- the paymentKey whose first confirm followed the script
    used_at    timestamptz
);
