"""db_connect settings: libpq's variable names, secrets only from files and never shown."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from db_connect.component import Settings as PlatformSettings
from db_connect.settings import Settings

LIBPQ_AND_SERVICE_VARIABLES = (
    "PGHOST",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD_FILE",
    "API_KEY_FILE",
    "EXPOSED_SCHEMAS",
    "MAX_PAGE_SIZE",
    "STATEMENT_TIMEOUT_MS",
    "POOL_MAX_SIZE",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Only what a test sets counts; both secret files exist and end with a newline, as written by hand."""
    for name in LIBPQ_AND_SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "db_password").write_text("s3cret-db-pw\n")
    (tmp_path / "api_key").write_text("  s3cret-api-key\n")
    monkeypatch.setenv("PGPASSWORD_FILE", str(tmp_path / "db_password"))
    monkeypatch.setenv("API_KEY_FILE", str(tmp_path / "api_key"))
    return monkeypatch


def test_defaults_match_the_swarm_deployment() -> None:
    fields = Settings.model_fields
    assert fields["pgpassword_file"].default == Path("/run/secrets/db_connect_db_password")
    assert fields["api_key_file"].default == Path("/run/secrets/db_connect_api_key")
    assert {name: fields[name].default for name in ("pghost", "pgport", "pgdatabase", "pguser")} == {
        "pghost": "postgres",
        "pgport": 5432,
        "pgdatabase": "warehouse",
        "pguser": "db_connect",
    }
    assert fields["exposed_schemas"].default == ("consumption", "quality")
    assert fields["max_page_size"].default == 1000
    assert fields["statement_timeout_ms"].default == 15000


def test_libpq_variables_and_limits_come_from_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("PGHOST", "db.internal")
    env.setenv("PGPORT", "6543")
    env.setenv("PGDATABASE", "dw")
    env.setenv("PGUSER", "reader")
    env.setenv("EXPOSED_SCHEMAS", " consumption, curated ,,")
    env.setenv("MAX_PAGE_SIZE", "200")
    env.setenv("STATEMENT_TIMEOUT_MS", "500")
    settings = Settings()
    assert (settings.pghost, settings.pgport, settings.pgdatabase, settings.pguser) == (
        "db.internal",
        6543,
        "dw",
        "reader",
    )
    assert settings.exposed_schemas == ("consumption", "curated")
    assert (settings.max_page_size, settings.statement_timeout_ms) == (200, 500)


def test_secrets_are_read_stripped_from_their_files(env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.db_password.get_secret_value() == "s3cret-db-pw"
    assert settings.api_key.get_secret_value() == "s3cret-api-key"


def test_secrets_never_show_in_repr_str_or_dumps(env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    for rendering in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert "s3cret" not in rendering


def test_a_password_in_the_environment_is_not_a_way_around_the_file(env: pytest.MonkeyPatch) -> None:
    env.setenv("DB_PASSWORD", "from-env")
    env.setenv("API_KEY", "from-env")
    settings = Settings()
    assert settings.db_password.get_secret_value() == "s3cret-db-pw"
    assert settings.api_key.get_secret_value() == "s3cret-api-key"


def test_a_missing_secret_file_names_the_variable_to_fix(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("PGPASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValidationError, match=r"PGPASSWORD_FILE=.*absent: cannot read the secret file"):
        Settings()


def test_an_empty_api_key_file_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "api_key").write_text("\n")
    with pytest.raises(ValidationError, match=r"API_KEY_FILE=.*: the secret file is empty"):
        Settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("EXPOSED_SCHEMAS", " , "), ("MAX_PAGE_SIZE", "0"), ("STATEMENT_TIMEOUT_MS", "0"), ("PGPORT", "x")],
)
def test_nonsense_limits_fail_at_start_up(env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    env.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


def test_the_platform_serves_the_same_schemas_by_default_as_db_connect_alone() -> None:
    """One default: a schema served by the platform but not by a bare uvicorn (or back) would surprise someone."""
    platform = PlatformSettings()
    assert tuple(platform.exposed_schemas) == Settings.model_fields["exposed_schemas"].default
