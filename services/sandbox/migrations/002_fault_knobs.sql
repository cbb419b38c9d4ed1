-- Fault knobs per endpoint, kept as the JSON of GET /sandbox/faults (the domain checks it), and
-- the merchant's webhook URL, registered at run time (PUT /sandbox/webhook) or from the
-- environment at start.

ALTER TABLE faults ADD COLUMN knobs jsonb NOT NULL DEFAULT '{}';
UPDATE faults SET knobs = jsonb_build_object(
    'clockScale', clock_scale,
    'confirm', jsonb_build_object(
        'latencyMs', confirm_latency_ms,
        'errorRate', error_rate,
        'errorCode', error_code,
        'dropResponseRate', drop_response_rate));
ALTER TABLE faults
    DROP COLUMN confirm_latency_ms,
    DROP COLUMN drop_response_rate,
    DROP COLUMN error_rate,
    DROP COLUMN error_code,
    DROP COLUMN clock_scale;

CREATE TABLE webhook_endpoint (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    url text
);
INSERT INTO webhook_endpoint (id) VALUES (true);
