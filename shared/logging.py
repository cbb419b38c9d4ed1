"""One-line JSON logs through structlog, for our own lines and every library's alike (stdlib
``logging`` is routed through the same processors), that join up: each line carries the request
id (``request_id``, asgi-correlation-id), the active span (``trace_id``, ``span_id``) and the
order it is about (``orderId``, bound with :func:`order_context`). Registered secrets are masked
out of every line at every level, and payment keys, tokens and session ids are shown only masked
(:func:`masked`).

Call sites keep the stdlib shape, ``log.info("…", extra={…})``: the extras become fields.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import structlog
from asgi_correlation_id import correlation_id
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

_secrets: set[str] = set()
# Fields whose values identify a payment or a person to anyone holding them: logged masked.
MASKED_FIELDS = frozenset({"payment_key", "paymentKey", "token", "session", "session_id"})
# The span attribute that names the order a span is about (searchable in a trace backend).
ORDER_ATTRIBUTE = "app.order_id"
_NOISY = ("aiormq", "aio_pika", "httpx", "httpcore")


def masked(value: object) -> str:
    """Enough of a key to tell two apart in the logs, not enough to use it: ``tpk_…a1b2``."""
    text = str(value)
    if len(text) <= 8:
        return "…"
    return f"{text[:4]}…{text[-4:]}"


def register_secret(value: str) -> None:
    """Mask ``value`` in everything logged from now on (only values of 8+ characters)."""
    if len(value) >= 8:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


@contextmanager
def order_context(order_id: str | None) -> Iterator[None]:
    """Every line logged inside names ``order_id`` (``orderId``), and so does the active span
    (``app.order_id``); nothing is bound when the order is not known."""
    if not order_id:
        yield
        return
    trace.get_current_span().set_attribute(ORDER_ATTRIBUTE, order_id)
    with structlog.contextvars.bound_contextvars(orderId=order_id):
        yield


def _add_request_id(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    request_id = correlation_id.get()
    if request_id is not None:
        event["request_id"] = request_id
    return event


def _add_span(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = trace.format_trace_id(context.trace_id)
        event["span_id"] = trace.format_span_id(context.span_id)
    return event


def _mask_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key in MASKED_FIELDS.intersection(event):
        if event[key] is not None:
            event[key] = masked(event[key])
    return event


def _render(_: WrappedLogger, __: str, event: EventDict) -> str:
    # Redacted last, on the whole line: a secret can hide in the message, a field or a traceback.
    return redact(orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode())


def _named(service: str) -> Processor:
    def add_service(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        event["service"] = service
        return event

    return add_service


def _context(service: str) -> list[Processor]:
    """What every line gets, whether it came from structlog or from stdlib ``logging``."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        _named(service),
        _add_request_id,
        _add_span,
    ]


def formatter(service: str) -> logging.Formatter:
    """The formatter of every line: stdlib records (their ``extra`` fields included) and
    structlog's own, rendered as one JSON object each."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_context(service), structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("msg"),
            _mask_fields,
            _render,
        ],
    )


def configure(service: str, level: str = "INFO") -> None:
    """Send JSON lines to stderr for ``service`` at ``level`` (``LOG_LEVEL``); idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *_context(service),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
