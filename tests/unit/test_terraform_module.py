"""The DigitalOcean module, read with python-hcl2 (no provider plugin needed): what the public, the admins and the
nodes may reach, where DNS points, and what every droplet boots with.

Each rule is a function returning its violations, so the same rules also run against broken copies of the module:
a test that only ever sees the good module could not show that it fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform" / "modules" / "digitalocean"
CLOUD_INIT = ROOT / "terraform" / "modules" / "cloud-init"
EXAMPLE = ROOT / "terraform" / "example"
HOSTS_SCHEMA = ROOT / "terraform" / "hosts.schema.json"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

PUBLIC_PORTS = {("tcp", "80"), ("tcp", "443")}
SWARM_PORTS = {("tcp", "2377"), ("tcp", "7946"), ("udp", "7946"), ("udp", "4789")}
EVERYWHERE = {"0.0.0.0/0", "::/0"}
PLATFORM_TAG = "${digitalocean_tag.platform.id}"


def _clean(value: Any) -> Any:
    """python-hcl2 8.1.4 keeps string literals' quotes and adds bookkeeping keys: drop both."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@cache
def _parse(text: str) -> dict[str, Any]:
    """Parsing is slow (a lark grammar), and every rule reads the same files."""
    return _clean(hcl2.loads(text))


def load(texts: dict[str, str]) -> dict[str, Any]:
    """A module from its files' texts: resources by type and name, locals, modules, variables, outputs."""
    module: dict[str, Any] = {"resource": {}, "locals": {}, "module": {}, "variable": {}, "output": {}}
    for text in texts.values():
        parsed = _parse(text)
        for block in parsed.get("resource", []):
            for rtype, by_name in block.items():
                module["resource"].setdefault(rtype, {}).update(by_name)
        for block in parsed.get("locals", []):
            module["locals"].update(block)
        for kind in ("module", "variable", "output"):
            for block in parsed.get(kind, []):
                module[kind].update(block)
    return module


def module_texts(folder: Path = MODULE) -> dict[str, str]:
    """A module's files by name, as text, so a test can break one before parsing."""
    return {p.name: p.read_text() for p in sorted(folder.glob("*.tf"))}


def resolve(module: dict[str, Any], value: Any) -> Any:
    """`${local.x}` is replaced by the local's value, so a rule sees the addresses a local stands for."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{local\.(\w+)\}", value)
        if match:
            return module["locals"][match.group(1)]
    return value


def _ports(rule: dict[str, Any]) -> set[int]:
    """Every port a rule opens ("1-65535" is a range); an ICMP rule has none."""
    port_range = str(rule.get("port_range", ""))
    if not port_range:
        return set()
    if port_range.startswith("${"):
        return {-1}  # computed (the internal_tcp_ports rule): its sources are checked instead
    low, _, high = port_range.partition("-")
    return set(range(int(low), int(high or low) + 1))


def inbound_rules(module: dict[str, Any]) -> list[dict[str, Any]]:
    """The firewall's inbound rules, the dynamic ones included, with their sources resolved."""
    (firewall,) = module["resource"]["digitalocean_firewall"].values()
    rules = list(firewall.get("inbound_rule", []))
    for dynamic in firewall.get("dynamic", []):
        for content in dynamic.get("inbound_rule", {}).get("content", []):
            rules.append(content)
    return [
        {
            **rule,
            "source_addresses": resolve(module, rule.get("source_addresses", [])),
            "source_tags": rule.get("source_tags", []),
        }
        for rule in rules
    ]


def public_exposure_problems(module: dict[str, Any]) -> list[str]:
    problems = []
    opened_to_all = set()
    for rule in inbound_rules(module):
        sources = rule["source_addresses"]
        if isinstance(sources, list) and EVERYWHERE & set(sources):
            if rule["protocol"] == "icmp":
                problems.append("ICMP is open to everyone")
            opened_to_all |= {(rule["protocol"], str(port)) for port in _ports(rule)}
    if opened_to_all != PUBLIC_PORTS:
        problems.append(f"the public reaches {sorted(opened_to_all)}, not exactly 80/tcp and 443/tcp")
    return problems


def ssh_problems(module: dict[str, Any]) -> list[str]:
    problems = []
    for rule in inbound_rules(module):
        opens_ssh = rule["protocol"] == "tcp" and 22 in _ports(rule)
        if opens_ssh and (rule["source_addresses"] != "${var.admin_cidrs}" or rule["source_tags"]):
            problems.append(f"SSH is open to {rule['source_addresses']} {rule['source_tags']}, not only admin_cidrs")
    if not any(r["protocol"] == "tcp" and _ports(r) == {22} for r in inbound_rules(module)):
        problems.append("no rule lets the admins in over SSH")
    return problems


