-- Checkout's projection of the orders the order service placed (OrderPlaced). A success redirect
-- is announced only for one of these: a redirect naming any other orderId costs no PG call.
CREATE TABLE placed_orders (
    order_id  text        PRIMARY KEY,
    amount    bigint      NOT NULL CHECK (amount > 0),
    currency  text        NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now()
);

-- A success redirect whose order is not (yet) known waits unannounced: event_id stays null
-- until its OrderPlaced arrives, and for an order never placed, for good.
ALTER TABLE success_redirects ALTER COLUMN event_id DROP NOT NULL;
CREATE INDEX success_redirects_waiting ON success_redirects (order_id) WHERE event_id IS NULL;

-- A fail redirect for an order never placed is recorded (for the audit trail), not announced.
ALTER TABLE fail_redirects DROP CONSTRAINT fail_redirects_announced_with_order;
ALTER TABLE fail_redirects ADD CONSTRAINT fail_redirects_announced_with_order
    CHECK (event_id IS NULL OR order_id IS NOT NULL);
