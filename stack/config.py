"""The one typed configuration: `sawmill.toml` (optional) + `SAWMILL_*` environment overrides + defaults.

The defaults are the local platform (`localhost`, local CA, locally built images), so a zero-config
`deploy.py up` works. Every validation error names the key and says how to fix it, before anything runs.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from stack.components import COMPONENTS

CONFIG_ENV = "SAWMILL_CONFIG"
DEFAULT_CONFIG_FILE = Path("sawmill.toml")

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,19}$")
# Docker's reference grammar, loosely: [registry[:port]/]path[:tag][@digest], lowercase path
_IMAGE_REF_RE = re.compile(
    r"^[a-z0-9]([a-z0-9._:/-]*[a-z0-9])?(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
_IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"

Port = Annotated[int, Field(ge=1, le=65535)]


class ConfigError(Exception):
    """Configuration is invalid; `str()` lists each bad key with the fix."""


class DbConnectSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(default=2, ge=1, le=20)
    exposed_schemas: list[Annotated[str, Field(pattern=_IDENTIFIER)]] = ["consumption", "quality"]
    api_key_role: str = Field(default="api_reader", pattern=_IDENTIFIER)
    anonymous_role: str | None = Field(default=None, pattern=_IDENTIFIER)
    max_page_size: int = Field(default=1000, ge=1, le=1_000_000)


class KafkaTopic(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(default=3, ge=1, le=1000)
    replication_factor: int | None = Field(default=None, ge=1, description="default: min(brokers, 3)")
    retention_ms: int | None = Field(default=None, ge=-1, description="-1: keep forever; default: the broker's")
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"


class KafkaSink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str = Field(pattern=r"^[A-Za-z0-9._-]{1,200}$")
    table: str = Field(pattern=r"^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$", description="schema.table, e.g. raw.events")
    replicas: int = Field(default=2, ge=1, le=20)

    @property
    def service_name(self) -> str:
        return self.table.replace(".", "-").replace("_", "-")


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    brokers: int = Field(default=1, ge=1, le=9, description="KRaft brokers; from 3 on, 3 of them form the quorum")
    cluster_id: str = Field(default="c2F3bWlsbC1rYWZrYS0wMQ", pattern=r"^[A-Za-z0-9_-]{22}$")
    heap_mb: int = Field(default=768, ge=256, le=16384)
    topics: dict[str, KafkaTopic] = Field(
        default_factory=lambda: {"host_metrics": KafkaTopic(partitions=3, retention_ms=7 * 24 * 3600 * 1000)}
    )
    sinks: list[KafkaSink] = Field(
        default_factory=lambda: [KafkaSink(topic="host_metrics", table="raw.host_metrics", replicas=2)]
    )
    metrics_demo: bool = True
    metrics_interval: float = Field(default=2.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _coherent(self) -> KafkaSettings:
        for name, topic in self.topics.items():
            if topic.replication_factor is not None and topic.replication_factor > self.brokers:
                raise ValueError(
                    f"topics.{name}.replication_factor: {topic.replication_factor} copies need as many brokers;"
                    f" there are {self.brokers} (kafka.brokers)"
                )
        services = [sink.service_name for sink in self.sinks]
        clashing = sorted({name for name in services if services.count(name) > 1})
        if clashing:
            raise ValueError(f"sinks: two sinks would both be service sink-{clashing[0]}; give them other tables")
        return self

    def topics_spec(self) -> dict[str, dict[str, object]]:
        """What the topics job reads (`python -m parse_sources topics`, env KAFKA_TOPICS)."""
        return {name: topic.model_dump(exclude_none=True) for name, topic in self.topics.items()}


class Settings(BaseSettings):
    """Everything `deploy.py` needs to know about the platform it manages."""

    model_config = SettingsConfigDict(
        env_prefix="SAWMILL_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    domain: str = Field(default="localhost", description="base domain; services get subdomains of it")
    email: str | None = Field(default=None, description="contact address for the ACME account")
    prefix: str = Field(default="sawmill", description="prefix of every stack, secret, network and volume")
    components: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(COMPONENTS), description="components to run (default: all)"
    )
    http_port: Port = 80
    https_port: Port = 443
    certificates: Literal["local", "acme", "files"] = "local"
    certificate_file: Path | None = Field(
        default=None, description="files mode: the certificate chain, PEM, leaf first"
    )
    certificate_key_file: Path | None = Field(default=None, description="files mode: its private key, PEM, unencrypted")
    images: Literal["local", "registry"] = "local"
    image_overrides: dict[str, str] = Field(
        default_factory=dict, description="image name -> reference to run instead (pinning, canaries)"
    )
    build_dir: Path = Path("build")
    db_connect: DbConnectSettings = Field(default_factory=DbConnectSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower()
        if len(value) > 200 or not _DOMAIN_RE.match(value):
            raise ValueError(f"{value!r} is not a DNS name: use letters, digits, '-' and '.', e.g. 'example.com'")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL_RE.match(value):
            raise ValueError(f"{value!r} is not an email address, e.g. 'ops@example.com'")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX_RE.match(value):
            raise ValueError(f"{value!r} must be 1-20 lowercase letters/digits starting with a letter")
        return value

    @field_validator("components", mode="before")
    @classmethod
    def _split_components(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("components")
    @classmethod
    def _known_components(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in COMPONENTS]
        if unknown:
            raise ValueError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}")
        return [name for name in COMPONENTS if name in value]

    @field_validator("image_overrides")
    @classmethod
    def _image_overrides(cls, value: dict[str, str]) -> dict[str, str]:
        known = sorted({image.name for c in COMPONENTS.values() for image in c.images})
        for name, ref in value.items():
            if name not in known:
                raise ValueError(f"{name!r} is not an image of the platform; known: {', '.join(known)}")
            if not _IMAGE_REF_RE.match(ref):
                raise ValueError(f"{name}: {ref!r} is not an image reference, e.g. 'registry.local/sawmill/{name}:1.2'")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if not self.components:
            raise ValueError(f"components: name at least one; known: {', '.join(COMPONENTS)}")
        for name in self.components:
            missing = [dep for dep in COMPONENTS[name].requires if dep not in self.components]
            if missing:
                raise ValueError(f"components: {name} needs {', '.join(missing)}; add it to components")
        if self.http_port == self.https_port:
            raise ValueError(f"https_port: must differ from http_port (both are {self.https_port})")
        if self.certificates == "acme" and not self.email:
            raise ValueError("email: certificates = 'acme' needs an email address for the ACME account")
        if self.certificates == "acme" and self.domain == "localhost":
            raise ValueError("certificates: no public CA issues for 'localhost'; use 'local' or a real domain")
        if self.certificates == "acme":
            raise ValueError("certificates: 'acme' is not implemented yet; use 'local', or 'files' with your own")
        if self.certificates == "files" and (self.certificate_file is None or self.certificate_key_file is None):
            missing = "certificate_file" if self.certificate_file is None else "certificate_key_file"
            raise ValueError(f"{missing}: certificates = 'files' needs certificate_file and certificate_key_file (PEM)")
        return self

    @property
    def tls_hosts(self) -> tuple[str, ...]:
        """Every host name nginx answers for: the domain and each component's subdomain."""
        return tuple(sorted(set(self.subdomains.values()) | {self.domain}))

    @property
    def subdomains(self) -> dict[str, str]:
        """Host name of each enabled component that serves HTTP, keyed by component."""
        hosts = {}
        for name in self.components:
            sub = COMPONENTS[name].subdomain
            if sub is not None:
                hosts[name] = f"{sub}.{self.domain}" if sub else self.domain
        return hosts

    def url(self, host: str) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{host}{port}/"


