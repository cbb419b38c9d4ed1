-- Webhooks received from the PG, each transmission once: a replay (the PG's retry of a delivery
-- we already took, or a copy) is answered 2xx and changes nothing. The body is not kept: nothing
-- in it is trusted, approval asks the PG about the payment it names.
CREATE TABLE webhooks (
    transmission_id text        PRIMARY KEY,
    event_type      text        NOT NULL,
    payment_key     text,
    order_id        text,
    retried_count   integer     NOT NULL DEFAULT 0,
    event_id        uuid        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_received_at ON webhooks USING brin (received_at);
