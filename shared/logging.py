"""One-line JSON logs, with registered secrets masked out of every record at every level, and
payment keys, tokens and session ids shown only masked (:func:`masked`)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_secrets: set[str] = set()
# Fields whose values identify a payment or a person to anyone holding them: logged masked.
MASKED_FIELDS = frozenset({"payment_key", "paymentKey", "token", "session", "session_id"})


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


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(
            {
                k: masked(v) if k in MASKED_FIELDS and v is not None else v
                for k, v in record.__dict__.items()
                if k not in _RESERVED
            }
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(entry, default=str).decode())


def configure(service: str, level: str = "INFO") -> None:
    """Send JSON lines to stderr for ``service``; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
