"""Event contracts: every event survives the wire; anything else is UndecodableEvent."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest

from shared.events import (
    ENVELOPE_FIELDS,
    EVENT_TYPES,
    Event,
    OrderPlaced,
    UndecodableEvent,
    decode,
    utcnow,
)

NOW = utcnow()

# Payload values by field name; every event type's required payload fields are among them.
SAMPLE_VALUES: dict[str, Any] = {
    "order_id": "order-1",
    "customer_key": "customer-1",
    "order_name": "Coffee x 2",
    "amount": 9000,
    "expires_at": NOW + timedelta(minutes=10),
    "reason": "PG_DECLINED",
    "payment_key": "pay-1",
    "refund_id": "refund-1",
    "payment_type": "NORMAL",
    "received_at": NOW,
    "code": "REJECT_CARD_COMPANY",
    "message": "declined",
    "approved_at": NOW,
    "refunded_amount": 1000,
    "balance_amount": 8000,
    "fully_refunded": False,
    "transmission_id": "whtrans_1",
    "event_type": "PAYMENT_STATUS_CHANGED",
}


def sample(event_type: type[Event]) -> Event:
    payload = {
        name: SAMPLE_VALUES[name]
        for name, info in event_type.model_fields.items()
        if info.is_required() and name != "correlation_id"
    }
    return event_type(correlation_id="order-1", causation_id=uuid.uuid4(), **payload)


def wire(event: Event, **changes: Any) -> bytes:
    raw = orjson.loads(event.to_bytes())
    raw.update(changes)
    return orjson.dumps(raw)


@pytest.mark.parametrize("event_type", EVENT_TYPES.values(), ids=list(EVENT_TYPES))
def test_every_event_round_trips_through_the_wire(event_type: type[Event]) -> None:
    event = sample(event_type)
    decoded = decode(event.to_bytes())
    assert decoded == event
    assert type(decoded) is event_type


@pytest.mark.parametrize("event_type", EVENT_TYPES.values(), ids=list(EVENT_TYPES))
def test_every_event_is_camel_case_on_the_wire_with_the_whole_envelope(
    event_type: type[Event],
) -> None:
    raw = orjson.loads(sample(event_type).to_bytes())
    assert set(ENVELOPE_FIELDS) <= set(raw)
    assert raw["type"] == event_type.__name__
    assert all("_" not in key for key in raw)


def test_event_types_are_keyed_by_their_type_and_have_distinct_routing_keys() -> None:
    assert all(cls.__name__ == name for name, cls in EVENT_TYPES.items())
    routing_keys = [cls.routing_key for cls in EVENT_TYPES.values()]
    assert len(set(routing_keys)) == len(routing_keys)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'["OrderPlaced"]', "not a JSON object"),
        (b'"OrderPlaced"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'{"type": "OrderShipped"}', "unknown event type"),
        (b'{"eventId": "1"}', "unknown event type"),
        (b'{"type": ["OrderPlaced"]}', "unknown event type"),
    ],
)
def test_decode_rejects_what_is_not_an_event_object(body: bytes, reason: str) -> None:
    with pytest.raises(UndecodableEvent, match=reason):
        decode(body)


@pytest.mark.parametrize("field", ENVELOPE_FIELDS[:1] + ENVELOPE_FIELDS[2:])
def test_decode_rejects_an_event_without_an_envelope_field(field: str) -> None:
    raw = orjson.loads(sample(OrderPlaced).to_bytes())
    del raw[field]
    with pytest.raises(UndecodableEvent, match=field):
        decode(orjson.dumps(raw))


def test_decode_rejects_an_event_without_a_payload_field() -> None:
    raw = orjson.loads(sample(OrderPlaced).to_bytes())
    del raw["amount"]
    with pytest.raises(UndecodableEvent, match="amount"):
        decode(orjson.dumps(raw))


def test_decode_rejects_extra_fields() -> None:
    with pytest.raises(UndecodableEvent, match="extra"):
        decode(wire(sample(OrderPlaced), discount=1000))


def test_decode_rejects_snake_case_field_names() -> None:
    raw = orjson.loads(sample(OrderPlaced).to_bytes())
    raw["order_id"] = raw.pop("orderId")
    with pytest.raises(UndecodableEvent):
        decode(orjson.dumps(raw))


@pytest.mark.parametrize(
    "changes",
    [
        {"eventId": "not-a-uuid"},
        {"occurredAt": "yesterday"},
        {"amount": 0},
        {"currency": "USD"},
        {"correlationId": None},
    ],
)
def test_decode_rejects_invalid_values(changes: dict[str, Any]) -> None:
    with pytest.raises(UndecodableEvent, match="invalid OrderPlaced"):
        decode(wire(sample(OrderPlaced), **changes))


def test_the_reason_does_not_repeat_the_payload() -> None:
    with pytest.raises(UndecodableEvent) as caught:
        decode(wire(sample(OrderPlaced), amount=-5, customerKey="secret-customer"))
    assert "secret-customer" not in str(caught.value)
