"""`deploy.py nodes` decides from what each host's engine says: these are its decisions, on in-memory engines."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stack import cli, node_images, node_volumes, nodes
from stack.config import ConfigError
from stack.swarm import EngineError, EngineState, NodeState

TOKENS = {"manager": "SWMTKN-manager-secret", "worker": "SWMTKN-worker-secret"}


@dataclass
class FakeCluster:
    """One swarm as its managers see it, and the calls made to it."""

    nodes: dict[str, NodeState] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    id: str = "cluster-1"
    running: set[str] = field(default_factory=set)  # the images the deployed services run


@dataclass
class FakeEngine:
    host: nodes.Host
    cluster: FakeCluster
    down: bool = False
    in_swarm: bool = False
    held: set[str] = field(default_factory=set)  # the images this engine has

    def _reach(self) -> None:
        if self.down:
            raise EngineError("ssh: connect to host: No route to host")

    def state(self) -> EngineState:
        self._reach()
        is_manager = self.in_swarm and self.cluster.nodes[self.host.name].role == "manager"
        return EngineState(
            "active" if self.in_swarm else "inactive",
            self.host.name if self.in_swarm else None,
            self.cluster.id if self.in_swarm else None,
            is_manager,
        )

    def init(self, address: str) -> None:
        self._reach()
        self.cluster.calls.append(f"init {self.host.name} {address}")
        self._add("manager")

    def join_token(self, role: str) -> str:
        self.cluster.calls.append(f"token {role}")
        return TOKENS[role]

    def join(self, token: str, manager: str, address: str) -> None:
        self._reach()
        role = next(r for r, t in TOKENS.items() if t == token)
        self.cluster.calls.append(f"join {self.host.name} {role} via {manager}")
        self._add(role)

    def _add(self, role: str) -> None:
        self.in_swarm = True
        self.cluster.nodes[self.host.name] = NodeState(
            self.host.name, self.host.name, self.host.address, role, "ready", "active", {}
        )

    def nodes(self) -> list[NodeState]:
        return list(self.cluster.nodes.values())

    def update_node(self, node_id: str, labels: dict[str, str], role: str | None) -> None:
        self.cluster.calls.append(f"update {node_id} {sorted(labels.items())} {role}")
        node = self.cluster.nodes[node_id]
        self.cluster.nodes[node_id] = NodeState(
            node.id, node.hostname, node.address, role or node.role, node.status, node.availability,
            node.labels | labels,
        )  # fmt: skip

    def images(self) -> set[str]:
        self._reach()
        return set(self.held)

    def service_images(self, name_prefix: str) -> set[str]:
        return {image for image in self.cluster.running if image.startswith(name_prefix.rstrip("_"))}

    def load_from(self, refs: list[str], source: str | None) -> None:
        self._reach()
        self.cluster.calls.append(f"load {self.host.name} {' '.join(refs)} from {source}")
        self.held |= set(refs)

    def remove_volumes(self, stack: str) -> list[str]:
        self._reach()
        self.cluster.calls.append(f"remove volumes {self.host.name} {stack}")
        return [f"{stack}_data"]


def hosts(*specs: tuple[str, str]) -> list[nodes.Host]:
    return [
        nodes.Host(name=name, address=f"10.0.0.{i + 5}", role=role, labels={"at": name})  # type: ignore[arg-type]
        for i, (name, role) in enumerate(specs)
    ]


THREE = hosts(("m1", "manager"), ("w1", "worker"), ("w2", "worker"))


def engines(hosts_: list[nodes.Host], down: set[str] = frozenset()) -> tuple[FakeCluster, dict[str, FakeEngine]]:
    cluster = FakeCluster()
    return cluster, {h.name: FakeEngine(h, cluster, down=h.name in down) for h in hosts_}


def run(hosts_: list[nodes.Host], fakes: dict[str, FakeEngine]) -> nodes.Outcome:
    return nodes.converge(hosts_, lambda h: fakes[h.name], ready_timeout_s=0)


def test_a_swarm_is_made_on_the_first_manager_and_the_others_join_it_on_private_addresses() -> None:
    cluster, fakes = engines(THREE)
    outcome = run(THREE, fakes)
    assert cluster.calls[:4] == ["init m1 10.0.0.5", "token worker", "join w1 worker via 10.0.0.5",
                                 "join w2 worker via 10.0.0.5"]  # fmt: skip
    assert [(r.name, r.role, r.status, r.labels) for r in outcome.rows] == [
        ("m1", "manager", "ready", {"at": "m1"}),
        ("w1", "worker", "ready", {"at": "w1"}),
        ("w2", "worker", "ready", {"at": "w2"}),
    ]
    assert not outcome.problems


def test_a_second_run_changes_nothing() -> None:
    cluster, fakes = engines(THREE)
    run(THREE, fakes)
    cluster.calls.clear()
    outcome = run(THREE, fakes)
    assert outcome.changes == [] and cluster.calls == [] and not outcome.problems


def test_tokens_appear_in_no_change_or_problem() -> None:
    _, fakes = engines(THREE)
    outcome = run(THREE, fakes)
    said = " ".join(outcome.changes + outcome.problems)
    assert not any(token in said for token in TOKENS.values())


def test_a_host_that_does_not_answer_is_reported_and_the_rest_are_joined() -> None:
    cluster, fakes = engines(THREE, down={"w2"})
    outcome = run(THREE, fakes)
    assert "join w1 worker via 10.0.0.5" in cluster.calls
    assert [p.split(":")[0] for p in outcome.problems] == ["w2"]
    assert ("w2", "unreachable") in [(r.name, r.status) for r in outcome.rows]


def test_no_new_swarm_is_made_when_the_first_manager_does_not_answer() -> None:
    """It may hold the swarm already: a second one elsewhere would split the hosts."""
    cluster, fakes = engines(THREE, down={"m1"})
    with pytest.raises(nodes.SwarmUnreachable, match="m1, the first manager"):
        run(THREE, fakes)
    assert cluster.calls == []


def test_a_label_changed_in_the_list_is_updated_and_others_on_the_node_are_kept() -> None:
    cluster, fakes = engines(THREE)
    run(THREE, fakes)
    cluster.nodes["w1"] = NodeState("w1", "w1", "10.0.0.6", "worker", "ready", "active", {"at": "w1", "kept": "1"})
    changed = [h.model_copy(update={"labels": {"at": "elsewhere"}}) if h.name == "w1" else h for h in THREE]
    outcome = run(changed, fakes)
    assert outcome.changes == ["w1: labels at=elsewhere"]
    assert cluster.nodes["w1"].labels == {"at": "elsewhere", "kept": "1"}


def test_a_worker_listed_as_manager_is_promoted() -> None:
    cluster, fakes = engines(THREE)
    run(THREE, fakes)
    promoted = [h.model_copy(update={"role": "manager"}) if h.name == "w2" else h for h in THREE]
    assert "w2: role worker → manager" in run(promoted, fakes).changes
    assert cluster.nodes["w2"].role == "manager"


def write(tmp_path: Path, value: object) -> Path:
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps(value))
    return path


def test_the_hosts_file_is_terraforms_shape_and_errors_name_the_entry_and_key(tmp_path: Path) -> None:
    good = [{"name": "m1", "address": "10.0.0.5", "public_address": "203.0.113.5", "role": "manager", "labels": {}}]
    assert nodes.load_hosts(write(tmp_path, good))[0].ssh_address == "203.0.113.5"
    with pytest.raises(ConfigError, match=r"entry 0 \(m1\): role: Input should be 'manager' or 'worker'"):
        nodes.load_hosts(write(tmp_path, [good[0] | {"role": "boss"}]))
    with pytest.raises(ConfigError, match=r"entry 0 \(m1\): lables: unknown key; the keys are name, address"):
        nodes.load_hosts(write(tmp_path, [good[0] | {"lables": {}}]))
    with pytest.raises(ConfigError, match=r"entry 0 \(m1\): address: 'm1.internal' is not an IP address"):
        nodes.load_hosts(write(tmp_path, [good[0] | {"address": "m1.internal"}]))
    with pytest.raises(ConfigError, match="no host has role 'manager'"):
        nodes.load_hosts(write(tmp_path, [good[0] | {"role": "worker"}]))
    with pytest.raises(ConfigError, match=r"address 10\.0\.0\.5 appears more than once"):
        nodes.load_hosts(write(tmp_path, [good[0], good[0] | {"name": "m2"}]))


def test_nodes_exits_0_with_an_unreachable_host_and_1_when_no_swarm_can_be_had(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = [h.model_dump() for h in THREE]
    path = write(isolated_env, listed)
    _, fakes = engines(THREE, down={"w2"})
    monkeypatch.setattr(cli, "connect_host", lambda host, user: fakes[host.name])
    assert cli.main(["nodes", str(path)]) == 0
    assert "w2: unreachable over SSH" in capsys.readouterr().err
    _, fakes = engines(THREE, down={"m1"})
    assert cli.main(["nodes", str(path)]) == 1


def test_a_host_of_another_swarm_is_reported_not_joined() -> None:
    cluster, fakes = engines(THREE)
    run(THREE, fakes)
    fakes["w2"].cluster = FakeCluster(id="cluster-elsewhere", nodes={"w2": cluster.nodes.pop("w2")})
    cluster.calls.clear()
    outcome = run(THREE, fakes)
    assert [p for p in outcome.problems if p.startswith("w2: belongs to another swarm")]
    assert not [c for c in cluster.calls if c.startswith("join")]


def test_a_host_listed_as_manager_joins_with_the_manager_token() -> None:
    two_managers = hosts(("m1", "manager"), ("m2", "manager"), ("w1", "worker"))
    cluster, fakes = engines(two_managers)
    run(two_managers, fakes)
    assert "join m2 manager via 10.0.0.5" in cluster.calls
    assert cluster.nodes["m2"].role == "manager"


def test_nodes_gives_each_node_the_images_the_platform_runs_that_it_lacks_and_none_twice(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(isolated_env, [h.model_dump() for h in THREE])
    cluster, fakes = engines(THREE)
    built = {"sawmill/db_connect:1", "sawmill/postgres:2"}
    cluster.running = built | {"sawmill/pulled-by-each-node:3"}  # not on the manager: each node pulls it itself
    fakes["m1"].held = set(built)
    fakes["w1"].held = {"sawmill/postgres:2"}
    monkeypatch.setattr(cli, "connect_host", lambda host, user: fakes[host.name])
    assert cli.main(["nodes", str(path), "--ssh-user", "deploy"]) == 0
    loads = [c for c in cluster.calls if c.startswith("load")]
    assert sorted(loads) == [
        "load w1 sawmill/db_connect:1 from ssh://deploy@10.0.0.5",
        "load w2 sawmill/db_connect:1 sawmill/postgres:2 from ssh://deploy@10.0.0.5",
    ]
    cluster.calls.clear()
    assert cli.main(["nodes", str(path), "--ssh-user", "deploy"]) == 0
    assert [c for c in cluster.calls if c.startswith("load")] == []


def test_a_node_that_cannot_take_the_images_is_reported_and_the_others_get_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster, fakes = engines(THREE)
    run(THREE, fakes)
    fakes["w1"].down = True
    problems = node_images.ship(["sawmill/a:1"], THREE, lambda h: fakes[h.name], None, source_node="m1")
    assert problems == [
        "w1: images not copied (ssh: connect to host: No route to host); a task placed there cannot start until"
        " they are"
    ]
    assert [c for c in cluster.calls if c.startswith("load")] == ["load w2 sawmill/a:1 from None"]
    assert "! w1: images not copied" in capsys.readouterr().err


def test_down_volumes_removes_each_other_nodes_volumes_and_reports_one_it_cannot_reach(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster, fakes = engines(THREE)
    run(THREE, fakes)
    fakes["w2"].down = True
    problems = node_volumes.remove("sawmill_kafka", THREE, lambda h: fakes[h.name], source_node="m1")
    assert [c for c in cluster.calls if c.startswith("remove")] == ["remove volumes w1 sawmill_kafka"]
    assert problems == [
        "w2: volumes of sawmill_kafka not removed (ssh: connect to host: No route to host); remove them there:"
        " docker volume ls"
    ]
    said = capsys.readouterr().err
    assert "w1: removed volume(s) sawmill_kafka_data" in said and "! w2: volumes of sawmill_kafka not removed" in said