def load_settings(**overrides: object) -> Settings:
    """Load and validate; raise ConfigError naming each bad key (with its env variable) and the fix."""
    config_file = os.environ.get(CONFIG_ENV)
    if config_file is not None and not Path(config_file).is_file():
        problem = f"{config_file} is not a file; unset {CONFIG_ENV} or point it at one"
        raise ConfigError(_describe([("config", problem)]))
    _warn_about_misspelt_variables()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [
            (".".join(str(part) for part in error["loc"]), error["msg"].removeprefix("Value error, "))
            for error in exc.errors()
        ]
        raise ConfigError(_describe(problems)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        path = config_file or DEFAULT_CONFIG_FILE
        raise ConfigError(_describe([("config", f"{path} is not valid TOML: {exc}")])) from None
    except SettingsError as exc:  # e.g. a JSON value in the environment that does not parse
        raise ConfigError(
            f"invalid configuration: {exc}\n"
            "a SAWMILL_* variable for a table or list takes JSON,"
            ' e.g. SAWMILL_IMAGE_OVERRIDES=\'{"db_connect": "..."}\''
        ) from None


def _warn_about_misspelt_variables() -> None:
    """SAWMILL_DOMIAN is not a setting: say so, as a misspelt key in the file is an error (other SAWMILL_*
    variables belong to scripts and containers, so only near misses of a setting are reported)."""
    settings = [f"SAWMILL_{name.upper()}" for name in Settings.model_fields]
    for variable in os.environ:
        top = variable.split("__", 1)[0]
        if not top.startswith("SAWMILL_") or top in settings:
            continue
        near = difflib.get_close_matches(top, settings, n=1, cutoff=0.85)
        if near:
            print(f"warning: {variable} is not a setting and is ignored; did you mean {near[0]}?", file=sys.stderr)


def invalid(problem: str) -> ConfigError:
    """A check made after loading (e.g. of files the settings name), as "key: message", reported like the rest."""
    return ConfigError(_describe([("", problem)]))


def _describe(problems: list[tuple[str, str]]) -> str:
    """Each (key, message) with its environment variable; a message "key: …" names its own key."""
    lines = ["invalid configuration:"]
    for key, message in problems:
        if not key and ":" in message:
            key, message = (part.strip() for part in message.split(":", 1))
        key = key or "config"
        env = "SAWMILL_" + key.upper().replace(".", "__")
        lines.append(f"  {key} (env {env}): {message}")
    lines.append(f"fix the key in {os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE)} or the environment")
    return "\n".join(lines)
