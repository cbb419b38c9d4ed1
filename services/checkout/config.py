"""Checkout's settings, read from the environment (plain upper-case names)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.settings import CommonSettings, own_url


class Settings(CommonSettings):
    role: ClassVar[str] = "checkout"
    role_database_url: str | None = own_url("checkout", "DATABASE")
    role_amqp_url: str | None = own_url("checkout", "AMQP")

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
