-- A payment still being settled holds its order: the expiry sweeper leaves the order alone while
-- any authentication of it has no outcome yet (PaymentAuthenticated opens a hold, the attempt's
-- PaymentApproved or PaymentRejected settles it, in whichever order they arrive). Otherwise an
-- order could expire, and give back its reservations, while the PG is still deciding.
CREATE TABLE payment_holds (
    payment_key  text        PRIMARY KEY,
    order_id     text        NOT NULL REFERENCES orders (order_id),
    settled_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_holds_open ON payment_holds (order_id) WHERE settled_at IS NULL;
