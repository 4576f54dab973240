"""The command line: parse, load config, call plan/apply/verify. No Docker logic lives here."""

from __future__ import annotations

import argparse
import difflib
import json
import subprocess
import sys
from contextlib import nullcontext, suppress
from pathlib import Path

from python_on_whales import DockerException, docker

from stack import apply, certs, images, names, plan, secrets, status, swarm, teardown, verify
from stack.components import COMPONENTS
from stack.config import ConfigError, Settings, load_settings
from stack.progress import say, step

SERVICE_LOGS_TIMEOUT_S = 20

EPILOG = """\
examples:
  python deploy.py up                  bring the whole platform up (zero config: *.localhost, local CA)
  python deploy.py up db_connect       deploy one component
  python deploy.py plan                render build/ and show what `up` would change
  python deploy.py status              table of services, replicas, health and URLs
  python deploy.py logs db_connect     last log lines of a component's services
  python deploy.py secrets show db_connect_api_key
  python deploy.py api-keys create --role api_writer --name loader
  python deploy.py down --volumes      remove the platform and its data

configuration: sawmill.toml in the current directory (or $SAWMILL_CONFIG), overridden by
SAWMILL_<KEY> environment variables (nested keys with __, e.g. SAWMILL_DB_CONNECT__REPLICAS=3).
See sawmill.example.toml for every key.
"""

VERIFY_TIMEOUT_S = 90
TLS_KEY_SOURCE = {"local": "issued by the local CA", "files": "read from certificate_key_file"}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        return args.handler(settings, args)
    except ConfigError as exc:
        say(f"error: {exc}")
        return 2
    except verify.DeployError as exc:
        say(f"error: {exc}")
        say("the previous version keeps serving where there was one; fix the cause and run `up` again")
        return 1
    except DockerException as exc:
        say(f"error: docker failed: {' '.join(exc.docker_command[:4])} …\n{(exc.stderr or '').strip()}")
        say("is the engine running and this node a swarm manager? try `docker info`")
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploy.py",
        description="Sawmill: bring a secured analytics platform up on a Docker Swarm.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    components = f"components (default: all enabled): {', '.join(COMPONENTS)}"

    up = sub.add_parser(
        "up",
        help="deploy (idempotent); prints the URLs",
        description="Build or pull the images, create what is missing (network, secrets, certificates) and roll out"
        " every component whose rendered stack changed; unchanged ones are left alone. Named components must be"
        " enabled in `components`, and what they need (e.g. postgres) must already run.",
    )
    up.add_argument("components", nargs="*", metavar="COMPONENT", help=components)
    up.set_defaults(handler=_up)

    down = sub.add_parser(
        "down",
        help="remove components; data volumes are kept unless --volumes",
        description="Remove the named components' stacks, or with no name every enabled component's. By default"
        " data volumes, secrets and the local CA are kept, so `up` brings the same platform back.",
    )
    down.add_argument("components", nargs="*", metavar="COMPONENT", help=components)
    down.add_argument("--volumes", action="store_true", help="also delete data volumes (irreversible)")
    down.add_argument(
        "--purge",
        action="store_true",
        help="remove everything: data volumes too (as --volumes), secrets, the local CA and the network",
    )
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
    logs.add_argument("component", choices=list(COMPONENTS), metavar="COMPONENT", help=", ".join(COMPONENTS))
    logs.add_argument("--tail", type=int, default=50, help="lines per service (default 50)")
    logs.set_defaults(handler=_logs)

    keys = sub.add_parser("api-keys", help="create, list and revoke db_connect API keys (each runs as a Postgres role)")
    keys_sub = keys.add_subparsers(required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key; it is printed once")
    create.add_argument("--role", required=True, help="Postgres role its requests run as, e.g. api_reader, api_writer")
    create.add_argument("--name", required=True, help="unique name to list and revoke it by")
    create.set_defaults(handler=_api_keys, key_args=lambda a: ["create", "--role", a.role, "--name", a.name])
    keys_sub.add_parser("list", help="list keys (never their values)").set_defaults(
        handler=_api_keys, key_args=lambda a: ["list"]
    )
    revoke = keys_sub.add_parser("revoke", help="revoke a key by name; it stops working within seconds")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_api_keys, key_args=lambda a: ["revoke", a.name])

    sec = sub.add_parser("secrets", help="read generated secrets")
    sec_sub = sec.add_subparsers(required=True, metavar="ACTION")
    show = sec_sub.add_parser("show", help="print one secret's value (e.g. db_connect_api_key)")
    show.add_argument("name", help="short name, without the prefix")
    show.set_defaults(handler=_secret_show)
    return parser


def _known(requested: list[str]) -> list[str]:
    """The named components in deploy order; ConfigError for a name that is none."""
    unknown = [c for c in requested if c not in COMPONENTS]
    if unknown:
        raise ConfigError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}")
    return [c for c in COMPONENTS if c in requested]


def _selected(settings: Settings, requested: list[str]) -> list[str]:
    _known(requested)
    disabled = [c for c in requested if c not in settings.components]
    if disabled:
        raise ConfigError(f"components: {', '.join(disabled)} not enabled; add to `components` in the config")
    return [c for c in settings.components if not requested or c in requested]


