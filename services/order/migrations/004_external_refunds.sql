-- A cancel made at the PG without us (the merchant console) is a refund of its own kind: the
-- order follows it like any refund (status, points in proportion, coupon on a full refund).
ALTER TABLE refunds DROP CONSTRAINT refunds_kind_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_kind_check
    CHECK (kind IN ('CUSTOMER', 'AUTOMATIC', 'EXTERNAL'));
