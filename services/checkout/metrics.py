"""Checkout's metrics (served on its internal port; see shared.metrics)."""

from prometheus_client import Counter

REDIRECTS = Counter(
    "checkout_redirects_total",
    "Redirects from the PG's payment window recorded, by kind (success, fail).",
    ["kind"],
)
WEBHOOKS = Counter(
    "checkout_webhooks_total",
    "Webhooks from the PG, by outcome: accepted (new, announced), duplicate (a transmission "
    "received before), refused (malformed or of an unknown shape).",
    ["outcome"],
)
