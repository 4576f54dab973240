"""Typed settings read from the environment; secrets come only from files (Docker secrets)."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The one default, for the platform (component.py) and a bare `uvicorn db_connect.app:app` alike; quality holds
# the data-quality results of the Airflow checks. A schema that does not exist is served empty.
EXPOSED_SCHEMAS = ("consumption", "quality")


def read_secret(path: Path, variable: str) -> SecretStr:
    """Read a secret file so that a missing or empty one names the variable to fix, not the secret."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{variable}={path}: cannot read the secret file ({exc.strerror})") from None
    if not value:
        raise ValueError(f"{variable}={path}: the secret file is empty")
    return SecretStr(value)


class Settings(BaseSettings):
    """Connection and API limits; libpq's own variable names so the usual PG* environment just works.

    PGUSER is an authenticator: it owns nothing and only switches (SET LOCAL ROLE) to the role a
    credential maps to, so GRANTs and row-level security on those roles are the authorisation.
    """

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    pghost: str = "postgres"
    pgport: int = Field(default=5432, ge=1, le=65535)
    pgdatabase: str = "warehouse"
    pguser: str = "db_connect"
    pgpassword_file: Path = Path("/run/secrets/db_connect_db_password")
    api_key_file: Path = Path("/run/secrets/db_connect_api_key")
    jwt_secret_file: Path | None = None
    api_key_role: str = "api_reader"
    anonymous_role: str | None = None
    exposed_schemas: Annotated[tuple[str, ...], NoDecode] = EXPOSED_SCHEMAS
    default_page_size: int = Field(default=100, ge=1)
    max_page_size: int = Field(default=1000, ge=1)
    exact_count_limit: int = Field(default=10000, ge=1)
    statement_timeout_ms: int = Field(default=15000, ge=1)
    max_body_bytes: int = Field(default=256 * 1024 * 1024, ge=1)  # a CSV body, spooled, then COPYed
    # a JSON body is parsed whole, in memory (10-25 times its size), before Postgres sees a byte of it
    max_json_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    # what one process holds at once (db_connect/budget.py): JSON bodies in memory, CSV bodies spooled to disk
    json_bodies_in_flight_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    csv_bodies_in_flight_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    schema_refresh_s: float = Field(default=60.0, gt=0)
    pool_max_size: int = Field(default=10, ge=1)
    # false behind a pooler in transaction mode (PgBouncer < 1.21): no statement outlives its request
    prepared_statements: bool = True

    _db_password: SecretStr = PrivateAttr()
    _api_key: SecretStr = PrivateAttr()
    _jwt_secret: SecretStr | None = PrivateAttr(default=None)

    @field_validator("exposed_schemas", mode="before")
    @classmethod
    def _split_schemas(cls, value: object) -> object:
        """EXPOSED_SCHEMAS is a comma-separated list, as written in a stack file."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, list | tuple):
            value = tuple(part for part in value if part)
            if not value:
                raise ValueError("EXPOSED_SCHEMAS must name at least one schema")
        return value

    @field_validator("anonymous_role", "jwt_secret_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """A stack file writes `ANONYMOUS_ROLE: ""` to mean off."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _budgets_fit_a_body(self) -> "Settings":
        """A budget smaller than one body would refuse every body of the largest size the limit allows."""
        for budget, body in (
            ("json_bodies_in_flight_bytes", "max_json_body_bytes"),
            ("csv_bodies_in_flight_bytes", "max_body_bytes"),
        ):
            if getattr(self, budget) < getattr(self, body):
                raise ValueError(
                    f"{budget.upper()} ({getattr(self, budget)}) must be at least {body.upper()}"
                    f" ({getattr(self, body)}): one body of the largest size must fit"
                )
        return self

    @model_validator(mode="after")
    def _read_secrets(self) -> "Settings":
        """Read secrets once at start-up, so a missing Docker secret fails the task with a clear message."""
        self.default_page_size = min(self.default_page_size, self.max_page_size)
        self._db_password = read_secret(self.pgpassword_file, "PGPASSWORD_FILE")
        self._api_key = read_secret(self.api_key_file, "API_KEY_FILE")
        if self.jwt_secret_file is not None:
            self._jwt_secret = read_secret(self.jwt_secret_file, "JWT_SECRET_FILE")
        return self

    @property
    def db_password(self) -> SecretStr:
        return self._db_password

    @property
    def api_key(self) -> SecretStr:
        return self._api_key

    @property
    def jwt_secret(self) -> SecretStr | None:
        return self._jwt_secret

    @property
    def conninfo(self) -> dict[str, str | int]:
        """libpq keywords for the authenticator, shared by the pool, the schema listener and the CLI."""
        return {
            "host": self.pghost,
            "port": self.pgport,
            "dbname": self.pgdatabase,
            "user": self.pguser,
            "password": self.db_password.get_secret_value(),
            "connect_timeout": 5,
            "options": "-c TimeZone=UTC -c IntervalStyle=iso_8601",
        }
