-- Transmission ids in the contract's form (whtrans_…), and deliveries dropped on purpose
-- (webhooks.dropRate: recorded, never sent, never retried).

ALTER TABLE webhook_deliveries
    ALTER COLUMN transmission_id TYPE text
        USING 'whtrans_' || replace(transmission_id::text, '-', '');
ALTER TABLE webhook_deliveries ADD COLUMN dropped_at timestamptz;
