"""What a Toss Payments webhook must look like (pg-contract.md, "Webhooks"), and what receiving
one announces. Pure.

A webhook carries no signature and anyone can post one, so nothing in it is believed: it is only
taken as a hint of *which* payment to ask the PG about. Checkout records each transmission once
(``tosspayments-webhook-transmission-id``) and announces :class:`PgReported`; approval, which
holds the secret key, fetches the payment and acts on the PG's answer alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from shared.events import PgReported

TRANSMISSION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
ORDER_ID = re.compile(r"[A-Za-z0-9_-]{6,64}")
MAX_PAYMENT_KEY = 200
MAX_BODY = 64 * 1024
PAYMENT_STATUS_CHANGED = "PAYMENT_STATUS_CHANGED"
CANCEL_STATUS_CHANGED = "CANCEL_STATUS_CHANGED"
DEPOSIT_CALLBACK = "DEPOSIT_CALLBACK"  # no eventType of its own: recognized by its fields
EVENT_TYPES = frozenset({PAYMENT_STATUS_CHANGED, CANCEL_STATUS_CHANGED})


class WebhookRefused(ValueError):
    """A webhook we cannot take: ``code`` for the problem answer (always a 4xx)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Notice:
    """A webhook as far as it is worth anything: which payment to ask the PG about."""

    transmission_id: str
    event_type: str
    payment_key: str | None
    order_id: str | None
    retried_count: int

    def reported(self) -> PgReported:
        return PgReported(
            correlation_id=self.order_id or "unknown",
            transmission_id=self.transmission_id,
            event_type=self.event_type,
            payment_key=self.payment_key,
            order_id=self.order_id,
        )


def parse_webhook(transmission_id: str | None, retried_count: str | None, body: bytes) -> Notice:
    """The notice in a webhook, or :class:`WebhookRefused` saying what is wrong with it."""
    if transmission_id is None or not TRANSMISSION_ID.fullmatch(transmission_id):
        raise WebhookRefused(
            400,
            "INVALID_TRANSMISSION_ID",
            "tosspayments-webhook-transmission-id is missing or malformed.",
        )
    raw = _json_object(body)
    event_type, payment_key, order_id = _subject(raw)
    return Notice(transmission_id, event_type, payment_key, order_id, _count(retried_count))


def _json_object(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY:
        raise WebhookRefused(413, "PAYLOAD_TOO_LARGE", "The webhook body is larger than 64 KiB.")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookRefused(400, "MALFORMED_WEBHOOK", "The body is not JSON.") from None
    if not isinstance(raw, dict):
        raise WebhookRefused(400, "MALFORMED_WEBHOOK", "The body is not a JSON object.")
    return raw


def _subject(raw: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(event type, paymentKey, orderId) of a webhook of a known shape."""
    event_type = raw.get("eventType")
    if event_type is None and {"secret", "status", "orderId"} <= raw.keys():
        return DEPOSIT_CALLBACK, None, _order_id(raw.get("orderId"), required=True)
    if event_type not in EVENT_TYPES:
        raise WebhookRefused(422, "UNKNOWN_WEBHOOK", "The webhook is of no known type.")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise WebhookRefused(422, "UNKNOWN_WEBHOOK", "The webhook has no data object.")
    payment_key = _payment_key(data.get("paymentKey"))
    order_id = _order_id(data.get("orderId"), required=payment_key is None)
    return str(event_type), payment_key, order_id


def _payment_key(value: Any) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_PAYMENT_KEY
        or not value.isprintable()
    ):
        raise WebhookRefused(422, "INVALID_PAYMENT_KEY", "data.paymentKey is malformed.")
    return value


def _order_id(value: Any, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not ORDER_ID.fullmatch(value):
        raise WebhookRefused(
            422, "INVALID_ORDER_ID", "The webhook names no valid payment or order."
        )
    return value


def _count(text: str | None) -> int:
    return int(text) if text is not None and text.isdigit() and len(text) < 6 else 0
