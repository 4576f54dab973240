"""Where `up` puts a pinned service's label the first time: one broker per node where there are nodes enough, a
component's first label on the node `up` talks to, and never a label moved once a node carries it."""

from __future__ import annotations

from dataclasses import replace

from stack.placement import place
from tests.unit.fake_swarm import fake_node

BROKERS = ["s.kafka-broker-0", "s.kafka-broker-1", "s.kafka-broker-2"]


def test_on_one_node_every_label_goes_on_it() -> None:
    placed = place([["s.postgres"], BROKERS], [fake_node(0)], "node-0")
    assert placed == dict.fromkeys(["s.postgres", *BROKERS], "node-0")


def test_three_brokers_on_three_nodes_sit_one_per_node_the_first_where_up_talks() -> None:
    nodes = [fake_node(0), fake_node(1), fake_node(2)]
    placed = place([["s.postgres"], ["s.webserver"], BROKERS], nodes, "node-1")
    assert placed["s.postgres"] == placed["s.webserver"] == placed["s.kafka-broker-0"] == "node-1"
    assert sorted(placed[b] for b in BROKERS) == ["node-0", "node-1", "node-2"]


def test_more_brokers_than_nodes_spread_evenly() -> None:
    brokers = [f"s.kafka-broker-{i}" for i in range(5)]
    placed = place([brokers], [fake_node(0), fake_node(1), fake_node(2)], "node-0")
    assert sorted(list(placed.values()).count(n) for n in ("node-0", "node-1", "node-2")) == [1, 2, 2]


def test_a_label_some_node_carries_stays_even_if_that_node_is_down() -> None:
    """Its volume is there: placing it again would start the broker on an empty log."""
    down = replace(fake_node(1), status="down", labels={"s.kafka-broker-1": "true"})
    placed = place([BROKERS], [fake_node(0), down, fake_node(2)], "node-0")
    assert placed == {"s.kafka-broker-0": "node-0", "s.kafka-broker-2": "node-2"}


def test_an_added_broker_goes_to_the_node_holding_fewest_of_them() -> None:
    nodes = [replace(fake_node(0), labels={"s.kafka-broker-0": "true"}), fake_node(1),
             replace(fake_node(2), labels={"s.kafka-broker-1": "true"})]  # fmt: skip
    assert place([BROKERS], nodes, "node-0") == {"s.kafka-broker-2": "node-1"}


def test_nodes_that_take_no_tasks_get_no_label_and_a_drained_manager_passes_its_turn() -> None:
    drained, paused, down = (
        replace(fake_node(0), availability="drain"),
        replace(fake_node(1), availability="pause"),
        replace(fake_node(2), status="down"),
    )
    placed = place([["s.postgres"], BROKERS], [drained, paused, down, fake_node(3)], "node-0")
    assert set(placed.values()) == {"node-3"}
