"""Who consumes what: the deployment's queues. Every role declares all of them at start."""

from shared.events import (
    OrderCanceled,
    OrderExpired,
    OrderPlaced,
    PaymentApproved,
    PaymentAuthenticated,
    PaymentAuthenticationFailed,
    PaymentRefunded,
    PaymentRejected,
    PgReported,
    RefundFailed,
    RefundRequested,
)
from shared.messaging import Subscription, Topology

APPROVAL_ORDER_INTENTS = Subscription(
    "approval.order-intents", (OrderPlaced, OrderExpired, OrderCanceled)
)
APPROVAL_PAYMENTS = Subscription("approval.payments", (PaymentAuthenticated,))
APPROVAL_REFUNDS = Subscription("approval.refunds", (RefundRequested,))
# What the PG reported by webhook: approval, which holds the secret key, asks the PG about it.
APPROVAL_PG_REPORTS = Subscription("approval.pg-reports", (PgReported,))
ORDER_PAYMENT_RESULTS = Subscription(
    "order.payment-results",
    (
        PaymentAuthenticated,
        PaymentAuthenticationFailed,
        PaymentApproved,
        PaymentRejected,
        PaymentRefunded,
        RefundFailed,
    ),
)

SUBSCRIPTIONS = (
    APPROVAL_ORDER_INTENTS,
    APPROVAL_PAYMENTS,
    APPROVAL_REFUNDS,
    APPROVAL_PG_REPORTS,
    ORDER_PAYMENT_RESULTS,
)


def topology(exchange: str, prefix: str = "", delivery_limit: int | None = None) -> Topology:
    return Topology(
        exchange=exchange,
        prefix=prefix,
        subscriptions=SUBSCRIPTIONS,
        delivery_limit=delivery_limit,
    )
