"""The approval worker's metrics (served on its internal port; see shared.metrics)."""

from prometheus_client import Counter, Gauge, Histogram

ATTEMPT_OUTCOMES = Counter(
    "approval_attempt_outcomes_total",
    "Payment attempts settled, by final state (APPROVED, DECLINED, REJECTED) and reason.",
    ["state", "reason"],
)
OLDEST_UNSETTLED_SECONDS = Gauge(
    "approval_oldest_unsettled_authentication_seconds",
    "Age of the oldest authentication that is neither approved nor refused (0 when none).",
)
SECURITY_EVENTS = Counter(
    "approval_security_events_total",
    "Tampering and forgery attempts refused (amount mismatch, foreign or made-up paymentKey, "
    "replayed redirect of a paid order), by kind.",
    ["kind"],
)
LATE_APPROVALS = Counter(
    "approval_late_approvals_total",
    "Approvals the PG reported for attempts we had settled otherwise (declined or refused): "
    "recorded and announced, never dropped.",
)
APPROVALS_DISAGREEING = Counter(
    "approval_approvals_disagreeing_total",
    "Approvals the PG made for another amount than the order stored (refunded by the order).",
)
PG_CALL_SECONDS = Histogram(
    "approval_pg_call_seconds",
    "Duration of calls to the PG, by endpoint and outcome (ok, declined, not_found, or the "
    "error class of an unclear answer).",
    ["endpoint", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PG_ERRORS = Counter(
    "approval_pg_errors_total",
    "Answers of the PG that were not a clear result, by endpoint, error class and code.",
    ["endpoint", "error_class", "code"],
)
PG_CONFIGURATION_ERRORS = Counter(
    "approval_pg_configuration_errors_total",
    "The PG refused a call for our own configuration (keys, terminal, registration): an "
    "operator must act; the payments involved are held, not declined.",
    ["endpoint", "code"],
)
ATTEMPTS_STUCK = Gauge(
    "approval_attempts_stuck",
    "Attempts the PG has not settled although its confirm window closed (still asked, with "
    "backoff, until it does).",
)
REFUNDS_BY_STATE = Gauge(
    "approval_refunds",
    "Refunds not yet succeeded, by state (REQUESTED, CANCELING, UNKNOWN, FAILED).",
    ["state"],
)
RECONCILIATION_UNRESOLVED = Gauge(
    "approval_reconciliation_unresolved",
    "Discrepancies with the PG's transactions that the last reconciliation could not heal, by "
    "kind (a person must look: make reconcile prints the report).",
    ["kind"],
)
RECONCILIATION_DISCREPANCIES = Counter(
    "approval_reconciliation_discrepancies_total",
    "Discrepancies found by reconciliation, by kind and outcome (healed, unresolved).",
    ["kind", "outcome"],
)
RECONCILIATION_LAST_RUN = Gauge(
    "approval_reconciliation_last_run_timestamp_seconds",
    "When a reconciliation last completed (Unix time).",
)
PG_DECLINES = Counter(
    "approval_pg_declines_total",
    "Definitive declines from the PG, by endpoint and the PG's code (a bounded set: the codes "
    "of the PG's contract).",
    ["endpoint", "code"],
)
CONFIRM_WINDOW_REMAINING_SECONDS = Histogram(
    "approval_confirm_window_remaining_seconds",
    "Seconds left in the PG's confirm window when a confirm was sent (near zero: payments "
    "reach the PG late and risk expiring).",
    buckets=(5, 15, 30, 60, 120, 240, 360, 480, 540, 570, 600),
)
ATTEMPTS_UNKNOWN = Gauge(
    "approval_attempts_unknown",
    "Attempts whose outcome at the PG is not known yet (state UNKNOWN), asked again with backoff.",
)
OLDEST_UNKNOWN_SECONDS = Gauge(
    "approval_oldest_unknown_attempt_seconds",
    "Age (since authentication) of the oldest attempt in state UNKNOWN (0 when none).",
)
SETTLEMENT_SECONDS = Histogram(
    "approval_settlement_seconds",
    "From the buyer's authentication (checkout's stamp of the success redirect, on the "
    "database's clock) to the attempt's settlement, by final state (APPROVED, DECLINED): the "
    "approval latency the buyer waits for.",
    ["state"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 600),
)
