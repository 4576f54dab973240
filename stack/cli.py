"""The command line: parse, load config, call plan/apply/verify. No Docker logic lives here."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from pathlib import Path

from python_on_whales import DockerException

from stack import (
    apply,
    certs,
    components,
    drift,
    images,
    lock,
    names,
    node_images,
    node_volumes,
    nodes,
    plan,
    status,
    teardown,
    verify,
)
from stack.config import ConfigError, Settings, load_settings
from stack.progress import say, step
from stack.swarm import DockerSwarm, Engine, EngineError, RemoteEngine, Swarm

EPILOG = """\
examples:
  python deploy.py up                  bring the whole platform up (zero config: *.localhost, local CA)
  python deploy.py up db_connect       deploy one component
  python deploy.py plan                render build/ and show what `up` would change
  python deploy.py status              table of services, replicas, health and URLs
  python deploy.py logs db_connect     last log lines of a component's services
  python deploy.py secrets show db_connect_api_key
  python deploy.py lock status         who holds the deploy lock, if anyone
  python deploy.py down --volumes      remove the platform and its data
  python deploy.py nodes hosts.json    form and label a swarm of several hosts over SSH
  python deploy.py --host ssh://root@10.0.0.5 status
                                       talk to a remote swarm's manager (as DOCKER_HOST=ssh://... does)
  python deploy.py --host ssh://root@10.0.0.5 up --hosts hosts.json
                                       deploy onto several nodes: the images built on the manager are copied
                                       to every node that lacks them, over SSH

configuration: sawmill.toml in the current directory (or $SAWMILL_CONFIG), overridden by
SAWMILL_<KEY> environment variables (nested keys with __, e.g. SAWMILL_DB_CONNECT__REPLICAS=3).
See sawmill.example.toml for every key.
"""

NODES_HELP = """\
Form a swarm from a list of hosts, over SSH, and label its nodes. Run it again at any time: it changes only
what differs from the list, and says "nothing to change" when nothing does.

HOSTS_FILE (what `terraform output -json hosts` gives):
  [
    {"name": "m1", "address": "10.0.0.5", "public_address": "203.0.113.5", "role": "manager",
     "labels": {"entry": "true"}},
    {"name": "w1", "address": "10.0.0.6", "role": "worker", "labels": {"volumes": "true"}}
  ]
  address         the private address: the swarm's ports 2377 and 7946 listen on it only, and overlay traffic
                  goes from it (4789/udp is a kernel socket on every interface: a firewall must close it)
  public_address  where SSH reaches the host (default: address)
  labels          node labels, added or updated (labels not in the list are left alone)

What it does:
  1. asks each host's engine over SSH (ssh USER@ADDRESS docker ...; your ~/.ssh/config applies);
  2. if no host is in a swarm, `docker swarm init` on the first manager;
  3. joins the others with a token read from a manager at that moment (kept in memory only);
  4. sets each node's role and labels, then prints the table of nodes;
  5. copies to each node the images the deployed services run that it lacks (a node added after `up`).
A host that does not answer is reported and left out (exit status 0); only a swarm that cannot be reached
or formed is an error (1).

example:
  python deploy.py nodes hosts.json --ssh-user root
  export DOCKER_HOST=ssh://root@203.0.113.5    # then up, status, ... run against that swarm
