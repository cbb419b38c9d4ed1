"""The order service's settings, read from the environment (plain upper-case names)."""

from pydantic import Field

from shared.settings import CommonSettings


class Settings(CommonSettings):
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
    seed_demo_data: bool = True
    demo_customer_token: str = Field(default="demo-token", min_length=1)
    demo_customer_token_2: str = Field(default="demo-token-2", min_length=1)
