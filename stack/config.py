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
from typing import Annotated, Any, Literal, get_args

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from stack import acme_dns, components
from stack.acme_preflight import ACME_DIRECTORIES

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
# the swarm's own ports: manager API, gossip, overlay data
SWARM_PORTS = {2377: "the swarm's manager API", 7946: "the swarm's gossip", 4789: "the swarm's overlay traffic"}

Port = Annotated[int, Field(ge=1, le=65535)]

DnsProvider = Literal["digitalocean", "cloudflare", "route53", "rfc2136"]  # certbot's DNS plugins we pin
DNS_PROVIDERS: tuple[str, ...] = get_args(DnsProvider)


class ConfigError(Exception):
    """Configuration is invalid; `str()` lists each bad key with the fix."""


class AcmeSettings(BaseModel):
    """`[acme]`: where certificates = "acme" orders from and how the CA checks that the names are ours."""

    model_config = ConfigDict(extra="forbid")

    server: str = Field(
        default="production", description="'production' or 'staging' (Let's Encrypt), or an https directory URL"
    )
    ca_bundle: Path | None = Field(default=None, description="PEM CA certificates that sign a private CA's server")
    challenge: Literal["http-01", "dns-01"] = "http-01"
    dns_provider: DnsProvider | None = None
    dns_propagation_seconds: int | None = Field(
        default=None, ge=0, le=3600, description="wait after writing the TXT record (None: the plugin's default)"
    )
    dns_credentials_file: Path | None = Field(
        default=None,
        description="dns-01: the DNS provider's credentials, `key = value` lines; `up` keeps them only as a Docker"
        " secret of the ACME service",
    )
    key_type: Literal["ecdsa", "rsa"] = "ecdsa"
    renew_interval_seconds: int = Field(
        default=43200, ge=10, le=7 * 86400, description="how often the ACME service asks certbot (it renews at 2/3)"
    )
    retry_seconds: int = Field(
        default=300, ge=1, le=86400, description="after a failure, how soon the ACME service tries again"
    )
    first_certificate_seconds: int = Field(
        default=180, ge=0, le=3600, description="how long `up` waits for the ACME service's result"
    )
    preflight_dns: str | None = Field(
        default=None,
        description="host:port of the DNS server the pre-flight resolves names with (default: the system's);"
        " for split-horizon DNS, or a test CA's DNS",
    )

    @field_validator("preflight_dns")
    @classmethod
    def _preflight_dns(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port, e.g. 'dns.internal:53'")
        return value

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        if value in ACME_DIRECTORIES or value.startswith("https://"):
            return value
        if value.startswith("http://"):
            raise ValueError(f"an ACME directory is served over https, not {value!r}; write https://")
        raise ValueError(f"{value!r} is not 'production', 'staging' or an https:// ACME directory URL")

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            pem = value.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}; name the PEM file of the CA's root") from None
        try:
            x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ValueError(f"{value} holds no PEM certificate; name the PEM file of the CA's root") from None
        return value.resolve()

    @model_validator(mode="after")
    def _coherent(self) -> AcmeSettings:
        if self.challenge == "dns-01" and self.dns_provider is None:
            raise ValueError(f"dns_provider: challenge = 'dns-01' needs one of {', '.join(DNS_PROVIDERS)}")
        if self.challenge != "dns-01" and self.dns_provider is not None:
            raise ValueError(
                f"dns_provider: only challenge = 'dns-01' uses a DNS provider; set challenge = 'dns-01'"
                f" or remove dns_provider = {self.dns_provider!r}"
            )
        if self.challenge != "dns-01" and self.dns_propagation_seconds is not None:
            raise ValueError("dns_propagation_seconds: only challenge = 'dns-01' waits for DNS; remove it")
        self._check_dns_credentials()
        if self.ca_bundle is not None and self.server in ACME_DIRECTORIES:
            raise ValueError(
                f"ca_bundle: Let's Encrypt ({self.server}) is trusted already; a CA bundle is for a private CA's"
                " directory URL: remove ca_bundle or set server to that URL"
            )
        return self

    def _check_dns_credentials(self) -> None:
        path = self.dns_credentials_file
        if self.challenge != "dns-01":
            if path is not None:
                raise ValueError("dns_credentials_file: only challenge = 'dns-01' uses DNS credentials; remove it")
            return
        assert self.dns_provider is not None  # checked above
        expected = f"`key = value` lines: {acme_dns.credentials_template(self.dns_provider)}"
        if path is None:
            raise ValueError(
                f"dns_credentials_file: dns_provider = {self.dns_provider!r} needs its credentials, a file of"
                f" {expected}; `up` keeps them only as a Docker secret"
            )
        missing = acme_dns.missing_credentials(self.dns_provider, self.dns_credentials())
        if missing:
            raise ValueError(f"dns_credentials_file: {path} lacks {', '.join(missing)} (a file of {expected})")

    def dns_credentials(self) -> dict[str, str]:
        """The DNS provider's credentials, read from dns_credentials_file ({} without one)."""
        raw = self.dns_credentials_bytes()
        try:
            return acme_dns.parse_credentials(raw.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"dns_credentials_file: {self.dns_credentials_file}: {exc}") from None

    def dns_credentials_bytes(self) -> bytes:
        if self.dns_credentials_file is None:
            return b""
        try:
            return self.dns_credentials_file.read_bytes()
        except OSError as exc:
            raise ValueError(f"dns_credentials_file: cannot read {self.dns_credentials_file}: {exc.strerror}") from None

    @property
    def directory(self) -> str:
        return ACME_DIRECTORIES.get(self.server, self.server)

    @property
    def public_ca(self) -> bool:
        """Let's Encrypt: its validators reach port 80 only, and its rate limits apply."""
        return self.server in ACME_DIRECTORIES


