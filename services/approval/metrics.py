"""The approval worker's metrics (served on METRICS_PORT when set; see shared.metrics)."""

from prometheus_client import Counter, Gauge, Histogram

ATTEMPT_OUTCOMES = Counter(
    "approval_attempt_outcomes_total",
    "Payment attempts settled, by final state (APPROVED, DECLINED, REJECTED) and reason.",
    ["state", "reason"],
)
CONFIRM_SECONDS = Histogram(
    "approval_pg_confirm_seconds",
    "Duration of confirm calls to the PG, by classified result (approved, declined, unknown).",
    ["result"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
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
