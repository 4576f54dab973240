"""Apply: make the swarm match a plan, one stack per component, in the waves `requires` gives.

First what the stacks mount (network, secrets, images, certificates); then each wave side by side: the
component's check (e.g. `nginx -t`), `stack deploy`, wait until converged. A component whose digest matches
its record, and whose services run as rendered, is not touched. Then every route is verified; only then are
the new versions recorded and what they replaced (certificates, configs) removed. If anything fails, the
services this run updated are rolled back, and the error says what serves now.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from stack import acme, certs, components, drift, images, names, placement, secrets
from stack.component import Check
from stack.config import Settings
from stack.plan import ComponentPlan, Plan, htpasswd_secret, write_plan
from stack.progress import say, step
from stack.swarm import NAMESPACE_LABEL, AlreadyExists, CheckFailed, Mount, Swarm
from stack.tls_names import dns_credentials_secret
from stack.verify import FAILED, DeployError, wait_converged

CONVERGE_TIMEOUT_S = 180
ROLLBACK_TIMEOUT_S = 120
RENEW_WARNING_DAYS = 21
DIGEST_LABEL = "sawmill.digest"

RouteCheck = Callable[[Plan, list[str]], None]


@dataclass(frozen=True)
class Deployed:
    """What `up` last deployed for a component: the digest of its plan and its stack file."""

    config_name: str
    digest: str
    stack_file: str


# Puts these locally built images on every node of the swarm (see stack/node_images.py).
ImageShipper = Callable[[list[str]], None]


@dataclass(frozen=True)
class Started:
    plan: ComponentPlan
    since: dt.datetime
    previous: Deployed | None


def deployed(swarm: Swarm, prefix: str, component: str) -> Deployed | None:
    found = [
        c
        for c in swarm.configs({names.COMPONENT_LABEL: component})
        if c.labels.get(names.PREFIX_LABEL) == prefix and DIGEST_LABEL in c.labels
    ]
    if not found:
        return None
    latest = max(found, key=lambda c: c.created)
    return Deployed(latest.name, latest.labels[DIGEST_LABEL], latest.data.decode())


def apply(
    swarm: Swarm,
    plan: Plan,
    selected: list[str],
    check_routes: RouteCheck,
    poll_s: float = 0.5,
    ship: ImageShipper | None = None,
) -> list[str]:
    """Deploy the selected components; return the names of those that changed. `ship` puts the images built here
    on the swarm's other nodes; without it, a swarm of several nodes is refused before anything changes."""
    settings = plan.settings
    began = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    chosen = [cp for cp in plan.components if cp.name in selected]
    check_memory(swarm, chosen)
    for missing in plan.unavailable:
        say(
            f"! {missing.name}: no image can be built here in local mode (it needs {missing.missing_from}); "
            "its service is left out. Where that image can be pulled, set `images` to pull pinned images"
            " (see sawmill.example.toml)"
        )
    built = sorted({r.ref for cp in chosen for r in cp.images if r.local_build and r.ref})
    if ship is None and built and (count := len(swarm.nodes())) > 1:
        raise DeployError(
            f"this swarm has {count} nodes, and the images `up` builds would exist on this one only: a task placed"
            " on another could not start. Give `up` the hosts list `deploy.py nodes` uses (--hosts hosts.json):"
            " it copies the images to every node over SSH"
        )
    _prepare(swarm, plan, selected)
    images.ensure(swarm, [ref for cp in chosen for ref in cp.images])
    if ship is not None and built:
        with step(f"putting the {len(built)} image(s) built here on the swarm's other nodes"):
            ship(built)
    entrance = plan.entrance if plan.entrance and plan.entrance.name in selected else None
    if entrance is not None:
        _ensure_certificate(swarm, plan)
    write_plan(plan)
    started: list[Started] = []
    try:
        for wave in components.waves(settings.components):
            now = [s for cp in chosen if cp.name in wave if (s := _start(swarm, plan, cp))]
            started += now
            if now:
                time.sleep(poll_s * 2)  # let Swarm register the updates before they are watched
            for s in now:
                with step(f"waiting for {s.plan.name} to converge"):
                    wait_converged(swarm, s.plan.stack_name, s.since, CONVERGE_TIMEOUT_S, poll_s)
        check_routes(plan, [s.plan.name for s in started])
    except DeployError as exc:
        raise DeployError(f"{exc}\n{_roll_back(swarm, started, poll_s)}") from None
    for s in started:
        _record(swarm, settings.prefix, s)
        _remove_unused_configs(swarm, s.plan)
    failure = None
    tls = plan.tls
    if entrance is not None and settings.certificates == "acme":
        tls, failure = _await_acme(swarm, plan, entrance, began)
    if entrance is not None:
        dns_secret = dns_credentials_secret(settings.prefix, plan.acme_dns_credentials)
        for name in certs.remove_stale(swarm, tls, settings.prefix, dns_secret):
            say(f"  removed {name}, a certificate or key the entrance no longer uses")
    if failure:
        raise DeployError(failure)
    return [s.plan.name for s in started]