"""
VERIFY_TIMEOUT_S = 90
LOCK_WAIT_S = 600
TLS_KEY_SOURCE = {
    "local": "issued by the local CA",
    "files": "read from certificate_key_file",
    "acme": "a placeholder from the local CA until the ACME service stores the CA's certificate",
}


def connect() -> Swarm:
    """The swarm the docker CLI reaches (tests replace this with an in-memory one)."""
    return DockerSwarm()


def ssh_url(host: nodes.Host, ssh_user: str) -> str:
    return f"ssh://{ssh_user}@{host.ssh_address}"


def connect_host(host: nodes.Host, ssh_user: str) -> Engine:
    """One host's engine over SSH (tests replace this)."""
    return RemoteEngine(ssh_url(host, ssh_user))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.host:  # every docker CLI call, python-on-whales' and our own, then reaches that engine
        os.environ["DOCKER_HOST"] = args.host
    try:
        settings = load_settings()
        return args.handler(connect(), settings, args)
    except BrokenPipeError:  # e.g. `status --json | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except lock.LockHeld as exc:
        say(f"error: {exc}")
        return 1
    except ConfigError as exc:
        say(f"error: {exc}")
        return 2
    except verify.DeployError as exc:
        say(f"error: {exc}")
        say("fix the cause and run `up` again")
        return 1
    except DockerException as exc:
        say(f"error: docker failed: {' '.join(exc.docker_command[:4])} …\n{(exc.stderr or '').strip()}")
        say("is the engine running and this node a swarm manager? try `docker info`")
        return 1
    except KeyboardInterrupt:  # the deploy lock was released on the way out (lock.held)
        say(
            "\ninterrupted: the deploy lock is released; what was already handed to Swarm goes on rolling out."
            " `deploy.py status` shows where it stands; `deploy.py up` again finishes the job (it changes only"
            " what changed)"
        )
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploy.py",
        description="Sawmill: bring a secured analytics platform up on a Docker Swarm.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host",
        metavar="URL",
        help="the swarm manager's engine, e.g. ssh://root@10.0.0.5 (default: $DOCKER_HOST, else this machine's)",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    known = list(components.known())
    named = f"components (default: all enabled): {', '.join(known)}"

    up = sub.add_parser(
        "up",
        help="deploy (idempotent); prints the URLs",
        description="Build or pull the images, create what is missing (network, secrets, certificates) and roll out"
        " every component whose rendered stack changed; unchanged ones are left alone. Named components must be"
        " enabled in `components`, and what they require must already run. One `up` or `down` at a time: a second"
        " waits for the deploy lock.",
    )
    up.add_argument("components", nargs="*", metavar="COMPONENT", help=named)
    _lock_wait(up)
    up.add_argument(
        "--hosts",
        type=Path,
        metavar="HOSTS_FILE",
        help="a swarm of several nodes: the hosts list `nodes` takes; the images built here are copied to each"
        " node that lacks them, over SSH",
    )
    _ssh_user(up)
    up.set_defaults(handler=_up)

    down = sub.add_parser(
        "down",
        help="remove components; data volumes are kept unless --volumes",
        description="Remove the named components' stacks, or with no name every enabled component's. By default"
        " data volumes, secrets and the local CA are kept, so `up` brings the same platform back.",
    )
    down.add_argument("components", nargs="*", metavar="COMPONENT", help=named)
    _lock_wait(down)
    down.add_argument("--volumes", action="store_true", help="also delete data volumes (irreversible)")
    down.add_argument(
        "--purge",
        action="store_true",
        help="remove everything: data volumes too (as --volumes), secrets, the local CA and the network",
    )
    down.add_argument(
        "--hosts",
        type=Path,
        metavar="HOSTS_FILE",
        help="a swarm of several nodes: the hosts list `nodes` takes; with --volumes or --purge the data volumes"
        " on each node are removed too, over SSH",
    )
    _ssh_user(down)
    down.set_defaults(handler=_down)

    st = sub.add_parser("status", help="table of services, replicas, health and URLs")
    st.add_argument("--json", action="store_true", help="machine-readable, with the CA certificate path")
    st.set_defaults(handler=_status)

    pl = sub.add_parser(
        "plan",
        help="render into build/ and diff against what runs; changes nothing",
        description="Render every stack and config file into build_dir, then show per component whether `up` would"
        " change it (with a diff of stack.yml), which images it would build or pull and which secrets it would make."
        " Nothing on the swarm changes.",
    )
    pl.set_defaults(handler=_plan)

    logs = sub.add_parser(
        "logs",
        help="logs of a component's services",
        description="The last lines of each of a component's services (deploy it with `up` first).",
    )
    logs.add_argument("component", choices=known, metavar="COMPONENT", help=", ".join(known))
    logs.add_argument("--tail", type=int, default=50, help="lines per service (default 50)")
    logs.set_defaults(handler=_logs)

    for component in components.known().values():
        for command, spec in component.commands.items():
            added = sub.add_parser(command, help=f"{spec.help} ({component.name})", add_help=False)
            added.add_argument("arguments", nargs=argparse.REMAINDER, help="passed on; try --help")
            added.set_defaults(handler=_in_service, component=component.name, spec=spec)

    lk = sub.add_parser("lock", help="show or free the deploy lock")
    lk_sub = lk.add_subparsers(required=True, metavar="ACTION")
    lk_sub.add_parser("status", help="who holds the lock, since when").set_defaults(handler=_lock_status)
    lk_sub.add_parser(
        "release", help="free a lock whose holder died (check `lock status` first: a live holder loses it)"
    ).set_defaults(handler=_lock_release)

    nd = sub.add_parser(
        "nodes",
        help="form and label a swarm of several hosts over SSH (idempotent)",
        description=NODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    nd.add_argument("hosts_file", type=Path, metavar="HOSTS_FILE", help="JSON list of hosts (Terraform's output)")
    _ssh_user(nd)
    nd.set_defaults(handler=_nodes)

    sec = sub.add_parser("secrets", help="read generated secrets")
    sec_sub = sec.add_subparsers(required=True, metavar="ACTION")
    show = sec_sub.add_parser("show", help="print one secret's value (e.g. db_connect_api_key)")
    show.add_argument("name", help="short name, without the prefix")
    show.set_defaults(handler=_secret_show)
    return parser


def _ssh_user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ssh-user",
        default="root",
        help="the user SSH logs in as (default root); it must be able to run docker, e.g. be in the docker group",
    )


