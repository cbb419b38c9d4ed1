"""Event contracts: one versioned pydantic model per event, each with its routing key.

On the wire an event is one JSON object: the envelope fields (``eventId``, ``type``, ``version``,
``occurredAt``, ``correlationId`` = the orderId, ``causationId``) beside the payload fields, all in
camelCase. The AMQP ``message_id`` is the ``eventId``. Consumers call :func:`decode`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """The envelope. Subclasses add the payload and set ``routing_key`` and ``type``."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )
    routing_key: ClassVar[str]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: str = Field(description="The orderId the event is about.")
    causation_id: uuid.UUID | None = Field(
        default=None, description="The eventId of the event that caused this one, if any."
    )

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", by_alias=True))


class OrderPlaced(Event):
    """The buyer's intent, stored before the payment window opens."""

    routing_key: ClassVar[str] = "order.placed"
    type: Literal["OrderPlaced"] = "OrderPlaced"
    order_id: str
    customer_key: str
    order_name: str
    amount: int = Field(gt=0)
    currency: Literal["KRW"] = "KRW"
    expires_at: datetime


class OrderExpired(Event):
    routing_key: ClassVar[str] = "order.expired"
    type: Literal["OrderExpired"] = "OrderExpired"
    order_id: str


class OrderCanceled(Event):
    routing_key: ClassVar[str] = "order.canceled"
    type: Literal["OrderCanceled"] = "OrderCanceled"
    order_id: str
    reason: str


class RefundRequested(Event):
    """The order asks for money back: a buyer's refund, or an approval it can no longer honour."""

    routing_key: ClassVar[str] = "order.refund_requested"
    type: Literal["RefundRequested"] = "RefundRequested"
    order_id: str
    payment_key: str
    refund_id: str = Field(description="Unique per refund; the PG idempotency key derives from it.")
    amount: int | None = Field(default=None, gt=0, description="None refunds the whole balance.")
    reason: str


class PaymentAuthenticated(Event):
    """The PG sent the buyer back to the success URL. Every field is as the browser presented it."""

    routing_key: ClassVar[str] = "payment.authenticated"
    type: Literal["PaymentAuthenticated"] = "PaymentAuthenticated"
    order_id: str
    payment_key: str
    amount: int
    payment_type: str
    received_at: datetime
    client_ip: str | None = None
    user_agent: str | None = None


class PaymentAuthenticationFailed(Event):
    routing_key: ClassVar[str] = "payment.authentication_failed"
    type: Literal["PaymentAuthenticationFailed"] = "PaymentAuthenticationFailed"
    order_id: str
    code: str
    message: str


class PaymentApproved(Event):
    routing_key: ClassVar[str] = "payment.approved"
    type: Literal["PaymentApproved"] = "PaymentApproved"
    order_id: str
    payment_key: str
    amount: int
    method: str | None = None
    approved_at: datetime
    authenticated_at: datetime | None = Field(
        default=None, description="When checkout received the redirect (for latency figures)."
    )


class PaymentRejected(Event):
    """Not approved: ``reason`` is ours (AMOUNT_MISMATCH, PG_DECLINED, …), ``pg_code`` the PG's."""

    routing_key: ClassVar[str] = "payment.rejected"
    type: Literal["PaymentRejected"] = "PaymentRejected"
    order_id: str
    payment_key: str
    reason: str
    message: str
    pg_code: str | None = None


class PaymentRefunded(Event):
    """The PG gave money back: a refund we asked for, or a cancel made elsewhere (the merchant
    console), whose ``refund_id`` is then derived from the PG's transaction key. The order
    follows ``balance_amount``, what the PG says is left of the payment."""

    routing_key: ClassVar[str] = "payment.refunded"
    type: Literal["PaymentRefunded"] = "PaymentRefunded"
    order_id: str
    payment_key: str
    refund_id: str
    refunded_amount: int
    balance_amount: int
    fully_refunded: bool
    reason: str | None = Field(default=None, description="The cancel's reason, as the PG has it.")


class RefundFailed(Event):
    routing_key: ClassVar[str] = "payment.refund_failed"
    type: Literal["RefundFailed"] = "RefundFailed"
    order_id: str
    payment_key: str
    refund_id: str
    code: str
    message: str


class PgReported(Event):
    """The PG told us something about a payment (a webhook). Nothing in it is trusted: it only
    names the payment, which approval then asks the PG about with the secret key."""

    routing_key: ClassVar[str] = "pg.reported"
    type: Literal["PgReported"] = "PgReported"
    transmission_id: str
    event_type: str = Field(description="PAYMENT_STATUS_CHANGED, CANCEL_STATUS_CHANGED, …")
    payment_key: str | None = None
    order_id: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        OrderPlaced,
        OrderExpired,
        OrderCanceled,
        RefundRequested,
        PaymentAuthenticated,
        PaymentAuthenticationFailed,
        PaymentApproved,
        PaymentRejected,
        PaymentRefunded,
        RefundFailed,
        PgReported,
    )
}


class UndecodableEvent(ValueError):
    """The bytes are not a known, valid event. Never retried: the message is dead-lettered."""


# Every producer writes the whole envelope (``to_bytes``). Several of these fields have defaults
# for building events in code; a body without them must not get a fresh ``eventId`` (that would
# defeat the inbox) or an invented ``occurredAt``.
ENVELOPE_FIELDS = ("eventId", "type", "version", "occurredAt", "correlationId", "causationId")


def decode(body: bytes) -> Event:
    """Parse a message body into its event model, or raise :class:`UndecodableEvent`."""
    try:
        raw: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UndecodableEvent(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise UndecodableEvent("not a JSON object")
    event_type = EVENT_TYPES.get(str(raw.get("type")))
    if event_type is None:
        raise UndecodableEvent(f"unknown event type {raw.get('type')!r}")
    missing = [name for name in ENVELOPE_FIELDS if name not in raw]
    if missing:
        raise UndecodableEvent(f"{event_type.__name__} lacks envelope fields {missing}")
    try:
        # camelCase only: a snake_case key on the wire is an unknown (extra) field.
        return event_type.model_validate(raw, by_alias=True, by_name=False)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)[:3]
        raise UndecodableEvent(f"invalid {event_type.__name__}: {errors}") from exc
