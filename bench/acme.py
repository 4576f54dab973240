"""Benchmark: how long one certificate set takes from an ACME CA, on Debian's pebble (PEBBLE_VA_NOSLEEP=1).

    .venv/bin/python bench/acme.py [--runs 3]

Two sets: HTTP-01 for a domain and three subdomains through nginx's webroot, and DNS-01 for a domain and its
wildcard through certbot's rfc2136 plugin into BIND. Each run starts from an empty certbot state (a new account,
as on a first deploy). The reference, measured in the same run against the same servers, is a bare certbot
with the same arguments and no pre-flight: the difference is what the pre-flight (a probe token through every
name, or a probe TXT record written and removed) costs. Also timed: a second run when nothing is due (certbot
keeps the certificate; no order). Target: <= 10 s per set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # not bench/: this file's name would shadow the `acme` library certbot imports

from stack import acme, acme_dns  # noqa: E402
from tests.integration import acme_servers  # noqa: E402

DOMAIN = "bench.test"
NAMES = (DOMAIN, f"api.{DOMAIN}", f"schedule.{DOMAIN}", f"bi.{DOMAIN}")


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def bare_certbot(order: acme.Order, state: Path, authenticator: list[str], env: dict[str, str]) -> None:
    """certbot alone, as an operator would run it by hand: no pre-flight."""
    environment = {**os.environ, **env, "REQUESTS_CA_BUNDLE": str(order.ca_bundle)}
    argv = [sys.executable, "-c", acme.CERTBOT_MAIN, *acme.certbot_args(order, state), *authenticator]
    subprocess.run(argv, env=environment, check=True, capture_output=True, timeout=acme.CERTBOT_TIMEOUT_S)


def measure(name: str, order: acme.Order, bare: Callable[[Path], None], runs: int, work: Path) -> None:
    ours, reference, kept = [], [], []
    for run in range(runs):
        state = work / f"{name}-{run}"
        ours.append(timed(lambda state=state: acme.obtain(order, state)))
        kept.append(timed(lambda state=state: acme.obtain(order, state)))
        reference.append(timed(lambda run=run: bare(work / f"{name}-bare-{run}")))
    median, ref = statistics.median(ours), statistics.median(reference)
    print(
        f"{name:8} obtain {median:5.2f} s (min {min(ours):.2f}, max {max(ours):.2f})"
        f" | bare certbot {ref:5.2f} s | ratio {median / ref:.2f}"
        f" | nothing due {statistics.median(kept):.2f} s | target <= 10 s: {'met' if max(ours) <= 10 else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per set (the median is printed)")
    args = parser.parse_args()
    missing = acme_servers.missing_binaries()
    if missing:
        sys.exit(f"needs Debian's {', '.join(missing)} (apt-get install -y {' '.join(missing)})")
    print(f"load average before: {os.getloadavg()[0]:.1f} (a shared machine's other work slows certbot's start)")
    with tempfile.TemporaryDirectory(prefix="sawmill-bench-acme-") as directory:
        work = Path(directory)
        with (
            acme_servers.challtestsrv(work) as dns,
            acme_servers.nginx(work, NAMES) as web,
            acme_servers.pebble(work, web.port, dns) as pebble,
        ):
            order = acme.Order(
                names=NAMES,
                email=f"ops@{DOMAIN}",
                directory=pebble.directory,
                ca_bundle=pebble.ca_bundle,
                webroot=web.webroot,
                http_port=web.port,
                resolver=dns,
            )
            webroot = ["--authenticator=webroot", f"--webroot-path={web.webroot}"]
            measure("HTTP-01", order, lambda state: bare_certbot(order, state, webroot, {}), args.runs, work)
        with (
            acme_servers.bind(work, DOMAIN) as bind,
            acme_servers.pebble(work, acme_servers.free_port(), bind.address) as pebble,
        ):
            order = acme.Order(
                names=acme.names_for(DOMAIN, (), "dns-01"),
                email=f"ops@{DOMAIN}",
                directory=pebble.directory,
                ca_bundle=pebble.ca_bundle,
                challenge="dns-01",
                dns_provider="rfc2136",
                dns_credentials=bind.credentials,
                dns_propagation_s=0,
            )

            def bare_dns(state: Path) -> None:
                with acme_dns.plugin_run("rfc2136", bind.credentials, 0) as plugin:
                    bare_certbot(order, state, plugin.args, plugin.env)

            measure("DNS-01", order, bare_dns, args.runs, work)


if __name__ == "__main__":
    main()
