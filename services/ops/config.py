"""The console's settings, read from the environment (plain upper-case names)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from shared import posture
from shared.settings import CommonSettings, own_url


class Settings(CommonSettings):
    role: ClassVar[str] = "ops"
    role_database_url: str | None = own_url("ops", "DATABASE")
    role_amqp_url: str | None = own_url("ops", "AMQP")

    host: str = "127.0.0.1"
    ops_port: int = 8003
    db_schema: str = "approval"
    db_pool_min: int = 1
    db_pool_max: int = 4
    confirm_window_seconds: int = Field(
        default=600, description="The PG's confirm window: an attempt older is listed as stuck."
    )
    list_limit: int = Field(default=100, ge=1, le=1000, description="Rows per table shown.")

    @field_validator("operator_user", "operator_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes `OPERATOR_USER: ${OPERATOR_USER:-}`: empty means not configured.
        return None if value == "" else value

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The operator's user and password, or None: the console is closed."""
        if not self.operator_user or self.operator_password is None:
            return None
        password = self.operator_password.get_secret_value()
        return (self.operator_user, password) if password else None

    def posture_problems(self) -> list[str]:
        password = self.operator_password.get_secret_value() if self.operator_password else None
        weak = posture.operator_strength_problem(self.payments_mode, self.operator_user, password)
        return [*super().posture_problems(), *posture.problems(weak)]
