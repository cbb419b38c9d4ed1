-- A row handed straight to its writer's relay (shared.outbox.Handoff) is left to the pollers only
-- from not_before on: the relay that has it in memory publishes it first, without a NOTIFY.
ALTER TABLE outbox ADD COLUMN not_before timestamptz;
