"""The sandbox's settings, read from the environment (built in ``__main__``, never at import)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared import posture
from shared.settings import CommonSettings, own_url

PUBLIC_TEST_SECRET_KEY = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R"  # noqa: S105 - public docs key
PUBLIC_TEST_CLIENT_KEY = "test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq"


def _split(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


class Settings(CommonSettings):
    """Where to listen, which keys to accept, where webhooks go, and the initial fault knobs."""

    role: ClassVar[str] = "sandbox"
    uses_broker: ClassVar[bool] = False
    role_database_url: str | None = own_url("sandbox", "DATABASE")

    host: str = "127.0.0.1"
    sandbox_port: int = 8090
    db_schema: str = "sandbox"
    sandbox_secret_keys: str = Field(
        default="", description="Secret keys accepted besides the public test key (comma list)."
    )
    sandbox_client_keys: str = Field(
        default="", description="Client keys accepted besides the public test key (comma list)."
    )
    sandbox_public_url: str | None = Field(
        default=None, description="Origin the SDK script sends browsers to; else the request's."
    )
    sandbox_webhook_url: str | None = Field(
        default=None,
        description="Merchant URL for PAYMENT_STATUS_CHANGED, registered at start (else the one"
        " registered with PUT /sandbox/webhook, if any).",
    )
    sandbox_mid: str = "tosspayments"
    # Initial fault knobs: when set, written to the shared faults row at start.
    sandbox_confirm_latency_ms: int | None = None
    sandbox_drop_response_rate: float | None = None
    sandbox_error_rate: float | None = None
    sandbox_error_code: str | None = None
    sandbox_clock_scale: float | None = None
    # Background work.
    sandbox_sweep_interval_s: float = 1.0
    sandbox_webhook_poll_s: float = 1.0
    sandbox_faults_cache_s: float = 0.2  # how often the shared knobs are read again

    @property
    def secret_keys(self) -> frozenset[str]:
        return _split(self.sandbox_secret_keys) | {PUBLIC_TEST_SECRET_KEY}

    @property
    def client_keys(self) -> frozenset[str]:
        return _split(self.sandbox_client_keys) | {PUBLIC_TEST_CLIENT_KEY}

    def posture_problems(self) -> list[str]:
        return posture.problems(posture.sandbox_problem(self.payments_mode))

    def initial_faults(self) -> dict[str, object]:
        """The fault knobs the environment sets, in the API's JSON names."""
        given = {
            "confirmLatencyMs": self.sandbox_confirm_latency_ms,
            "dropResponseRate": self.sandbox_drop_response_rate,
            "errorRate": self.sandbox_error_rate,
            "errorCode": self.sandbox_error_code,
            "clockScale": self.sandbox_clock_scale,
        }
        return {name: value for name, value in given.items() if value is not None}


__all__ = ["PUBLIC_TEST_CLIENT_KEY", "PUBLIC_TEST_SECRET_KEY", "Settings"]
