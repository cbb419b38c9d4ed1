-- Every reconciliation of a day against the PG's transactions, kept: its report (counts and
-- the discrepancies no rule could heal). The daily run claims its day once (trigger 'daily'),
-- so of several workers exactly one runs it; runs by hand (trigger 'manual') add rows.
CREATE TABLE reconciliation_runs (
    id           bigserial   PRIMARY KEY,
    day          date        NOT NULL,
    trigger      text        NOT NULL CHECK (trigger IN ('daily', 'manual')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    unresolved   integer,
    report       jsonb
);
CREATE UNIQUE INDEX reconciliation_runs_daily_once ON reconciliation_runs (day)
    WHERE trigger = 'daily';
CREATE INDEX reconciliation_runs_by_day ON reconciliation_runs (day, started_at);
