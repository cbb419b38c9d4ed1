-- The W3C trace context of the operation that wrote an event (shared/tracing.py): the relay
-- sends it on in the message's headers, so the consumer's span joins the writer's trace.
ALTER TABLE outbox ADD COLUMN traceparent text, ADD COLUMN tracestate text;