def _lock_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lock-wait",
        type=float,
        default=LOCK_WAIT_S,
        metavar="SECONDS",
        help=f"how long to wait for another up/down to finish (default {LOCK_WAIT_S:.0f}; 0: fail at once)",
    )


def _known(requested: list[str]) -> list[str]:
    """The named components; ConfigError for a name that is none."""
    known = components.known()
    unknown = [c for c in requested if c not in known]
    if unknown:
        raise ConfigError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return requested


def _selected(settings: Settings, requested: list[str]) -> list[str]:
    _known(requested)
    disabled = [c for c in requested if c not in settings.components]
    if disabled:
        raise ConfigError(f"components: {', '.join(disabled)} not enabled; add to `components` in the config")
    return [c for c in settings.components if not requested or c in requested]


def _up(swarm: Swarm, settings: Settings, args: argparse.Namespace) -> int:
    selected = _selected(settings, args.components)
    ship = _image_shipper(swarm, nodes.load_hosts(args.hosts), args.ssh_user) if args.hosts else None
    with lock.held(swarm, settings.prefix, "up", args.lock_wait):
        digest = _acme_digest(swarm, settings)
        the_plan = plan.make_plan(settings, digest)
        apply.apply(swarm, the_plan, selected, check_routes, ship=ship)
        entrance = the_plan.entrance is not None and the_plan.entrance.name in selected
        if entrance and digest is None and (issued := _acme_digest(swarm, settings)):  # the first came in this run
            say("the first certificate serves: rendering the entrance on it (no more 'certificates are pending')")
            apply.apply(swarm, plan.make_plan(settings, issued), selected, check_routes, ship=ship)
    print(status.render(swarm, settings))
    _print_urls(settings)
    return 0


def _connect_as(ssh_user: str) -> Callable[[nodes.Host], Engine]:
    return lambda host: connect_host(host, ssh_user)


def _image_shipper(swarm: Swarm, hosts: list[nodes.Host], ssh_user: str) -> apply.ImageShipper:
    """Copies images from the engine `up` builds on (DOCKER_HOST's) to every other host of the list."""

    def ship(refs: list[str]) -> None:
        node_images.ship(refs, hosts, _connect_as(ssh_user), None, swarm.this_node())

    return ship


