-- GET /v1/transactions: one row per approval and per cancel, written in the transaction that
-- approves or cancels, never changed afterwards; listed in id order.

CREATE TABLE transactions (
    id              bigserial   PRIMARY KEY,
    transaction_key text        NOT NULL UNIQUE,
    payment_key     text        NOT NULL REFERENCES payments (payment_key),
    order_id        text        NOT NULL,
    customer_key    text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('DONE', 'CANCELED', 'PARTIAL_CANCELED')),
    amount          bigint      NOT NULL CHECK (amount > 0),
    transaction_at  timestamptz NOT NULL
);
CREATE INDEX transactions_by_time ON transactions (transaction_at);

CREATE FUNCTION transactions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transactions are append-only';
END
$$;
CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION transactions_append_only();

-- The approvals and cancels made before this table existed. An approval's own key was
-- overwritten by a later cancel's: such approvals get a key derived from the payment.
INSERT INTO transactions
    (transaction_key, payment_key, order_id, customer_key, status, amount, transaction_at)
SELECT transaction_key, payment_key, order_id, customer_key, status, amount, transaction_at
FROM (
    SELECT CASE WHEN jsonb_array_length(cancels) = 0 THEN last_transaction_key
                ELSE 'txrd_' || md5('approval:' || payment_key) END AS transaction_key,
           payment_key, order_id, customer_key, 'DONE' AS status, total_amount AS amount,
           approved_at AS transaction_at, 0::bigint AS seq
    FROM payments WHERE approved_at IS NOT NULL
    UNION ALL
    SELECT entry ->> 'transactionKey', payment_key, order_id, customer_key,
           CASE WHEN (entry ->> 'refundableAmount')::bigint = 0 THEN 'CANCELED'
                ELSE 'PARTIAL_CANCELED' END,
           (entry ->> 'cancelAmount')::bigint, (entry ->> 'canceledAt')::timestamptz, seq
    FROM payments, jsonb_array_elements(cancels) WITH ORDINALITY AS e (entry, seq)
) AS made
ORDER BY transaction_at, seq;