def _await_acme(
    swarm: Swarm, plan: Plan, entrance: ComponentPlan, began: dt.datetime
) -> tuple[certs.TlsNames, str | None]:
    """Wait (bounded) for the ACME service's result when the planned names have no certificate yet or its last
    attempt failed; return the pair nginx serves and, on failure, what to tell the user."""
    settings = plan.settings
    prefix = settings.prefix
    assert entrance.component.acme_service is not None, f"{entrance.name} declares no acme_service"
    service = names.service(prefix, entrance.name, entrance.component.acme_service)
    wanted = set(acme.names_for(settings.domain, settings.tls_hosts, settings.acme.challenge))
    last = certs.acme_status(swarm, prefix)
    timeout = settings.acme.first_certificate_seconds
    if last is None or not last[1].ok or set(last[1].names) != wanted:
        since = began
        started = swarm.service_started(service)
        if started is None or started < began:  # not started by this run: ask for an attempt now
            swarm.restart_service(service)
            since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        with step(f"waiting for the ACME service's certificate for {', '.join(sorted(wanted))}", f"≤ {timeout} s"):
            last = _wait_status(swarm, prefix, since, timeout)
    current = certs.current_acme(swarm, prefix)
    tls = certs.pair_names(prefix, settings.tls_hosts, current) if current else plan.tls
    serving = _acme_serving(swarm, settings, tls, current is not None)
    if last is None:
        return tls, (
            f"the ACME service gave no result within {timeout} s ({settings.acme.server});"
            f" {serving}.\n`deploy.py status` shows its result once it has one; `deploy.py logs {entrance.name}`"
            " shows how far it got"
        )
    status = last[1]
    if not status.ok:
        return tls, (
            f"the ACME service could not obtain a certificate:\n{status.message}\n{serving}; it tries again"
            f" every {settings.acme.retry_seconds} s, and `up` asks again"
        )
    say(f"  certificate for {', '.join(status.names)} from {status.issuer}, valid until {status.not_after}")
    return tls, None


def _wait_status(
    swarm: Swarm, prefix: str, since: dt.datetime, timeout_s: float, poll_s: float = 1.0
) -> tuple[dt.datetime, certs.AcmeStatus] | None:
    deadline = time.monotonic() + timeout_s
    last_report = time.monotonic()
    while True:
        found = certs.acme_status(swarm, prefix)
        if found is not None and found[0] >= since:
            return found
        if time.monotonic() > deadline:
            return None
        if time.monotonic() - last_report > 10:
            say(f"  still waiting for the ACME service ({timeout_s - (deadline - time.monotonic()):.0f} s)")
            last_report = time.monotonic()
        time.sleep(poll_s)


def _acme_serving(swarm: Swarm, settings: Settings, tls: certs.TlsNames, issued: bool) -> str:
    """What nginx serves meanwhile, in words."""
    if not issued:
        return (
            f"nginx keeps serving a placeholder from the local CA ({certs.ca_path(settings)}) and the landing page"
            " says certificates are pending"
        )
    stored = swarm.config(tls.crt_config)
    if stored is None:
        return f"nginx keeps serving {tls.crt_config}"
    leaf = x509.load_pem_x509_certificates(stored.data)[0]
    return f"nginx keeps serving the previous certificate (valid until {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"