def check_routes(the_plan: plan.Plan, changed: list[str]) -> None:
    """Every route of the changed components (all of them if the entrance changed) answers through it."""
    settings = the_plan.settings
    if the_plan.entrance is None:
        return
    entrance_changed = the_plan.entrance.name in changed
    routed = [c for c in the_plan.routes if entrance_changed or c.name in changed]
    checks = [(settings.domain, "/")]
    checks += [(settings.domain, f"/health/{c.name}") for c in routed if c.route and c.route.health_path]
    checks += [(settings.hosts[c.name], "/") for c in routed]
    cafile = str(certs.ca_path(settings)) if settings.certificates == "local" else None
    with step("checking every route through the entrance") if changed else nullcontext():
        verify.wait_routes(settings, checks, cafile, VERIFY_TIMEOUT_S)


def _print_urls(settings: Settings) -> None:
    print()
    for component, address in plan.addresses(settings).items():
        if address != plan.INTERNAL:
            print(f"  {component:<12} {address}")
    if settings.certificates == "local":
        print(f"\nlocal CA certificate: {certs.ca_path(settings)}")
        print("  trust it in your browser, or: curl --cacert <that file> https://...")
    for name in settings.components:
        for hint in components.known()[name].hints:
            print(hint.format(deploy=_this_command()))


def _this_command() -> str:
    """How the user can run deploy.py again: through the same interpreter (e.g. .venv/bin/python)."""
    python = Path(sys.executable)
    with suppress(ValueError):
        python = python.relative_to(Path.cwd())
    return f"{python} deploy.py"


def _down(swarm: Swarm, settings: Settings, args: argparse.Namespace) -> int:
    if args.purge and args.components:  # before anything is removed
        raise ConfigError("--purge removes the whole platform; run it without naming components")
    # a component taken out of `components` can still be taken down by name
    selected = _known(args.components) or settings.components
    volumes = args.volumes or args.purge
    elsewhere = _volume_remover(swarm, args) if volumes else None
    with lock.held(swarm, settings.prefix, "down", args.lock_wait):
        problems = teardown.down(swarm, settings, selected, volumes=volumes, elsewhere=elsewhere)
        if args.purge:
            teardown.purge(swarm, settings, keep={lock.lock_name(settings.prefix)})
    return 1 if problems else 0


def _volume_remover(swarm: Swarm, args: argparse.Namespace) -> Callable[[str], list[str]] | None:
    """What removes a stack's volumes on the swarm's other nodes (from the hosts list); on a swarm of several
    nodes without the list, a ConfigError before anything is removed: this command reaches one node's volumes."""
    if args.hosts is None:
        if (count := len(swarm.nodes())) > 1:
            raise ConfigError(
                f"this swarm has {count} nodes, and a volume lives on the node whose task made it: this command"
                " reaches one of them. Give `down` the hosts list `nodes` uses (--hosts hosts.json) to remove the"
                " data volumes on every node over SSH"
            )
        return None
    hosts, connect, here = nodes.load_hosts(args.hosts), _connect_as(args.ssh_user), swarm.this_node()
    return lambda stack: node_volumes.remove(stack, hosts, connect, here)


def _status(swarm: Swarm, settings: Settings, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(status.as_json(swarm, settings), indent=2))
    else:
        print(status.render(swarm, settings))
        for line in status.certificate_lines(swarm, settings):
            print(line)
    return 0


def _acme_digest(swarm: Swarm, settings: Settings) -> str | None:
    """In acme mode the pair the ACME service stored last: rendering it means `up` never rolls a renewal back."""
    return certs.current_acme(swarm, settings.prefix) if settings.certificates == "acme" else None


