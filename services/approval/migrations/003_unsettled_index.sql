-- The reconciler reads the oldest unsettled authentication every round (the
-- approval_oldest_unsettled_authentication_seconds gauge): an index scan, not a table scan.
CREATE INDEX payment_attempts_unsettled ON payment_attempts (authenticated_at)
    WHERE state IN ('RECEIVED', 'AWAITING_ORDER', 'VERIFIED', 'CONFIRMING', 'UNKNOWN');
