"""Settings every role reads from the environment (pydantic-settings).

Each service composes these into its own ``config.py``; nothing here is instantiated at import.
"""

import tempfile
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import metrics, posture
from shared.logging import register_secret
from shared.messaging import Patience, Topology
from shared.posture import PaymentsMode
from shared.retention import Retention
from shared.topology import topology


class CommonSettings(BaseSettings):
    """Where the shared infrastructure is, and how this process names its share of it."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    # The role's name: its PostgreSQL application_name, its log and credential names.
    role: ClassVar[str] = "payments"
    uses_broker: ClassVar[bool] = True

    payments_mode: PaymentsMode = Field(
        default=PaymentsMode.SANDBOX,
        description="sandbox (test keys only) or live (real keys, the real PG, no demo data, no "
        "default credentials); see shared/posture.py.",
    )
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/payments",
        description="The admin/owner DSN: provisioning and migrations. Every role keeps its "
        "tables in its own schema of this database.",
    )
    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/")
    # This role's own credentials (ORDER_DATABASE_URL, …: see each role's config.py). Without
    # them a sandbox falls back to the URLs above; live mode refuses to start.
    role_database_url: str | None = None
    role_amqp_url: str | None = None
    operator_user: str | None = None
    operator_password: SecretStr | None = None
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

    @property
    def db_url(self) -> str:
        """The DSN this role connects with at run time: its own, else (sandbox) the admin's."""
        return self.role_database_url or self.database_url

    @property
    def broker_url(self) -> str:
        """The AMQP URL this role connects with: its own user's, else (sandbox) the admin's."""
        return self.role_amqp_url or self.amqp_url

    def posture_problems(self) -> list[str]:
        """What ``PAYMENTS_MODE`` refuses in these settings (roles add their own rules)."""
        mode, prefix = self.payments_mode, self.role.upper()
        password = self.operator_password.get_secret_value() if self.operator_password else None
        found = [
            posture.credential_problem(mode, f"{prefix}_DATABASE_URL", self.role_database_url),
            posture.operator_problem(mode, self.operator_user, password),
        ]
        if self.uses_broker:
            found.append(posture.credential_problem(mode, f"{prefix}_AMQP_URL", self.role_amqp_url))
        return posture.problems(*found)

    def register_secrets(self) -> None:
        """Mask every password of these settings in the logs from now on."""
        urls = (self.database_url, self.amqp_url, self.role_database_url, self.role_amqp_url)
        for url in filter(None, urls):
            register_secret(unquote(urlsplit(url).password or ""))
        if self.operator_password is not None:
            register_secret(self.operator_password.get_secret_value())

    def refuse_unsafe(self) -> None:
        """Exit (status 2, one line naming each offending setting) if the posture is wrong."""
        posture.refuse_unsafe(self.role, self.payments_mode, self.posture_problems())

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

    # Observability (shared/metrics.py).
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        description="Serve Prometheus /metrics on this internal port (unset: the role's default "
        "in shared.metrics.DEFAULT_PORTS; 0: not served).",
    )
    metrics_port_offset: int = Field(
        default=0,
        ge=0,
        description="Added to the port: a supervisor running N copies of one program on one "
        "host hands each its number (make run's approval workers).",
    )
    metrics_host: str = "127.0.0.1"

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    def metrics_address(self) -> tuple[str, int] | None:
        """Where this process serves /metrics, or None when turned off."""
        port = self.metrics_port
        if port is None:
            port = metrics.DEFAULT_PORTS.get(self.role, 0)
        return (self.metrics_host, port + self.metrics_port_offset) if port else None

    def retention(self) -> Retention:
        return Retention(days=self.retention_days, interval=self.retention_interval_seconds)

    def topology(self) -> Topology:
        """The deployment's queues, as every role must declare them."""
        return topology(self.events_exchange, self.queue_prefix, self.queue_delivery_limit)

    def patience(self) -> Patience:
        return Patience(hold=self.consumer_hold_seconds, retry_cap=self.consumer_retry_cap_seconds)


def own_url(role: str, kind: str) -> Any:
    """A role's own credentials, read from ``<ROLE>_<KIND>_URL`` (e.g. ``ORDER_DATABASE_URL``)."""
    return Field(default=None, validation_alias=f"{role.upper()}_{kind}_URL")