def _plan(swarm: Swarm, settings: Settings, args: argparse.Namespace) -> int:
    the_plan = plan.make_plan(settings, _acme_digest(swarm, settings))
    plan.write_plan(the_plan)
    for cp in the_plan.components:
        record = apply.deployed(swarm, settings.prefix, cp.name)
        live = swarm.services(cp.stack_name)
        new = cp.files["stack.yml"]
        if record is None:
            print(f"{cp.name}: new (not deployed yet)")
        elif record.digest != cp.digest:
            print(f"{cp.name}: changes")
            sys.stdout.writelines(
                difflib.unified_diff(
                    record.stack_file.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"{cp.name}/stack.yml (deployed)",
                    tofile=f"{cp.name}/stack.yml (planned)",
                )
            )
        elif by_hand := drift.differences(cp, live) if live else ["not running"]:
            print(f"{cp.name}: changed by hand since it was deployed; `up` puts it back:")
            print("\n".join(f"  {line}" for line in by_hand))
        else:
            print(f"{cp.name}: unchanged")
        for ref in cp.images:
            if ref.ref is None:
                print(f"  image {ref.name}: cannot be had in local mode (needs {ref.missing_from}); left out")
            elif not swarm.image_exists(ref.ref):
                print(f"  image {ref.ref} will be {'built' if ref.local_build else 'pulled'}")
        for name in cp.secrets:
            if not swarm.secret_exists(name):
                what = TLS_KEY_SOURCE[settings.certificates] if name == the_plan.tls.key_secret else "generated"
                print(f"  secret {name} will be {what}")
    print(f"\nrendered into {settings.build_dir.resolve()}/")
    return 0


def _logs(swarm: Swarm, settings: Settings, args: argparse.Namespace) -> int:
    services = swarm.services(names.stack(settings.prefix, args.component))
    if not services:
        say(f"{args.component} is not deployed (prefix {settings.prefix})")
        return 1
    for service in services:
        print(f"== {service.name}")
        print(swarm.logs(service.name, args.tail))
    return 0


def _secret_show(swarm: Swarm, settings: Settings, args: argparse.Namespace) -> int:
    full = names.secret(settings.prefix, args.name)
    if not swarm.secret_exists(full):
        say(f"no secret {full}; generated secrets: " + ", ".join(_generated(settings)))
        return 1
    image = images.reader(settings)
    images.ensure(swarm, [image])
    assert image.ref is not None
    print(swarm.read_secret(full, image.ref, names.labels(settings.prefix)).decode())
    return 0


def _in_service(swarm: Swarm, settings: Settings, args: argparse.Namespace) -> int:
    """A component's own command, run inside one of its running containers (it has the credentials)."""
    service = names.service(settings.prefix, args.component, args.spec.service)
    # argparse cannot hand on arguments that start with an option: `COMMAND -- --option ...` does
    arguments = args.arguments[1:] if args.arguments[:1] == ["--"] else args.arguments
    try:
        print(swarm.exec_in(service, [*args.spec.argv, *arguments], names.labels(settings.prefix)))
    except LookupError as exc:
        say(f"{exc}; is {args.component} up? try `status`")
        return 1
    except DockerException as exc:
        say((exc.stderr or exc.stdout or str(exc)).strip())
        return 1
    return 0


def _lock_status(swarm: Swarm, settings: Settings, args: argparse.Namespace) -> int:
    holder = lock.holder(swarm, settings.prefix)
    print(f"held by {holder.describe()}" if holder else f"free (platform {settings.prefix})")
    return 0


def _lock_release(swarm: Swarm, settings: Settings, args: argparse.Namespace) -> int:
    holder = lock.holder(swarm, settings.prefix)
    if holder is None or not lock.release(swarm, settings.prefix):
        print("the lock was free")
        return 0
    print(f"released the lock held by {holder.describe()}")
    return 0


def _nodes(swarm: Swarm, settings: Settings, args: argparse.Namespace) -> int:
    hosts = nodes.load_hosts(args.hosts_file)
    started = time.monotonic()
    try:
        outcome = nodes.converge(hosts, _connect_as(args.ssh_user))
    except (nodes.SwarmUnreachable, EngineError) as exc:
        say(f"error: {exc}")
        return 1
    nodes.report(outcome, args.hosts_file, time.monotonic() - started)
    if outcome.manager is not None:  # a node that joined or came back gets what the deployed services run
        manager = connect_host(outcome.manager, args.ssh_user)
        source = ssh_url(outcome.manager, args.ssh_user)
        node_images.ship_running(manager, source, outcome.manager_node, f"{settings.prefix}_", hosts,
                                 _connect_as(args.ssh_user))  # fmt: skip
    return 0


def _generated(settings: Settings) -> list[str]:
    return [s for c in settings.components for s in components.known()[c].generated_secrets]
