"""A cold `up` on three nodes next to one: what spreading the platform over hosts costs.

The same components (Postgres, db_connect at 3 replicas, the webserver) are deployed by `deploy.py up --hosts`
over SSH onto fresh simulated hosts (tests/nodes/simulated.py), one node (the reference) and three, alternately.
The images are built here and loaded into the manager before the clock starts, as in tests/nodes, so no build is
timed; on three nodes `up` also copies them to the two workers, and the tasks meet over an overlay network.

    .venv/bin/python bench/nodes.py [--runs 1]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.nodes.simulated import DEPLOY_USER, platform_on_nodes, simulated_nodes

NODES = ("manager-1", "worker-1", "worker-2")
COMPONENTS = ["postgres", "db_connect", "webserver"]
PREFIX = "benchnodes"


def _checked(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")


def cold_up(count: int) -> tuple[float, dict[str, float]]:
    """Seconds of one `up --hosts` onto `count` fresh nodes, after `nodes` formed their swarm, and the seconds of
    each step it reported (`✓ step (N s)`), to see where the nodes' extra time goes."""
    with simulated_nodes() as sim, tempfile.TemporaryDirectory(prefix="sawmill-bench-nodes-") as work:
        sim.add(*NODES[:count])
        platform = platform_on_nodes(sim, Path(work), PREFIX, COMPONENTS, db_connect__replicas="3")
        _checked(platform.deploy("nodes", str(platform.hosts), "--ssh-user", DEPLOY_USER), "deploy.py nodes")
        started = time.monotonic()
        done = platform.up()
        took = time.monotonic() - started
        _checked(done, f"up on {count} node(s)")
        steps = {name: float(s) for name, s in re.findall(r"^✓ (.+) \(([\d.]+) s\)$", done.stdout + done.stderr, re.M)}
        return took, steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="pairs of cold ups (one node, then three)")
    args = parser.parse_args()
    one: list[float] = []
    three: list[float] = []
    for run in range(args.runs):
        (took_one, steps_one), (took_three, steps_three) = cold_up(1), cold_up(3)
        one.append(took_one)
        three.append(took_three)
        print(f"run {run + 1}: cold up on 1 node {took_one:.1f} s, on 3 nodes {took_three:.1f} s", flush=True)
        for name in sorted(set(steps_one) | set(steps_three), key=lambda n: -steps_three.get(n, 0)):
            if max(steps_one.get(name, 0), steps_three.get(name, 0)) >= 1:
                print(f"  {steps_one.get(name, 0):6.1f} s | {steps_three.get(name, 0):6.1f} s  {name}", flush=True)
    ratio = statistics.median(three) / statistics.median(one)
    print(f"p50: 1 node {statistics.median(one):.1f} s, 3 nodes {statistics.median(three):.1f} s; 3 / 1 = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
