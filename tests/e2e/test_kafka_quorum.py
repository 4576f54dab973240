"""Three KRaft brokers on the real swarm: a quorum of three voters that keeps the stream flowing without its leader,
and takes it back as a follower when it returns.

This module deploys a platform of its own (Postgres and Kafka only, prefix `<e2e prefix>q`), so the shared
end-to-end platform keeps its single broker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest
from python_on_whales import docker

from tests import kafka_tools
from tests.e2e.conftest import PREFIX, Platform, deployed, running_container
from tests.e2e.test_streaming import row_count

pytestmark = [pytest.mark.e2e, pytest.mark.own_platform]

BROKERS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = {"components": "postgres,kafka", "kafka__brokers": str(BROKERS), "kafka__heap_mb": "256"}
    with deployed(tmp_path_factory.mktemp("quorum"), f"{PREFIX}q", **settings) as platform:
        yield platform


def in_broker(platform: Platform, broker: int) -> kafka_tools.Run:
    """Runs a command inside a broker's container."""
    container = running_container(f"{platform.prefix}_kafka_broker-{broker}")
    return lambda argv: str(docker.execute(container, argv))


def quorum(platform: Platform, broker: int) -> tuple[int, list[int]]:
    return kafka_tools.quorum(in_broker(platform, broker))


def test_three_brokers_form_a_quorum_of_three_voters(cluster: Platform) -> None:
    leader, voters = quorum(cluster, 0)
    assert voters == [0, 1, 2]
    assert leader in voters
    services = {(r["component"], r["service"]): r for r in cluster.status()["services"]}
    for broker in range(BROKERS):
        assert services[("kafka", f"broker-{broker}")]["health"] == "healthy"


def test_declared_topics_are_replicated_to_three_brokers(cluster: Platform) -> None:
    described = in_broker(cluster, 0)(kafka_tools.tool("TopicCommand", "--describe", "--topic", "host_metrics"))
    assert "ReplicationFactor: 3" in described
    replicas = re.findall(r"Replicas: ([\d,]+)", described)
    assert replicas and all(sorted(r.split(",")) == ["0", "1", "2"] for r in replicas), described


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(2)
    return True


def test_the_stream_keeps_flowing_when_the_quorum_leader_stops(cluster: Platform) -> None:
    assert wait_for(lambda: row_count(cluster) > 0, 120), "the metrics demo landed nothing on three brokers"
    leader, _ = quorum(cluster, 0)
    survivor = next(b for b in range(BROKERS) if b != leader)
    stopped = f"{cluster.prefix}_kafka_broker-{leader}"
    docker.service.scale({stopped: 0}, detach=True)
    running = [("label", f"com.docker.swarm.service.name={stopped}")]
    assert wait_for(lambda: not docker.container.list(filters=running), 90), f"{stopped} did not stop"

    assert wait_for(lambda: quorum(cluster, survivor)[0] != leader, 60), "the two other voters elect a leader"
    assert quorum(cluster, survivor)[1] == [0, 1, 2]
    before = row_count(cluster)
    assert wait_for(lambda: row_count(cluster) > before, 120), f"no new rows while broker-{leader} is stopped"

    docker.service.scale({stopped: 1}, detach=True)

    def caught_up() -> bool:
        return kafka_tools.voter_lag(in_broker(cluster, survivor), leader) == 0

    assert wait_for(caught_up, 180), f"broker-{leader} did not catch up"
