"""Plan: render each component's stack file and config files, purely from settings.

Nothing here talks to Docker. The result says what `apply` must ensure (images, secrets, certificates) and
carries a digest per component, so an unchanged component is not redeployed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml

from stack import acme, certs, components, images, names, tls_files, tls_names
from stack.component import Component
from stack.config import Settings, invalid

NOT_SERVED = "(not served in this mode)"
INTERNAL = "(internal)"
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_yaml(text: str) -> dict:
    """A rendered stack file, parsed by libyaml where PyYAML has it (its wheels do): ~10 times faster than the
    pure-Python parser, which took a second of a no-op `up`."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@dataclass(frozen=True)
class ComponentPlan:
    component: Component
    stack_name: str
    files: dict[str, str]  # path in build/<component>/ -> rendered content
    images: tuple[images.ImageRef, ...]
    secrets: tuple[str, ...]  # full names of the secrets its stack mounts
    digest: str

    @property
    def name(self) -> str:
        return self.component.name

    def services(self) -> dict[str, dict]:
        """The rendered stack file's services, parsed."""
        return parse_yaml(self.files["stack.yml"]).get("services", {})

    def memory_limits(self) -> dict[str, tuple[int, int]]:
        """Each long-running service's memory limit in bytes and its replicas (jobs and unlimited ones left out)."""
        limits = {}
        for name, service in self.services().items():
            deploy = service.get("deploy", {})
            limit = deploy.get("resources", {}).get("limits", {}).get("memory")
            if limit is not None and deploy.get("mode") != "replicated-job":
                limits[name] = (memory_bytes(str(limit)), int(deploy.get("replicas", 1)))
        return limits


@dataclass(frozen=True)
class Plan:
    settings: Settings
    network: str
    tls: certs.TlsNames
    own_certificate: tls_files.CertificateFiles | None  # files mode: what `up` stores (never rendered)
    components: tuple[ComponentPlan, ...]
    routes: tuple[Component, ...]  # components the entrance serves on their host
    unavailable: tuple[images.ImageRef, ...]  # images this mode cannot provide; their services are left out
    acme_dns_credentials: bytes = field(default=b"", repr=False)  # dns-01: `up` stores them as a secret, unrendered

    def component(self, name: str) -> ComponentPlan:
        return next(c for c in self.components if c.name == name)

    def directory(self, component: str) -> Path:
        return self.settings.build_dir / component

    @property
    def entrance(self) -> ComponentPlan | None:
        return next((cp for cp in self.components if cp.component.entrance), None)


def make_plan(settings: Settings, acme_digest: str | None = None) -> Plan:
    """The whole plan; in `files` mode this reads and checks the certificate files (ConfigError if wrong). In
    `acme` mode `acme_digest` names the pair the ACME service stored (certs.current_acme); None: the placeholder."""
    check_build_dir(settings.build_dir)
    own = certs.own_files(settings)
    acme_digest = acme_digest if settings.certificates == "acme" else None
    tls = certs.tls_names(settings, own, acme_digest)
    refs = _image_refs(settings)
    routes = tuple(_routes(settings, refs))
    context = _context(settings, tls, refs, routes)
    acme_mode = settings.certificates == "acme"
    context["acme_pending"] = acme_mode and acme_digest is None
    context["acme_names"] = acme.names_for(settings.domain, settings.tls_hosts, settings.acme.challenge)
    bundle = settings.acme.ca_bundle
    context["acme_ca"] = bundle.read_text() if acme_mode and bundle is not None else ""
    dns = _dns_credentials(settings) if acme_mode else b""
    context["acme_dns_secret"] = tls_names.dns_credentials_secret(settings.prefix, dns)
    return Plan(
        settings=settings,
        network=names.network(settings.prefix),
        tls=tls,
        own_certificate=own,
        components=tuple(
            _plan_component(components.known()[name], settings, tls, refs, routes, context)
            for name in settings.components
        ),
        routes=routes,
        unavailable=tuple(ref for ref in refs.values() if ref.ref is None),
        acme_dns_credentials=dns,
    )


def _dns_credentials(settings: Settings) -> bytes:
    """dns-01's provider credentials as `up` will store them (read again: the file may have changed since)."""
    try:
        return settings.acme.dns_credentials_bytes()
    except ValueError as exc:
        raise invalid(f"acme.{exc}") from None


def addresses(settings: Settings) -> dict[str, str]:
    """What each enabled component is reached at, the one wording everywhere: its URL, INTERNAL, or
    NOT_SERVED when the image behind its route cannot be had in this mode (or nothing serves the routes)."""
    routed = {c.name for c in _routes(settings, _image_refs(settings))}
    entrance = components.entrance(settings.components)
    result = {}
    for name in settings.components:
        host = settings.hosts.get(name)
        if host is None:
            result[name] = INTERNAL
        elif entrance is not None and (name in routed or name == entrance.name):
            result[name] = settings.url(host)
        else:
            result[name] = NOT_SERVED
    return result


def serving_service(component: Component) -> str | None:
    """The service of a component that its URL reaches (the entrance: all of them)."""
    return component.route.service if component.route else None


def memory_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?", text.strip().lower())
    if not match:
        raise ValueError(f"not a memory size: {text!r}")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])


def _image_refs(settings: Settings) -> dict[str, images.ImageRef]:
    known = components.known()
    return {
        img.name: images.ref(img, settings)
        for name in settings.components
        for img in known[name].images
        if img.is_used(settings)
    }


def _routes(settings: Settings, refs: dict[str, images.ImageRef]) -> list[Component]:
    """Enabled components whose route leads to a service whose image this mode can provide."""
    routed = []
    for name in settings.components:
        c = components.known()[name]
        upstream = c.upstream_image
        if upstream is not None and refs[upstream].ref is not None:
            routed.append(c)
    return routed


