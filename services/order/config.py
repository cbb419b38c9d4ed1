"""The order service's settings, read from the environment (plain upper-case names)."""

from typing import ClassVar

from pydantic import Field

from shared import posture
from shared.settings import CommonSettings, own_url


class Settings(CommonSettings):
    role: ClassVar[str] = "order"
    role_database_url: str | None = own_url("order", "DATABASE")
    role_amqp_url: str | None = own_url("order", "AMQP")

    host: str = "127.0.0.1"
    order_port: int = 8001
    db_schema: str = "orders"
    order_ttl_seconds: int = Field(
        default=1800, gt=0, description="How long an order stays payable (the PG window's life)."
    )
    order_expiry_grace_seconds: int = Field(
        default=60, ge=0, description="Extra time after expiresAt for approvals still in flight."
    )
    expiry_sweep_interval_seconds: float = Field(default=5.0, gt=0)
    consumer_prefetch: int = Field(default=32, gt=0)
    seed_demo_data: bool | None = Field(
        default=None, description="Seed the demo catalog and customers (default: in sandbox mode)."
    )
    demo_customer_token: str = Field(default="demo-token", min_length=1)
    demo_customer_token_2: str = Field(default="demo-token-2", min_length=1)
    session_ttl_seconds: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long a storefront session lives."
    )
    session_cookie_secure: bool | None = Field(
        default=None,
        description="Mark the session cookie Secure (default: when the request came over TLS, "
        "and always in live mode).",
    )

    @property
    def seeds_demo_data(self) -> bool:
        if self.seed_demo_data is None:
            return self.payments_mode is posture.PaymentsMode.SANDBOX
        return self.seed_demo_data

    @property
    def sandbox(self) -> bool:
        return self.payments_mode is posture.PaymentsMode.SANDBOX

    def posture_problems(self) -> list[str]:
        return [
            *super().posture_problems(),
            *posture.problems(posture.demo_data_problem(self.payments_mode, self.seeds_demo_data)),
        ]