def check_memory(swarm: Swarm, chosen: list[ComponentPlan]) -> None:
    """A service whose memory limit no node has can never start: refuse before anything changes. Limits
    adding up to more than the nodes have is allowed (they are ceilings), but said."""
    nodes = swarm.node_memory()
    if not nodes:
        return
    largest = max(nodes)
    total = 0
    for cp in chosen:
        for service, (limit, replicas) in cp.memory_limits().items():
            total += limit * replicas
            if limit > largest:
                raise DeployError(
                    f"{cp.name}/{service}: its memory limit {limit / 2**30:.1f} GiB is more than any node has"
                    f" ({largest / 2**30:.1f} GiB); lower it in the component's settings or add a larger node"
                )
    if total > sum(nodes):
        say(
            f"! memory limits add up to {total / 2**30:.1f} GiB, more than the nodes' {sum(nodes) / 2**30:.1f} GiB:"
            " fine while services stay below their limits"
        )


def _prepare(swarm: Swarm, plan: Plan, selected: list[str]) -> None:
    settings = plan.settings
    labels = names.labels(settings.prefix)
    known = components.known()
    with step("preparing network, secrets and node labels"):
        if not swarm.network_exists(plan.network):
            swarm.create_network(plan.network, labels)
        generated = [names.secret(settings.prefix, s) for c in settings.components for s in known[c].generated_secrets]
        created = secrets.ensure_generated(swarm, generated, labels)
        for name in created:
            say(f"  generated secret {name}")
        for c in plan.routes:
            if c.route and c.route.basic_auth:
                derived = names.secret(settings.prefix, htpasswd_secret(c))
                if not swarm.secret_exists(derived):
                    source = names.secret(settings.prefix, c.route.basic_auth)
                    password = created.get(source) or _read(swarm, settings, source)
                    swarm.create_secret(derived, secrets.htpasswd(password), labels)
        wanted = [[names.node_label(settings.prefix, pin) for pin in pins(settings)]
                  for name in selected if (pins := known[name].pins)]  # fmt: skip
        nodes = swarm.nodes()
        for label, node_id in placement.place(wanted, nodes, swarm.this_node()).items():
            swarm.label_node(node_id, label)  # the first time; later runs keep it where its volume lives
            if len(nodes) > 1:
                say(f"  labelled node {next(n.hostname for n in nodes if n.id == node_id)} {label}")


def _read(swarm: Swarm, settings: Settings, secret: str) -> bytes:
    reader = images.reader(settings)
    images.ensure(swarm, [reader])
    assert reader.ref is not None
    return swarm.read_secret(secret, reader.ref, names.labels(settings.prefix))


def _ensure_certificate(swarm: Swarm, plan: Plan) -> None:
    settings = plan.settings
    if settings.certificates == "local":
        reader = images.reader(settings)
        images.ensure(swarm, [reader])
        assert reader.ref is not None
        with step(f"checking certificates for {', '.join(plan.tls.hosts)}"):
            if certs.ensure_local(swarm, settings, plan.tls, reader.ref):
                say("  issued a new certificate from the local CA")
    elif settings.certificates == "acme":
        if certs.ensure_dns_credentials(swarm, settings.prefix, plan.acme_dns_credentials):
            say(f"  stored the {settings.acme.dns_provider} credentials as a secret of the ACME service")
        if certs.current_acme(swarm, settings.prefix) is None:
            reader = images.reader(settings)
            images.ensure(swarm, [reader])
            assert reader.ref is not None
            with step("checking the placeholder certificate nginx serves until the ACME CA issues one"):
                certs.ensure_local(swarm, settings, plan.tls, reader.ref)
    elif plan.own_certificate is not None:
        with step(f"storing the certificate of {settings.certificate_file}"):
            if certs.ensure_files(swarm, plan.tls, plan.own_certificate, settings.prefix):
                say(f"  stored as config {plan.tls.crt_config} and secret {plan.tls.key_secret}")
            say(_validity(plan.own_certificate.not_after))


def _validity(not_after: dt.datetime) -> str:
    days = (not_after - dt.datetime.now(dt.UTC)).days
    validity = f"valid until {not_after:%Y-%m-%d} ({days} days)"
    if days >= RENEW_WARNING_DAYS:
        return f"  {validity}"
    return f"! {validity}: renew the files and run `up` again before then"


