"""Status: one row per service with replicas, health and the URL that reaches it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from stack import certs, components, names, plan
from stack.config import Settings
from stack.swarm import ServiceState, Swarm


@dataclass(frozen=True)
class Row:
    component: str
    service: str
    replicas: str
    health: str
    url: str


def rows(swarm: Swarm, settings: Settings) -> list[Row]:
    result = []
    addresses = plan.addresses(settings)
    for name in settings.components:
        component = components.known()[name]
        services = swarm.services(names.stack(settings.prefix, name))
        if not services:
            result.append(Row(name, "-", "-", "not deployed", addresses[name]))
        for service in services:
            # the URL belongs to the service it reaches (the entrance's: all of them); the others serve nothing
            reached = component.entrance or service.short == plan.serving_service(component)
            url = addresses[name] if reached or addresses[name] == plan.INTERNAL else "-"
            result.append(_row(name, service, url))
    return result


def _row(component: str, service: ServiceState, url: str) -> Row:
    if service.job:
        state = service.job_state or "pending"
        return Row(component, service.short, "job", "completed" if state == "complete" else state, "-")
    want = service.replicas if service.replicas is not None else max(service.running, 1)
    update = service.update_state or ""
    if update in {"updating", "rollback_started"}:
        health = update.replace("_", " ")
    elif service.running >= want:
        health = "healthy" if update != "rollback_completed" else "healthy (last update rolled back)"
    else:
        health = "starting" if service.running else "down"
    return Row(component, service.short, f"{service.running}/{want}", health, url)


def as_json(swarm: Swarm, settings: Settings) -> dict[str, object]:
    ca = certs.ca_path(settings)
    services = rows(swarm, settings)
    return {
        "domain": settings.domain,
        "prefix": settings.prefix,
        "ca_certificate": str(ca) if settings.certificates == "local" and ca.is_file() else None,
        "services": [asdict(r) for r in services],
        "urls": {r.component: r.url for r in services if r.url.startswith("https://")},  # as the table says
    }


def table(rows_: list[Row]) -> str:
    header = Row("COMPONENT", "SERVICE", "REPLICAS", "HEALTH", "URL")
    widths = [max(len(getattr(r, f)) for r in [header, *rows_]) for f in Row.__dataclass_fields__]
    lines = []
    for r in [header, *rows_]:
        cells = [getattr(r, f).ljust(w) for f, w in zip(Row.__dataclass_fields__, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
