"""The single-node swarm that scripts/up.sh makes keeps its own ports on loopback, and still runs services.

Checked on a simulated host (never on this machine's engine, whose swarm may be in use): scripts/lib.sh's own
`ensure_swarm` runs there, then a dnsrr service on an overlay network must run and be found by name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from stack.images import BASE_IMAGE
from tests.nodes.simulated import Node, simulated_nodes
from tests.nodes.test_nodes import ROOT, listening

RUNNING_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with simulated_nodes() as sim:
        (node,) = sim.add("single")
        sim.load_image(BASE_IMAGE, node)
        yield node


def test_ensure_swarm_listens_on_loopback_only(node: Node) -> None:
    lib = (ROOT / "scripts" / "lib.sh").read_text()
    node.run("sh", "-c", f"cat > /tmp/lib.sh <<'LIB'\n{lib}\nLIB")
    node.run("bash", "-c", "source /tmp/lib.sh && ensure_swarm")
    assert node.docker("info", "--format", "{{.Swarm.LocalNodeState}}") == "active"
    assert listening(node, "tcp", 2377) == {"127.0.0.1"}
    assert listening(node, "tcp", 7946) == {"127.0.0.1"}
    assert listening(node, "udp", 7946) == {"127.0.0.1"}


def test_a_dnsrr_service_on_an_overlay_network_runs_and_is_found_by_name(node: Node) -> None:
    node.docker("network", "create", "--driver", "overlay", "--attachable", "probe-net")
    node.docker("service", "create", "--detach", "--name", "probe", "--network", "probe-net",
                "--endpoint-mode", "dnsrr", BASE_IMAGE, "sleep", "600")  # fmt: skip
    deadline = time.monotonic() + RUNNING_TIMEOUT_S
    while node.docker("service", "ps", "probe", "--format", "{{.CurrentState}}").split()[:1] != ["Running"]:
        assert time.monotonic() < deadline, node.docker("service", "ps", "--no-trunc", "probe")
        time.sleep(0.5)
    task_address = node.docker("run", "--rm", "--network", "probe-net", BASE_IMAGE, "getent", "hosts", "probe")
    assert task_address.split()[1:] == ["probe"]
