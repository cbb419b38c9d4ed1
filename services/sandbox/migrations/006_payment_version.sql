-- An explicit row version for optimistic concurrency, kept by shared/migrations'
-- bump_row_version(): every update of a row adds one.
ALTER TABLE payments ADD COLUMN version bigint NOT NULL DEFAULT 0;
CREATE TRIGGER payments_version BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION bump_row_version();