def _start(swarm: Swarm, plan: Plan, cp: ComponentPlan) -> Started | None:
    """Hand a changed component's stack to Swarm; None if it runs as rendered and is recorded as deployed."""
    record = deployed(swarm, plan.settings.prefix, cp.name)
    live = swarm.services(cp.stack_name)
    if record and record.digest == cp.digest and live:
        changed_by_hand = drift.differences(cp, live)
        if not changed_by_hand:
            say(f"✓ {cp.name}: unchanged")
            return None
        say(f"  {cp.name} was changed by hand, putting it back: {'; '.join(changed_by_hand)}")
    for check in cp.component.checks:
        with step(f"checking {cp.name}'s {_named(check)}: {' '.join(check.command[:2])}"):
            run_check(swarm, plan, cp, check)
    with step(f"deploying {cp.name} (stack {cp.stack_name})"):
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        swarm.deploy_stack(cp.stack_name, plan.directory(cp.name) / "stack.yml")
    return Started(cp, since, record)


def run_check(swarm: Swarm, plan: Plan, cp: ComponentPlan, check: Check) -> None:
    """Run one of the component's checks on its rendered files in a throwaway container (with a throwaway
    certificate if it needs one), so a file it would refuse never reaches a running service."""
    assert cp.images[0].ref is not None
    mounts = [Mount(plan.directory(cp.name) / name, target) for name, target in check.files.items()]
    with tempfile.TemporaryDirectory(prefix="sawmill-check-") as tmp:
        if check.tls is not None:
            key, cert = certs.new_ca("check")
            (Path(tmp) / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            (Path(tmp) / "tls.key").write_bytes(certs.key_pem(key))
            mounts += [Mount(Path(tmp) / "tls.crt", check.tls[0]), Mount(Path(tmp) / "tls.key", check.tls[1])]
        try:
            swarm.run_check(cp.images[0].ref, list(check.command), mounts)
        except CheckFailed as exc:
            raise DeployError(
                f"{cp.name}: {' '.join(check.command)} refused the rendered {_named(check)}:\n{exc}"
            ) from None


def _named(check: Check) -> str:
    """The files a check reads, by name when there are few."""
    return ", ".join(check.files) if len(check.files) <= 2 else f"{len(check.files)} files"


def _roll_back(swarm: Swarm, started: list[Started], poll_s: float) -> str:
    """Roll back every service this run updated (Swarm already did it for a failed update); say what serves."""
    lines = []
    for s in started:
        if s.previous is None:
            lines.append(f"  {s.plan.name}: new in this run, left as deployed (it has no earlier version)")
            continue
        rolled = []
        for service in swarm.services(s.plan.stack_name):
            state = service.update_since(s.since)
            if state is not None and state not in FAILED:
                swarm.rollback(service.name)
                rolled.append(service.name)
        deadline = time.monotonic() + ROLLBACK_TIMEOUT_S
        while rolled and time.monotonic() < deadline:
            states = {x.name: x.update_state for x in swarm.services(s.plan.stack_name)}
            if all(states.get(name) in FAILED | {"rollback_completed"} for name in rolled):
                break
            time.sleep(poll_s)
        lines.append(f"  {s.plan.name}: back on its previous version (deployed as {s.previous.digest})")
    untouched = "; everything else was not changed by this run" if lines else ""
    return "what serves now:\n" + "\n".join(lines) + untouched if lines else "nothing was changed by this run"


def _record(swarm: Swarm, prefix: str, s: Started) -> None:
    """Remember what was deployed, as a Docker config holding the stack file (readable by `plan`)."""
    cp = s.plan
    name = f"{prefix}_{cp.name}_deployed_{cp.digest}"
    labels = names.labels(prefix) | {names.COMPONENT_LABEL: cp.name, DIGEST_LABEL: cp.digest}
    with suppress(AlreadyExists):  # recorded by an earlier run of the same plan
        swarm.create_config(name, cp.files["stack.yml"].encode(), labels)
    if s.previous and s.previous.config_name != name:
        swarm.remove_configs([s.previous.config_name])


def _remove_unused_configs(swarm: Swarm, cp: ComponentPlan) -> None:
    """Configs of this stack that the new version no longer mounts (its earlier renders)."""
    mounted = set(drift.config_names(cp))
    stale = [c.name for c in swarm.configs({NAMESPACE_LABEL: cp.stack_name}) if c.name not in mounted]
    swarm.remove_configs(stale)


def forget(swarm: Swarm, prefix: str, component: str) -> None:
    record = deployed(swarm, prefix, component)
    if record:
        swarm.remove_configs([record.config_name])
