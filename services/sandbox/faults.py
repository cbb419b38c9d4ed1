"""Misbehaviour on purpose: the fault knobs per endpoint and the scripted confirm timelines.

Both arrive as JSON (``PUT /sandbox/faults``, ``PUT /sandbox/scripts/{orderId}``) and are checked
here in full before anything changes; a bad body is a :class:`PgError` ``INVALID_REQUEST``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from services.sandbox.errors import CANCEL_CODES, CONFIRM_CODES, QUERY_CODES, PgError

LATENCY_MAX_MS = 120_000
COMPLETION_MAX_S = 86_400.0
LOOKUP_ERROR = "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING"


@dataclass(frozen=True)
class EndpointFaults:
    """How one API endpoint misbehaves; the defaults mean not at all."""

    error_code: str = "PROVIDER_ERROR"
    latency_ms: int = 0
    error_rate: float = 0.0
    drop_response_rate: float = 0.0
    late_completion_rate: float = 0.0
    late_completion_seconds: float = 30.0

    @property
    def latency_s(self) -> float:
        return self.latency_ms / 1000


@dataclass(frozen=True)
class WebhookFaults:
    drop_rate: float = 0.0
    delay_ms: int = 0
    duplicate_rate: float = 0.0
    reorder: bool = False


@dataclass(frozen=True)
class Faults:
    """Every knob, shared by all sandbox processes (one row in the database)."""

    clock_scale: float = 1.0
    replay_errors: bool = True
    forget_idempotency_keys: bool = False
    confirm: EndpointFaults = field(default_factory=EndpointFaults)
    cancel: EndpointFaults = field(default_factory=EndpointFaults)
    lookup_by_key: EndpointFaults = field(default_factory=lambda: EndpointFaults(LOOKUP_ERROR))
    lookup_by_order: EndpointFaults = field(default_factory=lambda: EndpointFaults(LOOKUP_ERROR))
    webhooks: WebhookFaults = field(default_factory=WebhookFaults)

    def scaled(self, duration: timedelta) -> timedelta:
        return duration / self.clock_scale

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "clockScale": self.clock_scale,
            "replayErrors": self.replay_errors,
            "forgetIdempotencyKeys": self.forget_idempotency_keys,
        }
        for endpoint in ENDPOINTS:
            body[endpoint.name] = endpoint.to_json(getattr(self, endpoint.attribute))
        body["webhooks"] = _section_json(_WEBHOOK_FIELDS, self.webhooks)
        return body


# ---------------------------------------------------------------- field parsers


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PgError("INVALID_REQUEST", f"{name} must be a number")
    if not low <= value <= high:
        raise PgError("INVALID_REQUEST", f"{name} must be between {low:g} and {high:g}")
    return float(value)


def _rate(name: str, value: Any) -> float:
    return _number(name, value, 0.0, 1.0)


def _milliseconds(name: str, value: Any) -> int:
    latency = _number(name, value, 0, LATENCY_MAX_MS)
    if latency != int(latency):
        raise PgError("INVALID_REQUEST", f"{name} must be an integer")
    return int(latency)


def _seconds(name: str, value: Any) -> float:
    return _number(name, value, 0.0, COMPLETION_MAX_S)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PgError("INVALID_REQUEST", f"{name} must be true or false")
    return value


def _clock_scale(name: str, value: Any) -> float:
    return _number(name, value, 0.001, 1_000_000)


def _code_of(codes: frozenset[str]) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in codes:
            raise PgError("INVALID_REQUEST", f"{name} must be an error code of this endpoint")
        return value

    return parse


Parser = Callable[[str, Any], Any]
# JSON name -> (attribute, parser), per section.
Fields = dict[str, tuple[str, Parser]]

_TOP_FIELDS: Fields = {
    "clockScale": ("clock_scale", _clock_scale),
    "replayErrors": ("replay_errors", _flag),
    "forgetIdempotencyKeys": ("forget_idempotency_keys", _flag),
}
_WEBHOOK_FIELDS: Fields = {
    "dropRate": ("drop_rate", _rate),
    "delayMs": ("delay_ms", _milliseconds),
    "duplicateRate": ("duplicate_rate", _rate),
    "reorder": ("reorder", _flag),
}
_LATE_FIELDS: Fields = {
    "lateCompletionRate": ("late_completion_rate", _rate),
    "lateCompletionSeconds": ("late_completion_seconds", _seconds),
}


def _endpoint_fields(codes: frozenset[str], late: bool) -> Fields:
    common: Fields = {
        "latencyMs": ("latency_ms", _milliseconds),
        "errorRate": ("error_rate", _rate),
        "errorCode": ("error_code", _code_of(codes)),
        "dropResponseRate": ("drop_response_rate", _rate),
    }
    return {**common, **_LATE_FIELDS} if late else common


@dataclass(frozen=True)
class Endpoint:
    """One section of the knobs: its JSON name, its attribute and the fields it accepts."""

    name: str
    attribute: str
    fields: Fields

    def to_json(self, section: EndpointFaults) -> dict[str, Any]:
        return _section_json(self.fields, section)


ENDPOINTS = (
    Endpoint("confirm", "confirm", _endpoint_fields(CONFIRM_CODES, late=True)),
    Endpoint("cancel", "cancel", _endpoint_fields(CANCEL_CODES, late=True)),
    Endpoint("lookupByKey", "lookup_by_key", _endpoint_fields(QUERY_CODES, late=False)),
    Endpoint("lookupByOrder", "lookup_by_order", _endpoint_fields(QUERY_CODES, late=False)),
)
# The knobs' first, flat names: they still set the confirm endpoint's knobs.
LEGACY_CONFIRM_ALIASES = {
    "confirmLatencyMs": "latencyMs",
    "dropResponseRate": "dropResponseRate",
    "errorRate": "errorRate",
    "errorCode": "errorCode",
}


def _section_json(section_fields: Fields, section: Any) -> dict[str, Any]:
    return {name: getattr(section, attribute) for name, (attribute, _) in section_fields.items()}


def _object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PgError("INVALID_REQUEST", f"{name} must be a JSON object")
    return value


def _updated(section: Any, section_fields: Fields, changes: dict[str, Any], where: str) -> Any:
    unknown = sorted(set(changes) - set(section_fields))
    if unknown:
        raise PgError("INVALID_REQUEST", f"unknown fault {where}{unknown[0][:40]}")
    values = {}
    for name, value in changes.items():
        attribute, parse = section_fields[name]
        values[attribute] = parse(f"{where}{name}", value)
    return replace(section, **values)


def _with_legacy_aliases(changes: dict[str, Any]) -> dict[str, Any]:
    """The body with the flat confirm names moved into ``confirm`` (explicit nested ones win)."""
    flat = {LEGACY_CONFIRM_ALIASES[k]: v for k, v in changes.items() if k in LEGACY_CONFIRM_ALIASES}
    if not flat:
        return changes
    rest = {k: v for k, v in changes.items() if k not in LEGACY_CONFIRM_ALIASES}
    nested = _object("confirm", rest.get("confirm", {}))
    return {**rest, "confirm": {**flat, **nested}}


_SECTIONS: dict[str, tuple[str, Fields]] = {
    **{endpoint.name: (endpoint.attribute, endpoint.fields) for endpoint in ENDPOINTS},
    "webhooks": ("webhooks", _WEBHOOK_FIELDS),
}


def update_faults(current: Faults, changes: Any) -> Faults:
    """``current`` with a ``PUT /sandbox/faults`` body merged in, every field checked first."""
    body = _with_legacy_aliases(_object("the body", changes))
    top = {name: value for name, value in body.items() if name not in _SECTIONS}
    updated = _updated(current, _TOP_FIELDS, top, "")
    for name, (attribute, section_fields) in _SECTIONS.items():
        if name in body:
            section = _updated(
                getattr(current, attribute), section_fields, _object(name, body[name]), f"{name}."
            )
            updated = replace(updated, **{attribute: section})
    assert isinstance(updated, Faults)
    return updated


def faults_from_json(stored: Any) -> Faults:
    """The knobs as stored (the ``to_json`` shape); knobs that no longer parse (a code since
    removed, say) fall back to no faults rather than stopping the sandbox."""
    try:
        return update_faults(Faults(), stored)
    except PgError:
        return Faults()


# ---------------------------------------------------------------- scripted timelines

DROP = "DROP"
# The failure an ABORTED outcome carries when the script names none and answers DROP.
DEFAULT_SCRIPT_FAILURE = "REJECT_CARD_PAYMENT"


@dataclass(frozen=True)
class ConfirmScript:
    """The first confirm of an order's payment: answered ``answer`` (``DROP`` or an error
    code), left IN_PROGRESS, and ``complete_after`` later it becomes ``outcome`` by itself."""

    answer: str
    complete_after: timedelta
    outcome: str  # "DONE" or "ABORTED"
    failure_code: str

    @property
    def drops(self) -> bool:
        return self.answer == DROP

    def to_json(self) -> dict[str, Any]:
        return {
            "confirm": {
                "answer": self.answer,
                "completeAfterSeconds": self.complete_after.total_seconds(),
                "outcome": self.outcome,
                "failureCode": self.failure_code,
            }
        }


_SCRIPT_FIELDS = frozenset({"answer", "completeAfterSeconds", "outcome", "failureCode"})


def parse_script(body: Any) -> ConfirmScript:
    """A ``PUT /sandbox/scripts/{orderId}`` body: ``{"confirm": {answer, completeAfterSeconds,
    outcome, failureCode?}}``."""
    outer = _object("the body", body)
    if set(outer) != {"confirm"}:
        raise PgError("INVALID_REQUEST", "a script has exactly one key: confirm")
    script = _object("confirm", outer["confirm"])
    unknown = sorted(set(script) - _SCRIPT_FIELDS)
    if unknown:
        raise PgError("INVALID_REQUEST", f"unknown script field {unknown[0][:40]}")
    answer = script.get("answer")
    if answer != DROP:
        answer = _code_of(CONFIRM_CODES)("confirm.answer", answer)
    outcome = script.get("outcome", "DONE")
    if outcome not in ("DONE", "ABORTED"):
        raise PgError("INVALID_REQUEST", "confirm.outcome must be DONE or ABORTED")
    return ConfirmScript(
        answer=answer,
        complete_after=timedelta(
            seconds=_seconds("confirm.completeAfterSeconds", script.get("completeAfterSeconds", 30))
        ),
        outcome=outcome,
        failure_code=_script_failure(script.get("failureCode"), answer),
    )


def _script_failure(given: Any, answer: str) -> str:
    if given is not None:
        return _code_of(CONFIRM_CODES)("confirm.failureCode", given)
    return DEFAULT_SCRIPT_FAILURE if answer == DROP else answer