def swarm_port_problems(module: dict[str, Any]) -> list[str]:
    problems = []
    covered = set()
    for rule in inbound_rules(module):
        touched = {(rule["protocol"], str(p)) for p in _ports(rule)} & SWARM_PORTS
        internal = _ports(rule) == {-1}
        if not touched and not internal:
            continue
        covered |= touched
        if rule["source_addresses"] or rule["source_tags"] != [PLATFORM_TAG]:
            problems.append(
                f"{sorted(touched) or 'an internal port'} reachable from {rule['source_addresses']} "
                f"{rule['source_tags']}, not only the platform's droplets"
            )
    if covered != SWARM_PORTS:
        problems.append(f"swarm ports without a rule: {sorted(SWARM_PORTS - covered)}")
    (firewall,) = module["resource"]["digitalocean_firewall"].values()
    if firewall.get("tags") != [PLATFORM_TAG]:
        problems.append("the firewall does not apply to the platform tag")
    for name, droplet in module["resource"]["digitalocean_droplet"].items():
        if PLATFORM_TAG not in droplet.get("tags", []):
            problems.append(f"droplet {name} lacks the platform tag: the firewall would not cover it")
    return problems


def test_the_public_reaches_exactly_ports_80_and_443() -> None:
    assert public_exposure_problems(load(module_texts())) == []


def test_ssh_is_reachable_only_from_the_admin_cidrs() -> None:
    assert ssh_problems(load(module_texts())) == []


def test_admin_cidrs_may_not_be_the_whole_internet() -> None:
    condition = load(module_texts())["variable"]["admin_cidrs"]["validation"][0]["condition"]
    assert "0.0.0.0/0" in condition and "::/0" in condition


def test_swarm_ports_are_open_only_between_the_platforms_tagged_droplets() -> None:
    assert swarm_port_problems(load(module_texts())) == []


def _broken(old: str, new: str) -> dict[str, Any]:
    texts = module_texts()
    assert old in texts["main.tf"], f"the mutation no longer applies: {old!r}"
    return load({**texts, "main.tf": texts["main.tf"].replace(old, new, 1)})


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        (
            'port_range       = "22"\n    source_addresses = var.admin_cidrs',
            'port_range       = "22"\n    source_addresses = local.everywhere',
            ssh_problems,
        ),
        (
            'port_range       = "22"\n    source_addresses = var.admin_cidrs',
            'port_range       = "22"\n    source_addresses = local.everywhere',
            public_exposure_problems,
        ),
        ('port_range       = "443"', 'port_range       = "443-8443"', public_exposure_problems),
        (
            'port_range  = "2377"\n    source_tags = [digitalocean_tag.platform.id]',
            'port_range  = "2377"\n    source_addresses = ["10.0.0.0/8"]',
            swarm_port_problems,
        ),
        ('port_range  = "4789"', 'port_range  = "4790"', swarm_port_problems),
        (
            "tags       = [digitalocean_tag.platform.id, digitalocean_tag.worker.id]",
            "tags       = [digitalocean_tag.worker.id]",
            swarm_port_problems,
        ),
    ],
    ids=["ssh-open-to-all", "ssh-public", "public-range", "2377-from-a-cidr", "4789-missing", "untagged-worker"],
)
def test_the_firewall_rules_catch_a_broken_module(old: str, new: str, rule: Any) -> None:
    assert rule(_broken(old, new)) != []


def test_the_domain_and_every_subdomain_point_at_the_entry_node() -> None:
    module = load(module_texts())
    assert module["resource"]["digitalocean_domain"]["platform"]["name"] == "${var.domain}"
    records = module["resource"]["digitalocean_record"].values()
    entry = "${digitalocean_droplet.manager[local.data_node_index].ipv4_address}"
    assert sorted((r["type"], r["name"], r["value"]) for r in records) == [("A", "*", entry), ("A", "@", entry)]
    assert all(r["domain"] == "${digitalocean_domain.platform.id}" for r in records)


def test_every_droplet_boots_with_user_data_rendered_by_the_cloud_init_module() -> None:
    module = load(module_texts())
    cloud_init_modules = {name for name, m in module["module"].items() if m["source"] == "../cloud-init"}
    assert cloud_init_modules, "the module renders no user data"
    assert (MODULE / "../cloud-init").resolve() == CLOUD_INIT
    for name, droplet in module["resource"]["digitalocean_droplet"].items():
        used = set(re.findall(r"module\.(\w+)\.user_data", droplet.get("user_data", "")))
        assert used, f"droplet {name} has no user data"
        assert used <= cloud_init_modules, f"droplet {name} has user data of its own: {droplet['user_data']}"


