-- An explicit row version for optimistic concurrency, kept by shared/migrations'
-- bump_row_version(): every update of a row adds one.
ALTER TABLE order_intents ADD COLUMN version bigint NOT NULL DEFAULT 0;
CREATE TRIGGER order_intents_version BEFORE UPDATE ON order_intents
    FOR EACH ROW EXECUTE FUNCTION bump_row_version();
