"""Apply: make the swarm match a plan, one stack per component, skipping what is unchanged.

First network, secrets, images and certificates; then Postgres, then the other components side by side:
nginx -t, `stack deploy`, wait until converged, record the deployed digest. A component whose digest matches
its record is not touched.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from python_on_whales import DockerException, docker

from stack import certs, images, names, secrets, swarm
from stack.components import COMPONENTS
from stack.plan import ComponentPlan, Plan, htpasswd_secret, write_plan
from stack.progress import say, step
from stack.verify import DeployError, wait_converged

CONVERGE_TIMEOUT_S = 180
RENEW_WARNING_DAYS = 21


def apply(plan: Plan, selected: list[str]) -> list[str]:
    """Deploy the selected components; return the names of those that changed."""
    settings = plan.settings
    chosen = [cp for cp in plan.components if cp.name in selected]
    for missing in plan.unavailable:
        say(
            f"! {missing.name}: no image can be built here in local mode (it needs {missing.missing_from}); "
            'its service is left out. Use images = "registry" where that registry is reachable.'
        )
    reader = images.reader(settings)
    with step("preparing network, secrets and node labels"):
        ensure_network(plan.network, settings.prefix)
        generated = [
            s for c in settings.components for s in (names.secret(settings.prefix, x) for x in COMPONENTS[c].secrets)
        ]
        created = secrets.ensure_generated(generated, settings.prefix)
        for name in created:
            say(f"  generated secret {name}")
        for c in plan.routes:
            if c.basic_auth:
                images.ensure([reader])
                secrets.ensure_htpasswd(
                    names.secret(settings.prefix, htpasswd_secret(c)),
                    names.secret(settings.prefix, c.basic_auth),
                    settings.prefix,
                    created,
                    reader.ref,
                )
        for name in selected:
            if COMPONENTS[name].pinned:
                _ensure_node_label(names.node_label(settings.prefix, name))
    images.ensure([ref for cp in chosen for ref in cp.images])
    if "webserver" in selected and settings.certificates == "local":
        images.ensure([reader])
        with step(f"checking certificates for {', '.join(plan.tls.hosts)}"):
            if certs.ensure_local(settings, plan.tls, reader.ref):
                say("  issued a new certificate from the local CA")
    if "webserver" in selected and plan.own_certificate is not None:
        with step(f"storing the certificate of {settings.certificate_file}"):
            if certs.ensure_files(plan.tls, plan.own_certificate, settings.prefix):
                say(f"  stored as config {plan.tls.crt_config} and secret {plan.tls.key_secret}")
            say(_validity(plan.own_certificate.not_after))
    write_plan(plan)
    changed = []
    # Postgres first (the others need the roles its init job makes), then the rest roll out side by side.
    for wave in ([cp for cp in chosen if cp.name == "postgres"], [cp for cp in chosen if cp.name != "postgres"]):
        started = [(cp, *begun) for cp in wave if (begun := _start(plan, cp))]
        if started:
            time.sleep(1)  # let Swarm register the updates before they are watched
        for cp, since, record in started:
            with step(f"waiting for {cp.name} to converge"):
                wait_converged(cp.stack_name, since, CONVERGE_TIMEOUT_S)
            _record(settings.prefix, cp, record)
            changed.append(cp.name)
    if "webserver" in selected:  # nginx runs on plan.tls now
        for name in certs.remove_stale(plan.tls, settings.prefix):
            say(f"  removed {name}, a certificate or key nginx no longer uses")
    return changed


def _validity(not_after: dt.datetime) -> str:
    days = (not_after - dt.datetime.now(dt.UTC)).days
    validity = f"valid until {not_after:%Y-%m-%d} ({days} days)"
    if days >= RENEW_WARNING_DAYS:
        return f"  {validity}"
    return f"! {validity}: renew the files and run `up` again before then"


def ensure_network(name: str, prefix: str) -> None:
    if not docker.network.exists(name):
        docker.network.create(name, driver="overlay", attachable=True, labels={names.PREFIX_LABEL: prefix})


def _ensure_node_label(label: str) -> None:
    """Pin a stateful component to this node the first time; later runs keep wherever its volume lives."""
    if not swarm.node_labelled(label):
        docker.node.update(docker.info().swarm.node_id, labels_add={label: "true"})


def _start(plan: Plan, cp: ComponentPlan) -> tuple[dt.datetime, swarm.Deployed | None] | None:
    """Hand a changed component's stack to Swarm; None if it is unchanged since its last successful deploy."""
    record = swarm.deployed(plan.settings.prefix, cp.name)
    if record and record.digest == cp.digest and swarm.services(cp.stack_name):
        say(f"✓ {cp.name}: unchanged")
        return None
    if cp.name == "webserver":
        with step("checking nginx configuration with nginx -t"):
            check_nginx(cp.images[0].ref, plan.directory(cp.name) / "nginx.conf")
    with step(f"deploying {cp.name} (stack {cp.stack_name})"):
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        docker.stack.deploy(cp.stack_name, [plan.directory(cp.name) / "stack.yml"], prune=True, resolve_image="never")
    return since, record


def check_nginx(image: str, conf: Path) -> None:
    """Run `nginx -t` on the rendered config in a throwaway container, with a throwaway certificate."""
    key, cert = certs.new_ca("nginx -t")
    with tempfile.TemporaryDirectory(prefix="sawmill-nginx-") as tmp:
        (Path(tmp) / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (Path(tmp) / "tls.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        try:
            docker.run(
                image,
                ["nginx", "-t", "-q", "-c", "/etc/nginx/nginx.conf"],
                volumes=[
                    (conf.resolve(), "/etc/nginx/nginx.conf", "ro"),
                    (Path(tmp) / "tls.crt", "/etc/nginx/tls/tls.crt", "ro"),
                    (Path(tmp) / "tls.key", "/run/secrets/tls.key", "ro"),
                ],
                networks=["none"],
                remove=True,
            )
        except DockerException as exc:
            raise DeployError(f"nginx rejected the rendered {conf}:\n{exc.stderr or exc.stdout}") from None


def _record(prefix: str, cp: ComponentPlan, previous: swarm.Deployed | None) -> None:
    """Remember what was deployed, as a Docker config holding the stack file (readable by `plan`)."""
    name = f"{prefix}_{cp.name}_deployed_{cp.digest}"
    if not swarm.config_exists(name):
        with secrets.fifo(cp.files["stack.yml"].encode()) as path:
            docker.config.create(
                name,
                path,
                labels={
                    names.PREFIX_LABEL: prefix,
                    names.COMPONENT_LABEL: cp.name,
                    swarm.DIGEST_LABEL: cp.digest,
                },
            )
    if previous and previous.config_name != name:
        docker.config.remove(previous.config_name)


def forget(prefix: str, component: str) -> None:
    record = swarm.deployed(prefix, component)
    if record:
        docker.config.remove(record.config_name)