class CoreSettings(BaseSettings):
    """What `deploy.py` needs to know about the platform as a whole; each component adds its own section."""

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
        default_factory=components.defaults, description="components to run (default: all)"
    )
    http_port: Port = 80
    https_port: Port = 443
    certificates: Literal["local", "acme", "files"] = "local"
    certificate_file: Path | None = Field(
        default=None, description="files mode: the certificate chain, PEM, leaf first"
    )
    certificate_key_file: Path | None = Field(default=None, description="files mode: its private key, PEM, unencrypted")
    acme: AcmeSettings = Field(default_factory=AcmeSettings, description="acme mode: the CA and the challenge")
    images: Literal["local", "registry"] = "local"
    image_overrides: dict[str, str] = Field(
        default_factory=dict, description="image name -> reference to run instead (pinning, canaries)"
    )
    build_dir: Path = Path("build")
    entrance_address: str | None = Field(
        default=None,
        description="where `up` checks every route through nginx: default the host of an ssh:// DOCKER_HOST, else"
        " 127.0.0.1",
    )

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
        if all(label.isdigit() for label in value.split(".")):
            raise ValueError(
                f"{value!r} is an IP address: services live on subdomains, which need a DNS name;"
                " use 'localhost' on this machine, or a domain whose records point here"
            )
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
        known = components.known()
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(known)}")
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed twice; name each component once")
        if not value:
            raise ValueError(f"name at least one; known: {', '.join(known)}")
        try:
            components.waves(value)
        except components.ComponentsError as exc:
            raise ValueError(str(exc)) from None
        return [name for name in known if name in value]  # the registry's order; deploy order is apply's

    @field_validator("image_overrides")
    @classmethod
    def _image_overrides(cls, value: dict[str, str]) -> dict[str, str]:
        known = sorted({image.name for c in components.known().values() for image in c.images})
        for name, ref in value.items():
            if name not in known:
                raise ValueError(f"{name!r} is not an image of the platform; known: {', '.join(known)}")
            if not _IMAGE_REF_RE.match(ref):
                raise ValueError(f"{name}: {ref!r} is not an image reference, e.g. 'registry.local/sawmill/{name}:1.2'")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> CoreSettings:
        for key in ("http_port", "https_port"):
            port = getattr(self, key)
            if port in SWARM_PORTS:
                raise ValueError(f"{key}: {port} is {SWARM_PORTS[port]}; pick another port")
        if self.http_port == self.https_port:
            raise ValueError(f"https_port: must differ from http_port (both are {self.https_port})")
        if self.certificates == "acme" and not self.email:
            raise ValueError("email: certificates = 'acme' needs an email address for the ACME account")
        if self.certificates == "acme" and self.domain == "localhost":
            raise ValueError("certificates: no public CA issues for 'localhost'; use 'local' or a real domain")
        if (
            self.certificates == "acme"
            and self.acme.challenge == "http-01"
            and self.acme.public_ca
            and self.http_port != 80
        ):
            raise ValueError(
                f"http_port: Let's Encrypt checks HTTP-01 on port 80 only, and nginx listens on {self.http_port};"
                " set http_port = 80, or use acme.challenge = 'dns-01'"
            )
        if self.certificates == "files" and (self.certificate_file is None or self.certificate_key_file is None):
            missing = "certificate_file" if self.certificate_file is None else "certificate_key_file"
            raise ValueError(f"{missing}: certificates = 'files' needs certificate_file and certificate_key_file (PEM)")
        self._check_connections()
        return self

    def _check_connections(self) -> None:
        """The Postgres connections the components may hold must fit in what the database server offers."""
        enabled = [components.known()[name] for name in self.components]
        capacity = next((c for c in enabled if c.db_capacity), None)
        if capacity is None or capacity.db_capacity is None:
            return
        budgets = {c.name: c.db_connections(self) for c in enabled if c.db_connections}
        offered = capacity.db_capacity(self)
        if sum(budgets.values()) <= offered:
            return
        largest = max(budgets, key=lambda name: budgets[name])
        spent = ", ".join(f"{name} {n}" for name, n in budgets.items())
        raise ValueError(
            f"{largest}: the components may hold {sum(budgets.values())} {capacity.name} connections ({spent}),"
            f" more than the {offered} that {capacity.name}'s settings offer; scale {largest} down or raise"
            f" {capacity.name}.max_connections"
        )

    @property
    def tls_hosts(self) -> tuple[str, ...]:
        """Every host name the entrance answers for: the domain and each route's host."""
        return tuple(sorted(set(self.hosts.values()) | {self.domain}))

    @property
    def hosts(self) -> dict[str, str]:
        """Host name of each enabled component with a route, keyed by component."""
        found = {}
        for name in self.components:
            route = components.known()[name].route
            if route is not None:
                found[name] = f"{route.subdomain}.{self.domain}" if route.subdomain else self.domain
        return found

    def url(self, host: str) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{host}{port}/"