def _up(settings: Settings, args: argparse.Namespace) -> int:
    selected = _selected(settings, args.components)
    the_plan = plan.make_plan(settings)
    changed = apply.apply(the_plan, selected)
    if "webserver" in settings.components:
        cafile = str(certs.ca_path(settings)) if settings.certificates == "local" else None
        checks = [(settings.domain, "/")]
        routed = [c.name for c in the_plan.routes if c.name in selected]
        checks += [(settings.domain, f"/health/{c}") for c in routed if COMPONENTS[c].health_path]
        checks += [(settings.subdomains[c], "/") for c in routed]
        with step("checking every subdomain through nginx") if changed else nullcontext():
            verify.wait_routes(settings, checks, cafile, VERIFY_TIMEOUT_S)
    print(status.table(status.rows(settings)))
    _print_urls(settings, {c.name for c in the_plan.routes} | {"webserver"})
    return 0


def _print_urls(settings: Settings, served: set[str]) -> None:
    print()
    for component, host in settings.subdomains.items():
        print(f"  {component:<12} {settings.url(host) if component in served else '(not served in this mode)'}")
    if settings.certificates == "local":
        print(f"\nlocal CA certificate: {certs.ca_path(settings)}")
        print("  trust it in your browser, or: curl --cacert <that file> https://...")
    if "db_connect" in settings.components:
        print(f"API key: {_this_command()} secrets show db_connect_api_key")


def _this_command() -> str:
    """How the user can run deploy.py again: through the same interpreter (e.g. .venv/bin/python)."""
    python = Path(sys.executable)
    with suppress(ValueError):
        python = python.relative_to(Path.cwd())
    return f"{python} deploy.py"


def _down(settings: Settings, args: argparse.Namespace) -> int:
    if args.purge and args.components:  # before anything is removed
        raise ConfigError("--purge removes the whole platform; run it without naming components")
    # a component taken out of `components` can still be taken down by name
    selected = _known(args.components) or settings.components
    teardown.down(settings, selected, volumes=args.volumes or args.purge)
    if args.purge:
        teardown.purge(settings)
    return 0


def _status(settings: Settings, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(status.as_json(settings), indent=2))
    else:
        print(status.table(status.rows(settings)))
    return 0


def _plan(settings: Settings, args: argparse.Namespace) -> int:
    the_plan = plan.make_plan(settings)
    plan.write_plan(the_plan)
    for cp in the_plan.components:
        record = swarm.deployed(settings.prefix, cp.name)
        new = cp.files["stack.yml"]
        if record is None:
            print(f"{cp.name}: new (not deployed yet)")
        elif record.digest == cp.digest:
            print(f"{cp.name}: unchanged")
        else:
            print(f"{cp.name}: changes")
            sys.stdout.writelines(
                difflib.unified_diff(
                    record.stack_file.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"{cp.name}/stack.yml (running)",
                    tofile=f"{cp.name}/stack.yml (planned)",
                )
            )
        for ref in cp.images:
            if ref.ref is None:
                print(f"  image {ref.name}: cannot be had in local mode (needs {ref.missing_from}); left out")
            elif not docker.image.exists(ref.ref):
                print(f"  image {ref.ref} will be {'built' if ref.local_build else 'pulled'}")
        for name in cp.secrets:
            if not secrets.exists(name):
                what = TLS_KEY_SOURCE[settings.certificates] if name == the_plan.tls.key_secret else "generated"
                print(f"  secret {name} will be {what}")
    print(f"\nrendered into {settings.build_dir.resolve()}/")
    return 0


def _logs(settings: Settings, args: argparse.Namespace) -> int:
    services = swarm.services(names.stack(settings.prefix, args.component))
    if not services:
        say(f"{args.component} is not deployed (prefix {settings.prefix})")
        return 1
    for service in services:
        print(f"== {service.spec.name}")
        print(_service_logs(service.spec.name, args.tail))
    return 0


def _service_logs(service: str, tail: int) -> str:
    """Swarm's logs of a service, from every node; bounded, since `docker service logs` was once seen to hang
    on a service with a failed task in its history. Then this node's containers of the service answer instead."""
    argv = ["docker", "service", "logs", "--tail", str(tail), "--timestamps", service]
    try:
        done = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=SERVICE_LOGS_TIMEOUT_S
        )
        return done.stdout.rstrip()  # the services' stdout and stderr lines, as they came
    except subprocess.TimeoutExpired:
        containers = docker.container.list(filters=[("label", f"com.docker.swarm.service.name={service}")])
        lines = [docker.container.logs(c, tail=tail, timestamps=True).rstrip() for c in containers]
        note = f"(docker service logs gave no answer in {SERVICE_LOGS_TIMEOUT_S} s; this node's containers instead)"
        return "\n".join([note, *lines])


def _secret_show(settings: Settings, args: argparse.Namespace) -> int:
    full = names.secret(settings.prefix, args.name)
    if not secrets.exists(full):
        say(f"no secret {full}; generated secrets: " + ", ".join(_generated(settings)))
        return 1
    image = images.reader(settings)
    images.ensure([image])
    sys.stdout.write(secrets.read(full, image.ref, settings.prefix).decode())
    return 0


def _api_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Run db_connect's own key command inside one of its running containers (it has the credentials)."""
    service = names.service(settings.prefix, "db_connect", "api")
    found = docker.container.list(filters=[("label", f"com.docker.swarm.service.name={service}")])
    if not found:
        say(f"no running {service} container on this node; is db_connect up? try `status`")
        return 1
    command = ["python", "-m", "db_connect", "keys", *args.key_args(args)]
    try:
        print(docker.container.execute(found[0], command))
    except DockerException as exc:
        say((exc.stderr or str(exc)).strip())
        return 1
    return 0


def _generated(settings: Settings) -> list[str]:
    return [s for c in settings.components for s in COMPONENTS[c].secrets]
