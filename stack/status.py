"""Status: one row per service with replicas, health and the URL people use to reach it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from stack import certs, names, plan, swarm
from stack.config import Settings


@dataclass(frozen=True)
class Row:
    component: str
    service: str
    replicas: str
    health: str
    url: str


def rows(settings: Settings) -> list[Row]:
    result = []
    # served: routed to an upstream this mode can run, or nginx itself (the landing page)
    served = {c.name for c in plan.served(settings)} | {"webserver"}
    for component in settings.components:
        host = settings.subdomains.get(component)
        url = "(internal)" if host is None else settings.url(host) if component in served else "(not served here)"
        services = swarm.services(names.stack(settings.prefix, component))
        if not services:
            result.append(Row(component, "-", "-", "not deployed", url))
        for service in services:
            result.append(_row(component, service, url))
    return result


def _row(component: str, service, url: str) -> Row:
    tasks = swarm.tasks(service)
    short = service.spec.name.removeprefix(f"{service.spec.labels.get(swarm.NAMESPACE_LABEL)}_")
    if swarm.is_job(service):
        state = tasks[0].status.state if tasks else "pending"
        return Row(component, short, "job", {"complete": "completed"}.get(state, state), "-")
    have = swarm.running(tasks)
    want = swarm.desired_replicas(service)
    want = want if want is not None else max(have, 1)
    update = (service.update_status.state if service.update_status else None) or ""
    if update in {"updating", "rollback_started"}:
        health = update.replace("_", " ")
    elif have >= want:
        health = "healthy" if update != "rollback_completed" else "healthy (last update rolled back)"
    else:
        health = "starting" if have else "down"
    return Row(component, short, f"{have}/{want}", health, url)


def as_json(settings: Settings) -> dict[str, object]:
    ca = certs.ca_path(settings)
    services = rows(settings)
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
