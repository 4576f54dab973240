"""An in-memory swarm behind the engine's seam (stack.swarm.Swarm), for unit tests of its decisions.

`deploy_stack` reads the rendered stack file as Swarm would: each service gets its spec, and converges at once
unless the test says otherwise (`failing` services roll back, `stuck` ones never get a task). Every call that
changes something is appended to `calls`, so tests read what the engine did as data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from stack.swarm import NAMESPACE_LABEL, AlreadyExists, CheckFailed, Config, LiveSpec, Mount, NodeState, ServiceState


def fake_node(i: int) -> NodeState:
    return NodeState(
        f"node-{i}", f"host-{i}", f"10.0.0.{i + 2}", "manager" if i == 0 else "worker", "ready", "active", {}
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class FakeSwarm:
    networks: set[str] = field(default_factory=set)
    secret_values: dict[str, bytes] = field(default_factory=dict)
    secret_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    config_store: dict[str, Config] = field(default_factory=dict)
    node_states: list[NodeState] = field(default_factory=lambda: [fake_node(0)])
    memory: list[int] = field(default_factory=lambda: [24 * 2**30])
    images: set[str] = field(default_factory=set)
    stacks: dict[str, dict[str, ServiceState]] = field(default_factory=dict)
    previous: dict[str, ServiceState] = field(default_factory=dict)  # what `rollback` returns a service to
    failing: set[str] = field(default_factory=set)  # short service names whose next update Swarm rolls back
    stuck: set[str] = field(default_factory=set)  # short service names that never get a running task
    check_refuses: str | None = None  # output of a refusing run_check
    calls: list[tuple] = field(default_factory=list)
    started: dict[str, dt.datetime] = field(default_factory=dict)  # full service name -> its newest task's start
    on_start: dict[str, Callable[[], None]] = field(default_factory=dict)  # short service name -> what its task does

    # --- networks ---
    def network_exists(self, name: str) -> bool:
        return name in self.networks

    def create_network(self, name: str, labels: dict[str, str]) -> None:
        self.calls.append(("create_network", name))
        self.networks.add(name)

    def remove_network(self, name: str) -> None:
        self.calls.append(("remove_network", name))
        self.networks.discard(name)

    # --- secrets ---
    def secrets(self, labels: dict[str, str]) -> list[str]:
        return sorted(n for n, lb in self.secret_labels.items() if labels.items() <= lb.items())

    def secret_exists(self, name: str) -> bool:
        return name in self.secret_values

    def create_secret(self, name: str, value: bytes, labels: dict[str, str]) -> None:
        if name in self.secret_values:
            raise AlreadyExists(name)
        self.calls.append(("create_secret", name))
        self.secret_values[name] = value
        self.secret_labels[name] = dict(labels)

    def remove_secrets(self, names: list[str]) -> None:
        for name in names:
            self.calls.append(("remove_secret", name))
            del self.secret_values[name], self.secret_labels[name]

    def read_secret(self, name: str, image: str, labels: dict[str, str]) -> bytes:
        return self.secret_values[name]

    # --- configs ---
    def configs(self, labels: dict[str, str]) -> list[Config]:
        return [c for c in self.config_store.values() if labels.items() <= c.labels.items()]

    def config(self, name: str) -> Config | None:
        return self.config_store.get(name)

    def create_config(self, name: str, data: bytes, labels: dict[str, str]) -> None:
        if name in self.config_store:
            raise AlreadyExists(name)
        self.calls.append(("create_config", name))
        self.config_store[name] = Config(name, dict(labels), data, _now())

    def remove_configs(self, names: list[str]) -> None:
        for name in names:
            self.calls.append(("remove_config", name))
            del self.config_store[name]

    # --- nodes ---
    def add_nodes(self, count: int) -> None:
        self.node_states += [fake_node(len(self.node_states) + i) for i in range(count)]

    def nodes(self) -> list[NodeState]:
        return self.node_states

    def this_node(self) -> str:
        return "node-0"

    def label_node(self, node_id: str, label: str) -> None:
        self.calls.append(("label_node", node_id, label))
        next(n for n in self.node_states if n.id == node_id).labels[label] = "true"

    def remove_node_labels(self, starting: str) -> None:
        for node in self.node_states:
            for key in [k for k in node.labels if k.startswith(starting)]:
                del node.labels[key]

    def node_memory(self) -> list[int]:
        return self.memory

    # --- images ---
    def image_exists(self, ref: str) -> bool:
        return ref in self.images

    def build(self, ref: str, context: Path, build_args: dict[str, str]) -> None:
        self.calls.append(("build", ref))
        self.images.add(ref)

    def pull(self, ref: str) -> None:
        self.calls.append(("pull", ref))
        self.images.add(ref)

    # --- stacks ---
    def deploy_stack(self, name: str, stack_file: Path) -> None:
        self.calls.append(("deploy_stack", name))
        before = _now()
        rendered = yaml.safe_load(stack_file.read_text())
        secret_names = {k: (v or {}).get("name", k) for k, v in rendered.get("secrets", {}).items()}
        for config in rendered.get("configs", {}).values():
            if not config.get("external"):
                labels = {NAMESPACE_LABEL: name}
                self.config_store.setdefault(config["name"], Config(config["name"], labels, b"", _now()))
        services = {}
        for short, svc in rendered["services"].items():
            full = f"{name}_{short}"
            deploy = svc.get("deploy", {})
            job = deploy.get("mode") == "replicated-job"
            replicas = None if job else int(deploy.get("replicas", 1))
            env = {k: "" if v is None else str(v) for k, v in (svc.get("environment") or {}).items()}
            spec = LiveSpec(
                image=svc["image"],
                replicas=replicas,
                env=env,
                secrets=tuple(sorted(secret_names.get(_source(s), _source(s)) for s in svc.get("secrets", []))),
                ports=tuple(
                    sorted(
                        f"{p['published']}:{p['target']}/tcp {p.get('mode', 'ingress')}" for p in svc.get("ports", [])
                    )
                ),
            )
            old = self.stacks.get(name, {}).get(full)
            if old is not None and old.spec == spec:
                services[full] = old
                continue
            if old is not None and short in self.failing:  # Swarm tried, the health check failed, it rolled back
                services[full] = replace(old, update_state="rollback_completed", update_started=_now())
                continue
            state = ServiceState(
                name=full,
                stack=name,
                job=job,
                replicas=replicas,
                running=0 if short in self.stuck or job else (replicas or 1),
                job_state="complete" if job else None,
                update_state="completed" if old is not None else None,
                update_started=_now() if old is not None else None,
                update_message=None,
                spec=spec,
                nodes=() if short in self.stuck or job else ("node-0",),
            )
            if old is not None:
                self.previous[full] = old
            services[full] = state
            self.started[full] = _now()
        self.stacks[name] = services
        for full in services:
            short = full.removeprefix(f"{name}_")
            if short in self.on_start and self.started.get(full, dt.datetime.min.replace(tzinfo=dt.UTC)) > before:
                self.on_start[short]()

    def remove_stack(self, name: str) -> None:
        self.calls.append(("remove_stack", name))
        self.stacks.pop(name, None)

    def stack_gone(self, name: str) -> bool:
        return name not in self.stacks

    def remove_volumes(self, stack: str) -> None:
        self.calls.append(("remove_volumes", stack))

    def services(self, stack: str) -> list[ServiceState]:
        return sorted(self.stacks.get(stack, {}).values(), key=lambda s: s.name)

    def remove_services(self, labels: dict[str, str]) -> None:
        pass

    def restart_service(self, service: str) -> None:
        self.calls.append(("restart_service", service))
        self.started[service] = _now()
        short = service.split("_")[-1]
        if short in self.on_start:
            self.on_start[short]()

    def service_started(self, service: str) -> dt.datetime | None:
        return self.started.get(service)

    def rollback(self, service: str) -> None:
        self.calls.append(("rollback", service))
        stack = next(s for s, services in self.stacks.items() if service in services)
        self.stacks[stack][service] = replace(
            self.previous.pop(service), update_state="rollback_completed", update_started=_now()
        )

    def evidence(self, service: str, since: dt.datetime) -> list[str]:
        return [f"  task of {service}: unhealthy"]

    def logs(self, service: str, tail: int) -> str:
        return f"log of {service}"

    def exec_in(self, service: str, argv: list[str], labels: dict[str, str]) -> str:
        self.calls.append(("exec_in", service, tuple(argv)))
        return "ran"

    def run_check(self, image: str, command: list[str], mounts: list[Mount]) -> None:
        self.calls.append(("run_check", image, tuple(command)))
        if self.check_refuses:
            raise CheckFailed(self.check_refuses)

    # --- what tests ask ---
    def scale_by_hand(self, service: str, replicas: int) -> None:
        stack = next(s for s, services in self.stacks.items() if service in services)
        old = self.stacks[stack][service]
        self.stacks[stack][service] = replace(old, replicas=replicas, spec=replace(old.spec, replicas=replicas))

    def made(self, kind: str) -> list[str]:
        return [call[1] for call in self.calls if call[0] == kind]


def _source(secret: str | dict) -> str:
    return secret if isinstance(secret, str) else secret["source"]
