"""Drift: what differs between a component's rendered stack and the services running in the swarm.

Sawmill's own record says what `up` deployed; this compares with what runs, so a hand-made change (a
`docker service scale`, an image swapped by hand, an added variable) is shown by `plan` and undone by `up`.
"""

from __future__ import annotations

from stack.plan import ComponentPlan, parse_yaml
from stack.swarm import LiveSpec, ServiceState


def rendered_specs(cp: ComponentPlan) -> dict[str, LiveSpec]:
    """The rendered stack's services, by full service name, in the form Swarm reports them."""
    secret_names = {key: (value or {}).get("name", key) for key, value in _stack(cp).get("secrets", {}).items()}
    specs = {}
    for short, service in cp.services().items():
        deploy = service.get("deploy", {})
        mode = deploy.get("mode", "replicated")
        env = service.get("environment", {})
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        specs[f"{cp.stack_name}_{short}"] = LiveSpec(
            image=str(service.get("image")),
            replicas=int(deploy.get("replicas", 1)) if mode == "replicated" else None,
            env={key: _text(value) for key, value in env.items()},
            secrets=tuple(sorted(secret_names.get(_source(s), _source(s)) for s in service.get("secrets", []))),
            ports=tuple(
                sorted(
                    f"{p['published']}:{p['target']}/{p.get('protocol', 'tcp')} {p.get('mode', 'ingress')}"
                    for p in service.get("ports", [])
                )
            ),
        )
    return specs


def differences(cp: ComponentPlan, live: list[ServiceState]) -> list[str]:
    """One line per hand-made difference, e.g. "api: replicas 1 running, 2 planned"."""
    running = {s.name: s.spec for s in live}
    rendered = rendered_specs(cp)
    found = []
    for name, planned in rendered.items():
        short = name.removeprefix(f"{cp.stack_name}_")
        actual = running.get(name)
        if actual is None:
            found.append(f"{short}: missing")
            continue
        if actual.replicas != planned.replicas:
            found.append(f"{short}: replicas {actual.replicas} running, {planned.replicas} planned")
        if actual.image.split("@", 1)[0] != planned.image:
            found.append(f"{short}: image {actual.image} running, {planned.image} planned")
        for key in sorted(set(actual.env) | set(planned.env)):
            if actual.env.get(key) != planned.env.get(key):
                found.append(
                    f"{short}: env {key} is {_shown(actual.env.get(key))}, planned {_shown(planned.env.get(key))}"
                )
        if actual.secrets != planned.secrets:
            found.append(f"{short}: secrets {', '.join(actual.secrets)} running, {', '.join(planned.secrets)} planned")
        if actual.ports != planned.ports:
            found.append(f"{short}: ports {', '.join(actual.ports)} running, {', '.join(planned.ports)} planned")
    for name in sorted(set(running) - set(rendered)):
        found.append(f"{name.removeprefix(f'{cp.stack_name}_')}: running, not planned")
    return found


def config_names(cp: ComponentPlan) -> list[str]:
    """The Docker configs the rendered stack mounts, by name."""
    return [(value or {}).get("name", key) for key, value in _stack(cp).get("configs", {}).items()]


def _stack(cp: ComponentPlan) -> dict:
    return parse_yaml(cp.files["stack.yml"])


def _source(secret: str | dict) -> str:
    return secret if isinstance(secret, str) else secret["source"]


def _text(value: object) -> str:
    """As `docker stack deploy` passes a YAML value to a container's environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _shown(value: str | None) -> str:
    return "unset" if value is None else repr(value if len(value) <= 60 else value[:57] + "...")