def check_build_dir(build_dir: Path) -> None:
    """build_dir must hold only what Sawmill writes there: `write_plan` empties each component's folder."""
    own = {*components.known(), "ca.crt"}
    if build_dir.exists() and not build_dir.is_dir():
        raise invalid(f"build_dir: {build_dir} is a file; name a directory of its own, e.g. 'build'")
    foreign = sorted(p.name for p in build_dir.iterdir() if p.name not in own) if build_dir.is_dir() else []
    if foreign:
        raise invalid(
            f"build_dir: {build_dir.resolve()} holds files Sawmill did not write ({', '.join(foreign[:3])}"
            f"{', …' if len(foreign) > 3 else ''}),"
            " and rendering would delete some; name an empty or new directory"
        )
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise invalid(f"build_dir: cannot create {build_dir}: {exc.strerror}") from None


def write_plan(plan: Plan) -> None:
    """Write the rendered files into build/<component>/, replacing what a previous plan wrote."""
    for cp in plan.components:
        directory = plan.directory(cp.name)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in sorted(directory.rglob("*"), reverse=True):
            relative = stale.relative_to(directory).as_posix()
            if stale.is_file() and relative not in cp.files:
                stale.unlink()
            elif stale.is_dir() and not any(stale.iterdir()):
                stale.rmdir()
        for file_name, content in cp.files.items():
            (directory / file_name).parent.mkdir(parents=True, exist_ok=True)
            (directory / file_name).write_text(content)


def config_name(prefix: str, component: str, file_name: str, content: str) -> str:
    """A Docker config's name: the file's path and a digest of its content, so a change rolls the service."""
    flat = re.sub(r"[^A-Za-z0-9_-]", "_", file_name)
    return f"{prefix}_{component}_{flat}_{_sha(content)[:10]}"


def _plan_component(
    component: Component,
    settings: Settings,
    tls: certs.TlsNames,
    refs: dict[str, images.ImageRef],
    routes: tuple[Component, ...],
    context: dict[str, object],
) -> ComponentPlan:
    prefix = settings.prefix
    own = context | {"component": component}
    rendered = {name: _render(component, name, own) for name in component.config_files}
    files = {name: content for name, content in rendered.items() if content}  # empty: this mode does not use it
    configs = {name: config_name(prefix, component.name, name, content) for name, content in files.items()}
    files["stack.yml"] = _render(component, "stack.yml", own | {"configs": configs})
    secrets = tuple(names.secret(prefix, s) for s in component.stack_secrets)
    if component.entrance:
        secrets += (tls.key_secret,)
        secrets += tuple(names.secret(prefix, htpasswd_secret(c)) for c in routes if c.route and c.route.basic_auth)
    return ComponentPlan(
        component=component,
        stack_name=names.stack(prefix, component.name),
        files=files,
        images=tuple(refs[img.name] for img in component.images if img.is_used(settings)),
        secrets=secrets,
        digest=_digest(files, tls if component.entrance and settings.certificates == "acme" else None),
    )


def _digest(files: dict[str, str], acme_pair: certs.TlsNames | None) -> str:
    """What `up` records as deployed. In acme mode the pair's names are left out: the ACME service rolls nginx to
    each renewal itself, so an `up` after a renewal finds the entrance as recorded and touches nothing."""
    text = "\0".join(f"{k}\0{v}" for k, v in sorted(files.items()))
    if acme_pair is not None:
        text = text.replace(acme_pair.crt_config, "<acme certificate>").replace(acme_pair.key_secret, "<acme key>")
    return _sha(text)[:16]


def htpasswd_secret(component: Component) -> str:
    """The derived secret the entrance reads for a route's basic auth (`admin:<crypt hash>`)."""
    assert component.route is not None and component.route.basic_auth is not None
    return f"{component.route.basic_auth}_htpasswd"


def _context(
    settings: Settings, tls: certs.TlsNames, refs: dict[str, images.ImageRef], routes: tuple[Component, ...]
) -> dict[str, object]:
    """What every template sees. Lists about the other components (databases, readers...) are for the
    components whose job they are (the database's init, the entrance's routes)."""
    prefix = settings.prefix
    enabled = [components.known()[name] for name in settings.components]
    context: dict[str, object] = {
        "s": settings,
        "prefix": prefix,
        "network": names.network(prefix),
        "image": {name: ref.ref for name, ref in refs.items()},
        "secret": lambda short: names.secret(prefix, short),
        "service": lambda component, name: names.service(prefix, component, name),
        "node_label": lambda pin: names.node_label(prefix, pin),
        "tls": tls,
        "hosts": settings.hosts,
        "routes": list(routes),
        "htpasswd": htpasswd_secret,
        "databases": [c.name for c in enabled if c.database],
        "readers": [c.name for c in enabled if c.warehouse == "reader"],
        "analysts": [c.name for c in enabled if c.warehouse == "analyst"],
        "writers": [c.name for c in enabled if c.warehouse == "writer"],
        "authenticators": {c.name: list(c.request_roles) for c in enabled if c.request_roles},
    }
    context["snippets"] = {
        c.name: _render(c, c.route.nginx.removesuffix(".j2"), context | {"component": c})
        for c in routes
        if c.route and c.route.nginx
    }
    return context


def _render(component: Component, name: str, context: dict[str, object]) -> str:
    template_path = component.folder / f"{name}.j2"
    if not template_path.exists():
        return (component.folder / name).read_text()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(component.folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(f"{name}.j2").render(context)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