def test_the_data_volume_is_attached_to_the_node_labelled_for_postgres_and_kafka() -> None:
    module = load(module_texts())
    volume = module["resource"]["digitalocean_volume"]["data"]
    manager = module["resource"]["digitalocean_droplet"]["manager"]
    worker = module["resource"]["digitalocean_droplet"]["worker"]
    assert manager["volume_ids"] == "${count.index == local.data_node_index ? [digitalocean_volume.data.id] : []}"
    assert "volume_ids" not in worker
    # the same node gets the labels that pin Postgres and Kafka, and the user data that mounts the volume
    labels = module["locals"]["data_node_labels"]
    assert {"${var.prefix}.postgres", "${var.prefix}.kafka-broker-0"} <= set(labels)
    hosts = module["output"]["hosts"]["value"]
    assert "if i == local.data_node_index" in hosts
    assert "count.index == local.data_node_index ? module.data_node_user_data.user_data" in manager["user_data"]
    assert module["module"]["data_node_user_data"]["data_device"] == "${local.data_device}"
    assert module["locals"]["data_device"].endswith("_Volume_" + volume["name"])


def test_the_hosts_output_is_a_list_of_name_address_public_address_role_labels() -> None:
    """The format `deploy.py nodes` reads (issue 16): one object per droplet, private address first."""
    hosts = load(module_texts())["output"]["hosts"]["value"]
    objects = re.findall(r"\{(name = [^{}]*), labels = ", hosts)
    fields = [dict(pair.split(" = ", 1) for pair in obj.split(", ")) for obj in objects]
    common = {"name": "d.name", "address": "d.ipv4_address_private", "public_address": "d.ipv4_address"}
    assert fields == [{**common, "role": '"manager"'}, {**common, "role": '"worker"'}]


def test_terraform_holds_no_secret_of_the_platform() -> None:
    for folder in (MODULE, CLOUD_INIT, EXAMPLE):
        module = load(module_texts(folder))
        for name in module["variable"]:
            assert not re.search(r"token|password|secret|private", name), f"{folder.name}: variable {name}"
        text = "\n".join(module_texts(folder).values())
        assert "join-token" not in text and "PRIVATE KEY" not in text
    provider_blocks = hcl2.loads((EXAMPLE / "main.tf").read_text()).get("provider", [])
    assert [_clean(p) for p in provider_blocks] == [{"digitalocean": {}}], "the API token comes from DIGITALOCEAN_TOKEN"


def _readme_hosts_example() -> str:
    text = (ROOT / "terraform" / "README.md").read_text()
    (example,) = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    return example


def _validate_hosts(tmp_path: Path, hosts: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "hosts.json"
    path.write_text(hosts)
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--schemafile", str(HOSTS_SCHEMA), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_documented_hosts_list_matches_its_schema(tmp_path: Path) -> None:
    checked = _validate_hosts(tmp_path, _readme_hosts_example())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    schema = json.loads(HOSTS_SCHEMA.read_text())
    assert schema["items"]["required"] == ["name", "address", "public_address", "role", "labels"]


def test_the_hosts_schema_refuses_an_unknown_role_or_a_missing_address(tmp_path: Path) -> None:
    hosts = json.loads(_readme_hosts_example())
    assert _validate_hosts(tmp_path, json.dumps([{**hosts[0], "role": "leader"}])).returncode != 0
    assert (
        _validate_hosts(tmp_path, json.dumps([{k: v for k, v in hosts[0].items() if k != "address"}])).returncode != 0
    )


def test_deploy_py_nodes_reads_the_documented_hosts_list_and_its_labels_are_the_engines(tmp_path: Path) -> None:
    """The agreement with issue 16: `deploy.py nodes` loads terraform's list, and the data node's labels are the
    ones the engine pins Postgres and Kafka with."""
    from stack import names
    from stack.nodes import load_hosts

    path = tmp_path / "hosts.json"
    path.write_text(_readme_hosts_example())
    hosts = load_hosts(path)
    assert [(h.name, h.address, h.ssh_address, h.role) for h in hosts] == [
        ("sawmill-manager-1", "10.118.0.2", "203.0.113.10", "manager"),
        ("sawmill-worker-1", "10.118.0.3", "203.0.113.11", "worker"),
    ]
    pinned = {names.node_label("sawmill", c): "true" for c in ("postgres", "kafka-broker-0", "webserver")}
    assert pinned.items() <= hosts[0].labels.items()
    labels_in_terraform = load(module_texts())["locals"]["data_node_labels"]
    assert {k.replace("${var.prefix}", "sawmill") for k in labels_in_terraform} >= set(pinned)
