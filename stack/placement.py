"""Which node each pinned service's label goes on, the first time `up` needs it.

A stateful service runs where its volume is: on the node carrying its label (`<prefix>.<label>`). Once set, a label
stays (moving it would start the service on an empty volume). A label no node carries yet is placed: a component's
first one on the node `up` talks to (on a single node, all of them), each further one of the same component on the
node holding fewest of its labels, so that three brokers of a cluster on three nodes sit one per node and losing a
node loses one broker. Nodes that are down, paused or drained take none (a drained manager passes its turn on).
"""

from __future__ import annotations

from collections.abc import Sequence

from stack.swarm import NodeState


def place(wanted: Sequence[Sequence[str]], nodes: Sequence[NodeState], here: str) -> dict[str, str]:
    """Node ID for each label of `wanted` (one sequence of labels per component) that no node carries yet."""
    carried = {node.id: set(node.labels) for node in nodes}
    order = [node.id for node in nodes if node.takes_tasks] or [here]
    order.sort(key=lambda node_id: node_id != here)  # stable: here first, then the swarm's own order
    placed: dict[str, str] = {}
    for labels in wanted:
        missing = [label for label in labels if not any(label in held for held in carried.values())]
        for label in missing:
            node_id = min(order, key=lambda n: len(carried[n] & set(labels)))  # min keeps the first of equals
            carried[node_id].add(label)
            placed[label] = node_id
    return placed
