"""The order service's metrics (served on its internal port; see shared.metrics)."""

from prometheus_client import Counter

ORDERS_PLACED = Counter("order_orders_placed_total", "Orders placed (the stored intent).")
PAYMENT_EVENTS = Counter(
    "order_payment_events_total",
    "Payment results the order service applied, by event type (PaymentApproved, "
    "PaymentRejected, PaymentRefunded, …); duplicates are counted by the inbox instead.",
    ["event"],
)
