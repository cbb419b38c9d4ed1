-- Retention purges (shared/retention.py) find old rows by time: BRIN indexes cost next to
-- nothing to keep up on append-mostly tables whose rows arrive in time order.
CREATE INDEX outbox_created_brin ON outbox USING brin (created_at);
CREATE INDEX inbox_processed_brin ON inbox USING brin (processed_at);
