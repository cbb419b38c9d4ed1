"""Settings every role reads from the environment (pydantic-settings).

Each service composes these into its own ``config.py``; nothing here is instantiated at import.
"""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
