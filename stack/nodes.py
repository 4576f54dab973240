"""`deploy.py nodes`: form and label a swarm from a list of hosts, over SSH, as often as you like.

The hosts list is Terraform's output (terraform/): a JSON list of {name, address, public_address, role, labels}.
`address` is the private address the swarm uses (its ports 2377 and 7946 listen on it only); SSH goes to
`public_address` when there is one. Each run compares what the hosts' engines say with the list and does only
what differs: init on the first manager if no swarm exists, join the others with tokens read from a manager
at that moment (held in memory only), set roles and labels. A host that does not answer is reported and left
out; only a swarm that cannot be reached or formed at all is an error.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from stack.config import ConfigError
from stack.progress import say
from stack.swarm import Engine, EngineError, EngineState, NodeState

READY_TIMEOUT_S = 60
PARALLEL_HOSTS = 4  # hosts an image copy or a volume removal works on at once (each a stream over SSH)


class Host(BaseModel):
    """One entry of the hosts list."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    address: str = Field(min_length=1, description="private address: the swarm advertises and listens on it")
    public_address: str | None = Field(default=None, description="where SSH reaches the host; default: address")
    role: Literal["manager", "worker"]
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("address")
    @classmethod
    def _an_ip(cls, value: str) -> str:
        """The swarm binds to it and reports nodes by it: a name or an interface would not match what nodes say."""
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address: give the host's private IP, e.g. 10.0.0.5") from None

    @property
    def ssh_address(self) -> str:
        return self.public_address or self.address


def load_hosts(path: Path) -> list[Host]:
    """The hosts list, checked as a whole; ConfigError naming the entry and key at fault."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"hosts file {path}: cannot read it as JSON: {exc}") from None
    try:
        hosts = TypeAdapter(list[Host]).validate_python(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = list(error["loc"])
            entry = f"entry {where[0]}" if where and isinstance(where[0], int) else "the list"
            if where and isinstance(where[0], int) and isinstance(raw[where[0]], dict) and raw[where[0]].get("name"):
                entry += f" ({raw[where[0]]['name']})"
            key = ".".join(str(part) for part in where[1:]) or "-"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key; the keys are {', '.join(Host.model_fields)}"
            problems.append(f"  {entry}: {key}: {message}")
        raise ConfigError(
            f"hosts file {path} is not a list of {{name, address, public_address?, role, labels?}}:\n"
            + "\n".join(problems)
        ) from None
    for attribute in ("name", "address"):
        values = [getattr(h, attribute) for h in hosts]
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ConfigError(f"hosts file {path}: {attribute} {', '.join(twice)} appears more than once")
    if not any(h.role == "manager" for h in hosts):
        raise ConfigError(f"hosts file {path}: no host has role 'manager'; a swarm needs at least one")
    return hosts


@dataclass
class Row:
    name: str
    address: str
    role: str
    status: str
    availability: str
    labels: dict[str, str]


@dataclass
class Outcome:
    """What a run did and found: `changes` empty means the swarm already matched the list."""

    changes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    manager: Host | None = None  # the manager that answered for the swarm
    manager_node: str | None = None  # its node ID


class SwarmUnreachable(Exception):
    """No manager of the list can answer for the swarm, and a new one must not be made."""


def converge(hosts: list[Host], connect: Callable[[Host], Engine], ready_timeout_s: float = READY_TIMEOUT_S) -> Outcome:
    """Make the swarm match `hosts` (see the module docstring); report every host, reachable or not."""
    outcome = Outcome()
    engines = {h.name: connect(h) for h in hosts}
    states = _probe(hosts, engines, outcome)
    anchor = _anchor(hosts, states, engines, outcome)
    outcome.manager, outcome.manager_node = anchor, states[anchor.name].node_id
    cluster = states[anchor.name].cluster_id
    joined: set[str] = set()
    tokens: dict[str, str] = {}  # read once per role when a host needs one; never stored elsewhere
    for host in hosts:
        state = states.get(host.name)
        if state is None or host is anchor:
            continue
        if state.swarm == "inactive":
            if host.role not in tokens:
                tokens[host.role] = engines[anchor.name].join_token(host.role)
            try:
                engines[host.name].join(tokens[host.role], anchor.address, host.address)
            except EngineError as exc:
                outcome.problems.append(f"{host.name}: could not join: {exc}")
                continue
            joined.add(host.name)
            outcome.changes.append(f"{host.name} joined as {host.role}")
        elif state.swarm != "active":
            outcome.problems.append(f"{host.name}: its swarm state is {state.swarm!r}; see `docker info` there")
        elif state.cluster_id != cluster:
            outcome.problems.append(
                f"{host.name}: belongs to another swarm ({state.cluster_id}); run `docker swarm leave` there first"
            )
    manager = engines[anchor.name]
    nodes = _wait_ready(manager, hosts, joined, ready_timeout_s, outcome)
    matched = _match(hosts, states, nodes)
    for host in hosts:
        node = matched.get(host.name)
        if node is None:
            continue
        labels = {k: v for k, v in host.labels.items() if node.labels.get(k) != v}
        role = host.role if node.role != host.role and host is not anchor else None
        if labels or role:
            try:
                manager.update_node(node.id, labels, role)
            except EngineError as exc:
                outcome.problems.append(f"{host.name}: could not update its node: {exc}")
                continue
            if labels:
                outcome.changes.append(f"{host.name}: labels {', '.join(f'{k}={v}' for k, v in labels.items())}")
            if role:
                outcome.changes.append(f"{host.name}: role {node.role} → {role}")
    outcome.rows = _rows(hosts, states, manager.nodes())
    return outcome


def _probe(hosts: list[Host], engines: dict[str, Engine], outcome: Outcome) -> dict[str, EngineState]:
    """Each host's own view, side by side (an unreachable host costs one timeout, not one each)."""

    def ask(host: Host) -> tuple[Host, EngineState | str]:
        try:
            return host, engines[host.name].state()
        except EngineError as exc:
            return host, str(exc)

    states: dict[str, EngineState] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for host, answer in pool.map(ask, hosts):
            if isinstance(answer, str):
                outcome.problems.append(f"{host.name}: unreachable over SSH ({host.ssh_address}): {answer}")
            else:
                states[host.name] = answer
    return states


