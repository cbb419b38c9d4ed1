-- An explicit row version for optimistic concurrency, kept by shared/migrations'
-- bump_row_version(): every update of a row adds one.
ALTER TABLE orders ADD COLUMN version bigint NOT NULL DEFAULT 0;
CREATE TRIGGER orders_version BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION bump_row_version();
