"""Typed settings read from the environment; secrets come only from files (Docker secrets)."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    """Connection and API limits; libpq's own variable names so the usual PG* environment just works."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    pghost: str = "postgres"
    pgport: int = Field(default=5432, ge=1, le=65535)
    pgdatabase: str = "warehouse"
    pguser: str = "db_connect"
    pgpassword_file: Path = Path("/run/secrets/db_connect_db_password")
    api_key_file: Path = Path("/run/secrets/db_connect_api_key")
    exposed_schemas: Annotated[tuple[str, ...], NoDecode] = ("consumption",)
    max_page_size: int = Field(default=1000, ge=1)
    statement_timeout_ms: int = Field(default=15000, ge=1)
    pool_max_size: int = Field(default=10, ge=1)

    _db_password: SecretStr = PrivateAttr()
    _api_key: SecretStr = PrivateAttr()

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

    @model_validator(mode="after")
    def _read_secrets(self) -> "Settings":
        """Read secrets once at start-up, so a missing Docker secret fails the task with a clear message."""
        self._db_password = read_secret(self.pgpassword_file, "PGPASSWORD_FILE")
        self._api_key = read_secret(self.api_key_file, "API_KEY_FILE")
        return self

    @property
    def db_password(self) -> SecretStr:
        return self._db_password

    @property
    def api_key(self) -> SecretStr:
        return self._api_key