def _settings_model() -> type[CoreSettings]:
    """The settings model: the core keys and one section per component that declares settings."""
    sections = {
        c.name: (c.settings, Field(default_factory=c.settings))
        for c in components.known().values()
        if c.settings is not None
    }
    return create_model("Settings", __base__=CoreSettings, __module__=__name__, **sections)  # type: ignore[call-overload]


Settings = _settings_model()


def load_settings(**overrides: object) -> Settings:
    """Load and validate; raise ConfigError naming each bad key (with its env variable) and the fix."""
    config_file = os.environ.get(CONFIG_ENV)
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError(f"invalid configuration:\n  {CONFIG_ENV}: {config_file} is not a file; unset it or name one")
    _warn_about_misspelt_variables()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [(_key(error["loc"]), _message(error)) for error in exc.errors()]
        raise ConfigError(_describe(problems)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid configuration:\n  {_config_file()} is not valid TOML: {exc}") from None
    except SettingsError as exc:  # e.g. a JSON value in the environment that does not parse
        raise ConfigError(
            f"invalid configuration: {exc}\n"
            "a SAWMILL_* variable for a table or list takes JSON,"
            ' e.g. SAWMILL_IMAGE_OVERRIDES=\'{"IMAGE": "registry.local/x:1"}\''
        ) from None


def _config_file() -> Path:
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))


def _key(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _message(error: dict) -> str:
    """Pydantic's message, with a "did you mean" for a misspelt key."""
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        near = difflib.get_close_matches(str(error["loc"][-1]), _keys_at(error["loc"][:-1]), n=1, cutoff=0.6)
        return f"not a setting here{f'; did you mean {near[0]}?' if near else ''} (see sawmill.example.toml)"
    return message


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a table of the settings takes, found by walking the models along `loc`."""
    model: Any = Settings
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part) if isinstance(part, str) else None
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _env(key: str) -> str:
    """The variable that sets `key`; a list item has none of its own, so its list's (JSON) is named."""
    parts = key.split(".")
    listed = next((i for i, part in enumerate(parts) if part.isdigit()), None)
    name = "SAWMILL_" + "__".join(parts[:listed]).upper()
    return name if listed is None else f"{name}, a JSON list"


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
    key, message = (part.strip() for part in problem.split(":", 1))
    return ConfigError(_describe([(key, message)]))


def _describe(problems: list[tuple[str, str]]) -> str:
    """Each (key, message) with its environment variable; a message "key: …" names its own key."""
    lines = ["invalid configuration:"]
    for key, message in problems:
        if ":" in message and " " not in message.split(":", 1)[0]:  # a cross-key check names the key it blames
            inner, message = (part.strip() for part in message.split(":", 1))
            key = f"{key}.{inner}" if key else inner
        lines.append(f"  {key} (env {_env(key)}): {message}")
    lines.append(f"fix the key in {_config_file()} or the environment")
    return "\n".join(lines)
