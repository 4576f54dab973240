"""Kafka's own command-line tools, run inside a broker's container, and what the tests read from their output: the
quorum's leader and voters, a voter's lag, a topic's end offsets. `run` is how a test gets a command into the
container (the local engine in e2e, a simulated node's engine in the node tests)."""

from __future__ import annotations

import re
from collections.abc import Callable

Run = Callable[[list[str]], str]


def tool(name: str, *args: str) -> list[str]:
    """The argv of one of Kafka's tools against the broker it runs in."""
    classpath = "/opt/kafka/libs/*"  # expanded by java itself
    return ["java", "-cp", classpath, f"org.apache.kafka.tools.{name}", "--bootstrap-server", "127.0.0.1:9092", *args]


def quorum(run: Run) -> tuple[int, list[int]]:
    """The quorum's leader and its voters, as the broker asked sees them."""
    status = run(tool("MetadataQuorumCommand", "describe", "--status"))
    leader = int(re.search(r"LeaderId:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    voters_line = re.search(r"CurrentVoters:\s+(.*)", status).group(1)  # type: ignore[union-attr]
    voters = re.findall(r'"id":\s*(\d+)', voters_line) or re.findall(r"\d+", voters_line)
    return leader, sorted(int(v) for v in voters)


def voter_lag(run: Run, voter: int) -> int | None:
    """How far `voter` is behind the quorum's log, as the broker asked reports it; None while it is not a follower."""
    table = run(tool("MetadataQuorumCommand", "describe", "--replication")).splitlines()
    header = table[0].split()
    for line in table[1:]:
        row = dict(zip(header, line.split(), strict=False))
        if row.get("NodeId") == str(voter) and row.get("Status") == "Follower":
            return int(row["Lag"])
    return None


def end_offsets(run: Run, topic: str) -> dict[int, int]:
    """Each partition's next offset (its log end): the messages it holds, from 0, while retention deletes none."""
    listed = run(tool("GetOffsetShell", "--topic", topic))
    return {int(p): int(o) for p, o in re.findall(rf"^{re.escape(topic)}:(\d+):(\d+)$", listed, re.MULTILINE)}
