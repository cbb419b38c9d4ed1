"""The sandbox PG's metrics (served on its internal port; see shared.metrics)."""

from prometheus_client import Counter

CONFIRMS = Counter(
    "sandbox_confirms_total",
    "Confirm calls the sandbox answered, by HTTP status and whether the answer was dropped on "
    "purpose (a fault knob: the money moved, the caller saw a timeout).",
    ["status", "dropped"],
)
