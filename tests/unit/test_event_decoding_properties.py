"""Event decoding as properties: any body either is an event or is dead-lettered, nothing else.

``shared.events.decode`` turns any byte string into an :class:`Event` that survives another trip
over the wire, or raises :class:`UndecodableEvent`; and the consumer dead-letters whatever does
not decode (acked on the queue, published to the dead-letter exchange with the reason), never
crashing, never requeueing it and never handing it to the handler.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import aiormq
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shared.events import ENVELOPE_FIELDS, EVENT_TYPES, Event, UndecodableEvent, decode
from shared.messaging import (
    DEAD_LETTER_REASON,
    ORIGINAL_ROUTING_KEY,
    Consumer,
    Subscription,
    Topology,
)

PROPERTIES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

# Plausible payload values by field name (every required payload field of every event).
SAMPLE_VALUES: dict[str, Any] = {
    "order_id": "ord_sample000000000000000000",
    "customer_key": "cus_sample",
    "order_name": "Coffee beans and 2 more",
    "amount": 9_000,
    "expires_at": NOW + timedelta(minutes=10),
    "reason": "PG_DECLINED",
    "payment_key": "tgen_sample",
    "refund_id": "refund-1",
    "payment_type": "NORMAL",
    "received_at": NOW,
    "code": "REJECT_CARD_COMPANY",
    "message": "declined",
    "approved_at": NOW,
    "refunded_amount": 1_000,
    "balance_amount": 8_000,
    "fully_refunded": False,
    "transmission_id": "whtrans_sample",
    "event_type": "PAYMENT_STATUS_CHANGED",
}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    # Values the envelope and payload fields might take, right or nearly right.
    | st.sampled_from(["", "KRW", "USD", "OrderPlaced", "2026-01-01T12:00:00Z", "yesterday"])
    | st.uuids().map(str)
    | st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
wire_names = st.sampled_from(
    sorted(
        {
            info.alias or name
            for cls in EVENT_TYPES.values()
            for name, info in cls.model_fields.items()
        }
    )
)


def sample(event_type: type[Event]) -> dict[str, Any]:
    """A valid wire object of ``event_type``, every optional field present."""
    payload = {
        name: SAMPLE_VALUES[name]
        for name, info in event_type.model_fields.items()
        if info.is_required() and name != "correlation_id"
    }
    event = event_type(
        correlation_id=SAMPLE_VALUES["order_id"], causation_id=uuid.uuid4(), **payload
    )
    raw: dict[str, Any] = orjson.loads(event.to_bytes())
    return raw


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A real event's wire object with some fields dropped, replaced, renamed or added."""
    raw = sample(draw(st.sampled_from(list(EVENT_TYPES.values()))))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["drop", "replace", "add", "retype", "snake"]))
        key = draw(st.sampled_from(sorted(raw))) if raw else "type"
        if action == "drop":
            raw.pop(key, None)
        elif action == "replace":
            raw[key] = draw(json_values)
        elif action == "add":
            raw[draw(wire_names | st.text(max_size=12))] = draw(json_values)
        elif action == "retype":
            raw["type"] = draw(st.sampled_from(list(EVENT_TYPES)))
        else:
            raw[_snake(key)] = raw.pop(key)
    return raw


def json_bytes(value: Any) -> bytes:
    """Python's encoder: unlike orjson it writes integers beyond 64 bits, as a producer might."""
    return json.dumps(value).encode()


def _snake(name: str) -> str:
    return "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name)


def assert_decodes_or_is_refused(body: bytes) -> Event | None:
    """The contract: an event that re-encodes to an equal event, or UndecodableEvent."""
    try:
        decoded = decode(body)
    except UndecodableEvent:
        event("undecodable")
        return None
    event("decoded")
    assert isinstance(decoded, EVENT_TYPES[decoded.type])
    assert decode(decoded.to_bytes()) == decoded
    return decoded


@PROPERTIES
@given(st.binary(max_size=512))
def test_any_byte_string_decodes_or_is_undecodable(body: bytes) -> None:
    assert_decodes_or_is_refused(body)


@PROPERTIES
@given(st.dictionaries(wire_names | st.text(max_size=12), json_values, max_size=12))
def test_any_json_object_decodes_or_is_undecodable(raw: dict[str, Any]) -> None:
    assert_decodes_or_is_refused(json_bytes(raw))


@PROPERTIES
@given(json_values)
def test_any_json_document_decodes_or_is_undecodable(value: Any) -> None:
    assert_decodes_or_is_refused(json_bytes(value))


@PROPERTIES
@given(mutated_events())
def test_a_mutated_real_event_decodes_or_is_undecodable(raw: dict[str, Any]) -> None:
    event = assert_decodes_or_is_refused(json_bytes(raw))
    if event is not None:
        # What decodes carries the whole envelope as sent: nothing invented by a default.
        assert set(ENVELOPE_FIELDS) <= set(raw)
        assert str(event.event_id) == str(uuid.UUID(str(raw["eventId"])))


