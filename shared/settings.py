"""Settings every role reads from the environment (pydantic-settings).

Each service composes these into its own ``config.py``; nothing here is instantiated at import.
"""

import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messaging import Patience, Topology
from shared.retention import Retention
from shared.topology import topology


class CommonSettings(BaseSettings):
    """Where the shared infrastructure is, and how this process names its share of it."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/payments",
        description="PostgreSQL DSN; every role keeps its tables in its own schema of it.",
    )
    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/")
    events_exchange: str = Field(
        default="payments",
        description="The durable topic exchange. Tests use a fresh name to isolate themselves.",
    )
    queue_prefix: str = Field(default="", description="Prefix of every queue declared.")
    log_level: str = "INFO"
    db_pool_min: int = 2
    db_pool_max: int = 10

    queue_delivery_limit: int | None = Field(
        default=None,
        ge=1,
        description="Overrides every queue's delivery limit (deliveries that failed for a bug "
        "or a crash; outages are waited out uncounted). Every role must use the same value: "
        "quorum queues keep the arguments they were declared with.",
    )
    consumer_hold_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a consumer holds a message through an outage before handing a "
        "fresh copy back to its queue (stay well under RabbitMQ's consumer_timeout, 30 min).",
    )
    consumer_retry_cap_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait between two tries of a message during an outage.",
    )

    retention_days: float = Field(
        default=30.0,
        gt=0,
        description="Published outbox rows, inbox rows and other bookkeeping older than this "
        "are purged: longer than any redelivery and than the PG's 15-day idempotency window.",
    )
    retention_interval_seconds: float = Field(default=3600.0, gt=0)

    # Lifecycle (shared/runner.py).
    shutdown_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        description="After SIGTERM/SIGINT, how long requests, messages and jobs in flight may "
        "take to finish before they are cancelled; the process exits a few seconds after.",
    )
    migrate_on_start: bool = Field(
        default=True,
        description="Apply this role's migrations before serving (off where a migration job "
        "ran them first and the role's database user may not change the schema).",
    )
    health_dir: Path | None = Field(
        default=Path(tempfile.gettempdir()) / "payments-health",
        description="Where a worker touches <role>.live and <role>.ready (healthcheck).",
    )

    def retention(self) -> Retention:
        return Retention(days=self.retention_days, interval=self.retention_interval_seconds)

    def topology(self) -> Topology:
        """The deployment's queues, as every role must declare them."""
        return topology(self.events_exchange, self.queue_prefix, self.queue_delivery_limit)

    def patience(self) -> Patience:
        return Patience(hold=self.consumer_hold_seconds, retry_cap=self.consumer_retry_cap_seconds)
