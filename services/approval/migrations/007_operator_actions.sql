-- What operators did from the console (services/ops): who, when, what, to which target, and
-- how it ended. Written with the action it records where the action is a database change (a
-- refund retried), right after it where it is not (a dead letter replayed on the broker).
CREATE TABLE operator_actions (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    operator    text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('refund.retry', 'dead-letter.replay')),
    target      text        NOT NULL,
    result      text        NOT NULL CHECK (result IN ('done', 'refused', 'failed')),
    detail      text        NOT NULL DEFAULT '',
    client_ip   text
);
CREATE INDEX operator_actions_at ON operator_actions (at);