def _anchor(hosts: list[Host], states: dict[str, EngineState], engines: dict[str, Engine], outcome: Outcome) -> Host:
    """The manager that answers for the swarm; a new swarm on the first manager when no host is in one."""
    managers = [h for h in hosts if h.role == "manager"]
    for host in managers:
        state = states.get(host.name)
        if state is not None and state.swarm == "active" and state.manager:
            return host
    if any(s.swarm != "inactive" for s in states.values()):
        raise SwarmUnreachable(
            "hosts of the list are in a swarm, but no manager of the list that answers can manage it:\n  "
            + "\n  ".join(outcome.problems or [f"managers: {', '.join(h.name for h in managers)}"])
        )
    first = managers[0]
    if first.name not in states:
        raise SwarmUnreachable(
            f"{first.name}, the first manager, does not answer, and the swarm is formed on it "
            f"(it may hold one already):\n  " + "\n  ".join(outcome.problems)
        )
    engines[first.name].init(first.address)
    states[first.name] = engines[first.name].state()
    outcome.changes.append(f"{first.name}: new swarm, listening on {first.address} only")
    return first


def _wait_ready(
    manager: Engine, hosts: list[Host], joined: set[str], timeout_s: float, outcome: Outcome
) -> list[NodeState]:
    """The swarm's nodes once every host joined by this run is ready (bounded: a slow one is reported)."""
    addresses = {h.address for h in hosts if h.name in joined}
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = manager.nodes()
        waiting = addresses - {n.address for n in nodes if n.status == "ready"}
        if not waiting:
            return nodes
        if time.monotonic() > deadline:
            outcome.problems.append(f"not ready within {timeout_s:.0f} s of joining: {', '.join(sorted(waiting))}")
            return nodes
        time.sleep(0.5)


def _match(hosts: list[Host], states: dict[str, EngineState], nodes: list[NodeState]) -> dict[str, NodeState]:
    """Each host's node: by the ID its engine gave, else by address (a ready node before a stale one)."""
    by_id = {n.id: n for n in nodes}
    ranked = sorted(nodes, key=lambda n: n.status != "ready")
    matched = {}
    for host in hosts:
        state = states.get(host.name)
        node = by_id.get(state.node_id or "") if state else None
        node = node or next((n for n in ranked if n.address == host.address), None)
        if node is not None:
            matched[host.name] = node
    return matched


def _rows(hosts: list[Host], states: dict[str, EngineState], nodes: list[NodeState]) -> list[Row]:
    matched = _match(hosts, states, nodes)
    rows = []
    for host in hosts:
        node = matched.get(host.name)
        if node is None:
            status = "unreachable" if host.name not in states else "not joined"
            rows.append(Row(host.name, host.address, host.role, status, "-", host.labels))
        else:
            status = node.status if host.name in states else f"{node.status}, unreachable"  # the swarm may not know yet
            rows.append(Row(host.name, node.address, node.role, status, node.availability, node.labels))
    known = {n.id for n in matched.values()}
    for node in nodes:
        if node.id not in known:
            name = f"({node.hostname}: not in the list)"
            rows.append(Row(name, node.address, node.role, node.status, node.availability, node.labels))
    return rows


def table(rows: list[Row]) -> str:
    header = ("NAME", "ADDRESS", "ROLE", "STATUS", "AVAILABILITY", "LABELS")
    cells = [header] + [
        (r.name, r.address, r.role, r.status, r.availability, ",".join(f"{k}={v}" for k, v in sorted(r.labels.items())))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in cells
    ).rstrip()


def report(outcome: Outcome, hosts_file: Path, seconds: float) -> None:
    """Changes and problems on stderr, the table on stdout."""
    for change in outcome.changes:
        say(f"✓ {change}")
    for problem in outcome.problems:
        say(f"! {problem}")
    if outcome.changes:
        say(f"the swarm matches {hosts_file} ({len(outcome.changes)} change(s) in {seconds:.1f} s)")
    else:
        say(f"nothing to change: the swarm already matches {hosts_file} (checked in {seconds:.1f} s)")
    print(table(outcome.rows))


def on_other_hosts(
    hosts: list[Host],
    connect: Callable[[Host], Engine],
    source_node: str | None,
    act: Callable[[Host, Engine], None],
    failed: Callable[[Host, EngineError], str],
) -> list[str]:
    """`act` on the engine of every host but `source_node`'s (which the caller's own engine covers), a few hosts
    at a time; returns one problem per host it failed on, worded by `failed` and already said."""

    def one(host: Host) -> str | None:
        try:
            engine = connect(host)
            if source_node is not None and engine.state().node_id == source_node:
                return None
            act(host, engine)
        except EngineError as exc:
            problem = failed(host, exc)
            say(f"! {problem}")
            return problem
        return None

    with ThreadPoolExecutor(max_workers=PARALLEL_HOSTS) as pool:
        return [problem for problem in pool.map(one, hosts) if problem]
