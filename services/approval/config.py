"""The approval worker's settings (environment, plain upper-case names)."""

from __future__ import annotations

import tempfile
from datetime import time
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from services.approval.failpoints import Failpoints, InvalidFailpoints, parse
from shared import posture
from shared.settings import CommonSettings, own_url

REAL_TOSS_API = "https://api.tosspayments.com"
# The public documentation key of pg-contract.md: test mode only, so only off the real PG.
PUBLIC_TEST_SECRET_KEY = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R"  # noqa: S105 - published


def is_sandbox(api_base: str) -> bool:
    """Whether ``api_base`` is anything but Toss Payments itself (any host of tosspayments.com,
    however the URL is spelled): only there may the public test key stand in for a missing one."""
    host = (urlsplit(api_base.strip()).hostname or "").rstrip(".")
    return host != "tosspayments.com" and not host.endswith(".tosspayments.com")


class ConfigurationError(Exception):
    """The process must not start with these settings."""


class Settings(CommonSettings):
    role: ClassVar[str] = "approval"
    role_database_url: str | None = own_url("approval", "DATABASE")
    role_amqp_url: str | None = own_url("approval", "AMQP")

    db_schema: str = "approval"
    db_pool_max: int = 20

    toss_api_base: str = "http://127.0.0.1:8090"
    toss_secret_key: SecretStr | None = None
    toss_secret_key_file: Path | None = None
    pg_connect_timeout_seconds: float = 3.0
    pg_read_timeout_seconds: float = 10.0
    pg_call_deadline_seconds: float = Field(
        default=10.0,
        gt=0,
        description="No PG call takes longer than this, whatever happens on the wire; it must "
        "fit twice into CONFIRM_SAFETY_MARGIN_SECONDS, so a confirm started before the confirm "
        "deadline has ended well before the PG's window closes.",
    )

    approval_prefetch: int = Field(
        default=600,
        ge=1,
        description="Messages one worker handles at once. A confirm waits on the PG without "
        "holding a database connection, so this is how many confirms are in flight: at 1 s of "
        "PG latency, 300 approvals/s need 300 plus the time each spends queued for the CPU and "
        "the database (make bench: 400 gave 253/s, 600 gave 315/s).",
    )
    confirm_window_seconds: int = 600
    confirm_safety_margin_seconds: int = 30
    confirm_attempts: int = Field(default=3, ge=1, description="confirm calls per drive")
    confirm_retry_base_seconds: float = 0.5
    lease_seconds: float = Field(
        default=30.0,
        description="A driver's hold on an attempt, renewed while it works: how long a dead "
        "worker's attempt waits before another worker takes it over.",
    )
    unknown_backoff_base_seconds: float = 2.0
    unknown_backoff_max_seconds: float = 60.0

    reconcile_interval_seconds: float = 2.0
    reconcile_batch: int = 100
    verified_grace_seconds: float = 5.0
    awaiting_order_timeout_seconds: float = 120.0
    outbox_poll_seconds: float = 1.0
    heartbeat_file: Path | None = Field(
        default=Path(tempfile.gettempdir()) / "approval-heartbeat",
        description="Touched after every reconcile round; `… healthcheck` reads its age.",
    )

    reconcile_daily: bool = Field(
        default=True, description="Reconcile yesterday's PG transactions once a day."
    )
    reconcile_at: time = Field(
        default=time(0, 30),
        description="When, in Asia/Seoul (HH:MM), the daily reconciliation of yesterday runs.",
    )
    reconcile_report_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "reconciliation",
        description="Where reconciliation reports are written (every report is also kept in "
        "the approval schema's reconciliation_runs).",
    )

    approval_failpoints: str = Field(
        default="",
        description="Test-only fault injection (services/approval/failpoints.py): "
        "'after_verify=0.3,before_ack=0.1' SIGKILLs the worker at those points. Leave unset.",
    )

    @field_validator("approval_failpoints")
    @classmethod
    def _valid_failpoints(cls, value: str) -> str:
        try:
            parse(value)
        except InvalidFailpoints as exc:
            raise ValueError(str(exc)) from exc
        return value

    def failpoints(self) -> Failpoints:
        return Failpoints(parse(self.approval_failpoints))

    @field_validator("toss_secret_key", "toss_secret_key_file", "heartbeat_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes `TOSS_SECRET_KEY_FILE: ${TOSS_SECRET_KEY_FILE:-}`: empty means unset.
        return None if value == "" else value

    def posture_problems(self) -> list[str]:
        try:
            key = self._configured_secret_key()
        except ConfigurationError as exc:
            return [str(exc)]
        mode = self.payments_mode
        return [
            *super().posture_problems(),
            *posture.problems(
                posture.secret_key_problem(mode, key),
                posture.api_base_problem(mode, self.toss_api_base),
            ),
        ]

    def secret_key(self) -> str:
        """The PG secret key; refuses a missing key for the real PG and a malformed one."""
        key = self._configured_secret_key()
        if key is None:
            if not is_sandbox(self.toss_api_base):
                raise ConfigurationError("TOSS_SECRET_KEY is required for the real Toss API")
            key = PUBLIC_TEST_SECRET_KEY
        if not key.startswith(("test_sk_", "live_sk_")):
            raise ConfigurationError("TOSS_SECRET_KEY must start with test_sk_ or live_sk_")
        return key

    def _configured_secret_key(self) -> str | None:
        if self.toss_secret_key is not None:
            return self.toss_secret_key.get_secret_value().strip() or None
        if self.toss_secret_key_file is not None:
            try:
                return self.toss_secret_key_file.read_text().strip() or None
            except (OSError, UnicodeDecodeError) as exc:
                # Name the file and the reason, never a line of its content.
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigurationError(
                    f"TOSS_SECRET_KEY_FILE {self.toss_secret_key_file} cannot be read: {why}"
                ) from None
        return None
