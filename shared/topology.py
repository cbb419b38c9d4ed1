"""Who consumes what and who publishes what: the deployment's queues, and each role's share of
the broker (its RabbitMQ user may read only its own queues and publish only its own events;
see :mod:`shared.provision`)."""

from shared.events import (
    Event,
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
# Checkout's projection of placed orders: a redirect for an order never placed is not announced.
CHECKOUT_PLACED_ORDERS = Subscription("checkout.placed-orders", (OrderPlaced,))
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
    CHECKOUT_PLACED_ORDERS,
)

# Each role's queues and events; a role's broker user is granted exactly these.
CONSUMES: dict[str, tuple[Subscription, ...]] = {
    "order": (ORDER_PAYMENT_RESULTS,),
    "checkout": (CHECKOUT_PLACED_ORDERS,),
    "approval": (APPROVAL_ORDER_INTENTS, APPROVAL_PAYMENTS, APPROVAL_REFUNDS, APPROVAL_PG_REPORTS),
}
PUBLISHES: dict[str, tuple[type[Event], ...]] = {
    "order": (OrderPlaced, OrderExpired, OrderCanceled, RefundRequested),
    "checkout": (PaymentAuthenticated, PaymentAuthenticationFailed, PgReported),
    "approval": (PaymentApproved, PaymentRejected, PaymentRefunded, RefundFailed),
}


# Who may read dead-letter queues and send their messages back to the events exchange: the
# operator console (services/ops), for every subscription; it consumes and publishes nothing else.
REPLAYS: dict[str, tuple[Subscription, ...]] = {"ops": SUBSCRIPTIONS}


def topology(exchange: str, prefix: str = "", delivery_limit: int | None = None) -> Topology:
    return Topology(
        exchange=exchange,
        prefix=prefix,
        subscriptions=SUBSCRIPTIONS,
        delivery_limit=delivery_limit,
    )
