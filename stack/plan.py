"""Plan: render each component's stack file and config files, purely from settings.

Nothing here talks to Docker. The result says what `apply` must ensure (images, secrets, certificates) and
carries a digest per component, so an unchanged component is not redeployed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import jinja2

from stack import certs, images, names, tls_files
from stack.components import COMPONENTS, Component
from stack.config import Settings, invalid


@dataclass(frozen=True)
class ComponentPlan:
    component: Component
    stack_name: str
    files: dict[str, str]  # file name in build/<component>/ -> rendered content
    images: tuple[images.ImageRef, ...]
    secrets: tuple[str, ...]  # full names of the generated secrets it needs
    digest: str

    @property
    def name(self) -> str:
        return self.component.name


@dataclass(frozen=True)
class Plan:
    settings: Settings
    network: str
    tls: certs.TlsNames
    own_certificate: tls_files.CertificateFiles | None  # files mode: what `up` stores (never rendered)
    components: tuple[ComponentPlan, ...]
    routes: tuple[Component, ...]  # components nginx serves on their subdomain
    unavailable: tuple[images.ImageRef, ...]  # images this mode cannot provide; their services are left out

    def component(self, name: str) -> ComponentPlan:
        return next(c for c in self.components if c.name == name)

    def directory(self, component: str) -> Path:
        return self.settings.build_dir / component


def make_plan(settings: Settings) -> Plan:
    """The whole plan; in `files` mode this reads and checks the certificate files (ConfigError if wrong)."""
    check_build_dir(settings.build_dir)
    own = certs.own_files(settings)
    tls = certs.tls_names(settings, own)
    refs = _image_refs(settings)
    return Plan(
        settings=settings,
        network=names.network(settings.prefix),
        tls=tls,
        own_certificate=own,
        components=tuple(_plan_component(COMPONENTS[name], settings, tls, refs) for name in settings.components),
        routes=tuple(_routes(settings, refs)),
        unavailable=tuple(ref for ref in refs.values() if ref.ref is None),
    )


def htpasswd_secret(component: Component) -> str:
    """The derived secret nginx reads for a component's basic auth (`admin:<crypt hash>`)."""
    assert component.basic_auth is not None
    return f"{component.basic_auth}_htpasswd"


def served(settings: Settings) -> list[Component]:
    """The components nginx routes to, without rendering anything (for `status`, which must not need more)."""
    return _routes(settings, _image_refs(settings))


def _image_refs(settings: Settings) -> dict[str, images.ImageRef]:
    return {img.name: images.ref(img, settings) for name in settings.components for img in COMPONENTS[name].images}


def _routes(settings: Settings, refs: dict[str, images.ImageRef]) -> list[Component]:
    """Enabled components with a subdomain and an upstream whose image this mode can provide."""
    routed = []
    for name in settings.components:
        c = COMPONENTS[name]
        upstream_image = c.upstream_image or c.images[0].name
        if c.upstream and c.subdomain is not None and refs[upstream_image].ref is not None:
            routed.append(c)
    return routed


def check_build_dir(build_dir: Path) -> None:
    """build_dir must hold only what Sawmill writes there: `write_plan` empties each component's folder."""
    own = {*COMPONENTS, "ca.crt"}
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
        for stale in directory.iterdir():
            if stale.is_file() and stale.name not in cp.files:
                stale.unlink()
        for file_name, content in cp.files.items():
            (directory / file_name).write_text(content)


def _plan_component(
    component: Component, settings: Settings, tls: certs.TlsNames, refs: dict[str, images.ImageRef]
) -> ComponentPlan:
    prefix = settings.prefix
    files = {name: _render(component, name, _context(settings, tls, refs)) for name in component.config_files}
    configs = {
        name: f"{prefix}_{component.name}_{name.replace('.', '_')}_{_sha(content)[:10]}"
        for name, content in files.items()
    }
    context = _context(settings, tls, refs) | {"configs": configs, "component": component}
    files["stack.yml"] = _render(component, "stack.yml", context)
    secrets = tuple(names.secret(prefix, s) for s in component.secrets)
    if component.name == "webserver":
        secrets += (tls.key_secret,)
        secrets += tuple(names.secret(prefix, htpasswd_secret(c)) for c in _routes(settings, refs) if c.basic_auth)
    return ComponentPlan(
        component=component,
        stack_name=names.stack(prefix, component.name),
        files=files,
        images=tuple(refs[img.name] for img in component.images),
        secrets=secrets,
        digest=_sha("\0".join(f"{k}\0{v}" for k, v in sorted(files.items())))[:16],
    )


def _context(settings: Settings, tls: certs.TlsNames, refs: dict[str, images.ImageRef]) -> dict[str, object]:
    prefix = settings.prefix
    enabled = [COMPONENTS[name] for name in settings.components]
    return {
        "s": settings,
        "prefix": prefix,
        "network": names.network(prefix),
        "image": {name: ref.ref for name, ref in refs.items()},
        "secret": lambda short: names.secret(prefix, short),
        "service": lambda component, name: names.service(prefix, component, name),
        "node_label": lambda component: names.node_label(prefix, component),
        "tls": tls,
        "hosts": settings.subdomains,
        "routes": _routes(settings, refs),
        "htpasswd": htpasswd_secret,
        "databases": [c.name for c in enabled if c.database],
        "readers": [c.name for c in enabled if c.warehouse == "reader"],
        "request_roles": [role for c in enabled for role in c.request_roles],
        "writers": [c.name for c in enabled if c.warehouse == "writer"],
    }


def _render(component: Component, name: str, context: dict[str, object]) -> str:
    template_path = component.template_dir / f"{name}.j2"
    if not template_path.exists():
        return (component.template_dir / name).read_text()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(component.template_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(template_path.name).render(context)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
