"""Benchmark: how long `deploy.py up` takes, cold and as a no-op, on the local swarm.

    .venv/bin/python bench/deploy.py [--runs 3] [--without presto ...]

`--without` leaves components out, to see what one adds to a cold `up`. With Presto deployed it also times
the first query answered after `up` began (Presto's CLI in the coordinator, as `deploy.py presto` runs it).

It uses its own prefix and ports (beside any running platform) and removes everything at the end.
Images are built first, so "cold" measures deploying, not building. The reference is what a hand-written
script does on every run: `docker stack deploy` of the same rendered stack files, which cannot tell that
nothing changed. Targets on a 2-core machine: cold <= 60 s, no-op <= 5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from python_on_whales import docker  # noqa: E402

from stack import images, plan  # noqa: E402
from stack.config import load_settings  # noqa: E402
from stack.swarm import DockerSwarm  # noqa: E402

PREFIX = "sawmillbench"


def deploy(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "deploy.py", *args], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="no-op runs to take the median of")
    parser.add_argument("--without", action="append", default=[], metavar="COMPONENT", help="leave it out")
    args = parser.parse_args()
    build_dir = Path(tempfile.mkdtemp(prefix="sawmill-bench-"))
    no_config = build_dir.with_suffix(".toml")  # empty: a sawmill.toml in the cwd must not count
    no_config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAWMILL_")} | {
        "SAWMILL_PREFIX": PREFIX,
        "SAWMILL_HTTP_PORT": "28080",
        "SAWMILL_HTTPS_PORT": "28443",
        "SAWMILL_BUILD_DIR": str(build_dir),
        "SAWMILL_CONFIG": str(no_config),
    }
    os.environ.update(env)
    components = [c for c in load_settings().components if c not in args.without]
    env["SAWMILL_COMPONENTS"] = os.environ["SAWMILL_COMPONENTS"] = ",".join(components)
    the_plan = plan.make_plan(load_settings())
    images.ensure(DockerSwarm(), [ref for cp in the_plan.components for ref in cp.images])
    deploy(env, "down", "--purge")
    try:
        cold = deploy(env, "up")
        first_query = cold + deploy(env, "presto", "--", "--execute", "SELECT 1") if "presto" in components else None
        noop = [deploy(env, "up") for _ in range(args.runs)]
        reference = []
        for _ in range(args.runs):
            started = time.monotonic()
            for cp in the_plan.components:
                docker.stack.deploy(cp.stack_name, [build_dir / cp.name / "stack.yml"], resolve_image="never")
            reference.append(time.monotonic() - started)
    finally:
        deploy(env, "down", "--purge")
    noop_median, ref_median = statistics.median(noop), statistics.median(reference)
    print(f"components: {', '.join(components)}")
    print(f"cold up (images built, until every service healthy and routed): {cold:6.1f} s   target <= 60 s")
    if first_query is not None:
        print(f"first Presto query answered, from the start of that up:          {first_query:6.1f} s")
    print(f"no-op up, median of {args.runs}:                                  {noop_median:6.1f} s   target <= 5 s")
    stacks = len(the_plan.components)
    print(f"reference: docker stack deploy of the same {stacks} stacks, median:      {ref_median:6.1f} s")
    print(f"ratio no-op up / reference:                                       {noop_median / ref_median:6.2f}")


if __name__ == "__main__":
    main()
