"""Checkout's settings, read from the environment (plain upper-case names)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class Settings(CommonSettings):
    host: str = "127.0.0.1"
    checkout_port: int = 8002
    db_schema: str = "checkout"
    outbox_poll_interval: float = Field(
        default=1.0, description="Seconds between outbox polls when no NOTIFY arrives."
    )
    result_poll_interval_ms: int = Field(
        default=700, gt=0, description="How often the result page asks for the order."
    )
    result_poll_limit: int = Field(
        default=60, gt=0, description="How many times before 'still processing'."
    )