@pytest.mark.parametrize("event_type", EVENT_TYPES.values(), ids=list(EVENT_TYPES))
def test_an_unmutated_sample_decodes_to_its_own_type(event_type: type[Event]) -> None:
    decoded = decode(orjson.dumps(sample(event_type)))
    assert type(decoded) is event_type
    assert decode(decoded.to_bytes()) == decoded


# --- the consumer: undecodable bodies go to the dead-letter exchange ---------------------------

SUBSCRIPTION = Subscription("props.consumer", (EVENT_TYPES["OrderPlaced"],), delivery_limit=3)
TOPOLOGY = Topology("props", prefix="t.", subscriptions=(SUBSCRIPTION,))


class FakeExchange:
    """Records what is published and confirms it, as a broker with publisher confirms would."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.published: list[tuple[Any, str, bool]] = []

    async def publish(self, message: Any, routing_key: str, *, mandatory: bool = True) -> object:
        self.published.append((message, routing_key, mandatory))
        return aiormq.spec.Basic.Ack()


class FakeChannel:
    def __init__(self) -> None:
        self.exchanges: dict[str, FakeExchange] = {}

    async def get_exchange(self, name: str, *, ensure: bool = True) -> FakeExchange:
        return self.exchanges.setdefault(name, FakeExchange(name))


class FakeMessage:
    """The part of an incoming delivery the consumer touches, recording its settlement."""

    def __init__(self, body: bytes, headers: dict[str, Any] | None = None) -> None:
        self.body = body
        self.headers = headers or {}
        self.routing_key = "order.placed"
        self.message_id = "m-1"
        self.content_type = "application/json"
        self.settled: list[str] = []

    async def ack(self, multiple: bool = False) -> None:
        self.settled.append("ack")

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self.settled.append(f"nack(requeue={requeue})")

    async def reject(self, requeue: bool = False) -> None:
        self.settled.append(f"reject(requeue={requeue})")


Delivered = tuple[FakeMessage, FakeChannel, list[Event]]


def run(delivery: Coroutine[Any, Any, Delivered]) -> Delivered:
    """On a private loop: never touch the loop pytest-asyncio keeps for the session."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(delivery)
    finally:
        loop.close()


async def deliver(body: bytes, headers: dict[str, Any] | None = None) -> Delivered:
    handled: list[Event] = []

    async def handler(event: Event) -> None:
        handled.append(event)

    channel = FakeChannel()
    message = FakeMessage(body, headers)
    consumer = Consumer(channel, TOPOLOGY, SUBSCRIPTION, handler)  # type: ignore[arg-type]
    await consumer.on_message(message)  # type: ignore[arg-type]
    return message, channel, handled


def check_dead_lettered(message: FakeMessage, channel: FakeChannel, handled: list[Event]) -> None:
    assert handled == []
    assert message.settled == ["ack"]
    # Through the return exchange, keyed by the dead-letter queue's own name (a topic exchange
    # a role's broker user may publish only its own queues' names to).
    assert list(channel.exchanges) == [TOPOLOGY.return_exchange]
    [(copy, routing_key, mandatory)] = channel.exchanges[TOPOLOGY.return_exchange].published
    assert routing_key == TOPOLOGY.dead_letter_queue(SUBSCRIPTION)
    assert mandatory
    assert copy.body == message.body
    assert copy.message_id == message.message_id
    assert copy.headers[DEAD_LETTER_REASON].startswith("UndecodableEvent")
    assert copy.headers[ORIGINAL_ROUTING_KEY] == message.routing_key


@PROPERTIES
@given(
    st.binary(max_size=256)
    | st.dictionaries(wire_names, json_values, max_size=8).map(json_bytes)
    | mutated_events().map(json_bytes),
    st.integers(0, 20),
)
def test_the_consumer_dead_letters_any_body_that_does_not_decode(
    body: bytes, delivery_count: int
) -> None:
    message, channel, handled = run(deliver(body, {"x-delivery-count": delivery_count}))
    try:
        event = decode(body)
    except UndecodableEvent:
        check_dead_lettered(message, channel, handled)
    else:
        assert handled == [event]
        assert message.settled == ["ack"]
        assert channel.exchanges == {}


def test_the_consumer_dead_letters_a_body_that_is_not_json() -> None:
    message, channel, handled = run(deliver(b"\x00\xffnot json"))
    check_dead_lettered(message, channel, handled)


def test_the_consumer_hands_a_valid_event_to_the_handler_and_acks_it() -> None:
    body = orjson.dumps(sample(EVENT_TYPES["OrderPlaced"]))
    message, channel, handled = run(deliver(body))
    assert handled == [decode(body)]
    assert message.settled == ["ack"]
    assert channel.exchanges == {}


def test_the_fake_message_covers_what_the_consumer_uses() -> None:
    """Keep the double honest: every attribute it fakes exists on the real interface."""
    real = set(dir(AbstractIncomingMessage))
    for cls in AbstractIncomingMessage.__mro__:
        real |= set(vars(cls).get("__annotations__", {}))
    faked = {name for name in vars(FakeMessage(b"")) if name != "settled"}
    assert faked | {"ack", "nack", "reject"} <= real
