"""Status: one row per service with replicas, health and the URL that reaches it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cryptography import x509

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
    nodes: str  # host names of the nodes its running tasks are on


def render(swarm: Swarm, settings: Settings) -> str:
    """The table, with the nodes each service runs on when the swarm has more than one."""
    hosts = host_names(swarm)
    return table(rows(swarm, settings, hosts), nodes=len(hosts) > 1)


def host_names(swarm: Swarm) -> dict[str, str]:
    """Each node's host name by its ID."""
    return {node.id: node.hostname for node in swarm.nodes()}


def rows(swarm: Swarm, settings: Settings, hosts: dict[str, str]) -> list[Row]:
    """One per service (or per component not deployed); `hosts` names the nodes by ID."""
    result = []
    addresses = plan.addresses(settings)
    for name in settings.components:
        component = components.known()[name]
        services = swarm.services(names.stack(settings.prefix, name))
        if not services:
            result.append(Row(name, "-", "-", "not deployed", addresses[name], "-"))
        for service in services:
            # the URL belongs to the service it reaches (the entrance's: all of them); the others serve nothing
            reached = component.entrance or service.short == plan.serving_service(component)
            url = addresses[name] if reached or addresses[name] == plan.INTERNAL else "-"
            on = ",".join(sorted(hosts.get(node, node) for node in service.nodes)) or "-"
            result.append(_row(name, service, url, on))
    return result


def _row(component: str, service: ServiceState, url: str, on: str) -> Row:
    if service.job:
        state = service.job_state or "pending"
        return Row(component, service.short, "job", "completed" if state == "complete" else state, "-", "-")
    want = service.replicas if service.replicas is not None else max(service.running, 1)
    update = service.update_state or ""
    if update in {"updating", "rollback_started"}:
        health = update.replace("_", " ")
    elif service.running >= want:
        health = "healthy" if update != "rollback_completed" else "healthy (last update rolled back)"
    else:
        health = "starting" if service.running else "down"
    return Row(component, service.short, f"{service.running}/{want}", health, url, on)


def as_json(swarm: Swarm, settings: Settings) -> dict[str, object]:
    ca = certs.ca_path(settings)
    services = rows(swarm, settings, host_names(swarm))
    return {
        "domain": settings.domain,
        "prefix": settings.prefix,
        "ca_certificate": str(ca) if settings.certificates == "local" and ca.is_file() else None,
        "certificate": certificate(swarm, settings),
        "services": [asdict(r) for r in services],
        "urls": {r.component: r.url for r in services if r.url.startswith("https://")},  # as the table says
    }


def certificate(swarm: Swarm, settings: Settings) -> dict[str, object] | None:
    """acme mode: the certificate nginx serves (names, issuer, expiry) and the ACME service's last attempt."""
    if settings.certificates != "acme":
        return None
    current = certs.current_acme(swarm, settings.prefix)
    result: dict[str, object] = {"serving": "placeholder from the local CA (certificates pending)"}
    if current is not None:
        pair = certs.pair_names(settings.prefix, settings.tls_hosts, current)
        stored = swarm.config(pair.crt_config)
        if stored is not None:
            leaf = x509.load_pem_x509_certificates(stored.data)[0]
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            result = {
                "serving": pair.crt_config,
                "names": san.get_values_for_type(x509.DNSName),
                "issuer": leaf.issuer.rfc4514_string(),
                "not_after": leaf.not_valid_after_utc.isoformat(timespec="seconds"),
            }
    last = certs.acme_status(swarm, settings.prefix)
    if last is not None:
        result["last_attempt"] = {"at": last[1].at, "ok": last[1].ok, "message": last[1].message}
    return result


def certificate_lines(swarm: Swarm, settings: Settings) -> list[str]:
    """The certificate, for people: below the table, a failed renewal said plainly."""
    found = certificate(swarm, settings)
    if found is None:
        return []
    lines = [""]
    if "names" in found:
        names_ = ", ".join(found["names"])  # type: ignore[arg-type]
        lines.append(f"certificate: {names_}; issuer {found['issuer']}; valid until {found['not_after']}")
    else:
        lines.append(f"certificate: {found['serving']}")
    last = found.get("last_attempt")
    if isinstance(last, dict):
        if last["ok"]:
            lines.append(f"  last ACME attempt {last['at']}: ok")
        else:
            lines.append(f"! last ACME attempt {last['at']} FAILED (the certificate above keeps serving):")
            lines += [f"    {line}" for line in str(last["message"]).splitlines()]
    else:
        lines.append("  the ACME service has not reported yet")
    return lines


def table(rows_: list[Row], nodes: bool = False) -> str:
    """NODES (before URL, whose width varies most) only where a service can run on more than one node."""
    header = Row("COMPONENT", "SERVICE", "REPLICAS", "HEALTH", "URL", "NODES")
    fields = ["component", "service", "replicas", "health", *(["nodes"] if nodes else []), "url"]
    widths = [max(len(getattr(r, f)) for r in [header, *rows_]) for f in fields]
    lines = []
    for r in [header, *rows_]:
        cells = [getattr(r, f).ljust(w) for f, w in zip(fields, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
