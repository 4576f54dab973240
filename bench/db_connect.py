"""Benchmark: db_connect against the same SQL run directly, on one throwaway Postgres, in one run.

    /work/venv/bin/python bench/db_connect.py [--seconds 5] [--workers 2]

Starts its own Postgres 15 cluster (host binaries, as the integration tests do) and db_connect under
uvicorn, then measures, each for --seconds:
  * GET one row by primary key, GET a filtered page of 100 rows, and GET one row with its 100 first children
    embedded (resource embedding through a foreign key), at 1, 10 and 50 concurrent clients,
    with `wrk` (HTTP/1.1 keep-alive), next to pgbench at the same concurrency running (a) the bare SELECT
    a client would write by hand (prepared), and (b) the very SQL db_connect sends for that request, as
    it sends it: a pipeline of two prepared statements (role switch and read-only mode, then the SELECT)
    built by db_connect's own code and run as the same login role (pgbench -M prepared, in a pipeline;
    pgbench prepares a script's statements before running it, so the login role gets USAGE on the
    schema here, which changes no privilege on the table);
  * the HTTP floor: a do-nothing ASGI app (bench/http_floor.py) under the same uvicorn and wrk, answering
    the single row's bytes: what no Python API on this machine can beat;
  * for a single row at 10 clients, where the CPU goes per request or transaction: the API's processes,
    Postgres (its backends included) and the load generator, through db_connect, pgbench (b) and the floor;
  * a bulk insert of 1,000,000 rows: a CSV body POSTed to the API (COPY underneath) next to psql's
    `COPY ... FROM STDIN` of the same file.
Targets: GET >= 30 % of pgbench's transactions/s at 10 clients running the same SQL (b); the ratio to
the bare SELECT (a) is printed beside it. Bulk insert >= 70 % of raw COPY.
Needs `wrk` (Debian: wrk). Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import psycopg
from starlette.datastructures import Headers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db_connect.catalog import Catalog  # noqa: E402
from db_connect.database import settings_sql  # noqa: E402
from db_connect.keys import KEYS_DDL, digest  # noqa: E402
from db_connect.prefer import preferences  # noqa: E402
from db_connect.query_params import parse_query  # noqa: E402
from db_connect.reads import page_statements  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")
API_KEY = "bench-api-key"
WRITER_KEY = "sk_bench_writer"
PASSWORD = "bench-password"
SUPER_PASSWORD = "bench-superuser"
TABLE_ROWS = 100_000
BULK_ROWS = 1_000_000
CLIENTS = (1, 10, 50)
KEY_ID = 4242
SETUP_SQL = f"""
CREATE ROLE db_connect LOGIN NOINHERIT PASSWORD '{PASSWORD}';
CREATE ROLE api_reader NOLOGIN; CREATE ROLE api_writer NOLOGIN;
GRANT api_reader, api_writer TO db_connect;
CREATE SCHEMA consumption; CREATE SCHEMA db_connect AUTHORIZATION db_connect;
CREATE TABLE consumption.readings (id integer PRIMARY KEY, meter text NOT NULL, kwh numeric, read_at timestamptz);
INSERT INTO consumption.readings
SELECT i, 'meter-' || (i % 500), i * 0.25, timestamptz '2024-01-01' + i * interval '1 minute'
FROM generate_series(1, {TABLE_ROWS}) AS i;
CREATE INDEX ON consumption.readings (meter, id);
CREATE TABLE consumption.meters (name text PRIMARY KEY, site text NOT NULL);
INSERT INTO consumption.meters SELECT 'meter-' || i, 'site-' || (i % 20) FROM generate_series(0, 499) AS i;
ALTER TABLE consumption.readings ADD FOREIGN KEY (meter) REFERENCES consumption.meters (name);
CREATE TABLE consumption.bulk (id integer PRIMARY KEY, meter text NOT NULL, kwh numeric, read_at timestamptz);
GRANT USAGE ON SCHEMA consumption TO api_reader, api_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA consumption TO api_reader, api_writer;
GRANT INSERT ON consumption.bulk TO api_writer;
GRANT USAGE ON SCHEMA consumption TO db_connect;  -- for pgbench (b) only: it prepares before the role switch
ANALYZE;
"""
# What a client of the API gets, written by hand: the row(s) as JSON, as db_connect returns them.
SINGLE_SQL = f"SELECT row_to_json(r) FROM consumption.readings r WHERE id = {KEY_ID};"
PAGE_SQL = (
    "SELECT json_agg(r) FROM (SELECT * FROM consumption.readings WHERE meter = 'meter-7' ORDER BY id LIMIT 100) r;"
)
EMBED_SQL = (
    "SELECT row_to_json(m) FROM (SELECT name, site, (SELECT json_agg(r) FROM (SELECT id, kwh, read_at"
    " FROM consumption.readings WHERE meter = p.name ORDER BY id LIMIT 100) r) AS readings"
    " FROM consumption.meters p WHERE name = 'meter-7') m;"
)
SINGLE_PATH = f"/consumption/readings?id=eq.{KEY_ID}"
PAGE_PATH = "/consumption/readings?meter=eq.meter-7&order=id&limit=100"
EMBED_PATH = (
    "/consumption/meters?name=eq.meter-7&select=name,site,readings(id,kwh,read_at)&readings.order=id&readings.limit=100"
)
REQUESTS = (("single", SINGLE_SQL, SINGLE_PATH), ("page", PAGE_SQL, PAGE_PATH), ("embed", EMBED_SQL, EMBED_PATH))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start_postgres(root: Path) -> int:
    data, pwfile, port = root / "data", root / "pw", free_port()
    pwfile.write_text(SUPER_PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
    initdb = [str(PG_BIN / "initdb"), f"-D{data}", "-Upostgres", f"--pwfile={pwfile}", "--auth=scram-sha-256"]
    subprocess.run(as_postgres([*initdb, "--no-sync", "--no-locale", "-EUTF8"]), check=True, capture_output=True)
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c max_connections=200"
        " -c shared_buffers=256MB -c synchronous_commit=off"
    )
    start = [str(PG_BIN / "pg_ctl"), "start", "-w", f"-D{data}", f"-l{root / 'log'}", f"-o{options}"]
    subprocess.run(as_postgres(start), check=True, capture_output=True)
    return port


def psql(port: int, *args: str, stdin: Path | None = None) -> str:
    env = dict(os.environ, PGPASSWORD=SUPER_PASSWORD)
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as source:
        result = subprocess.run(
            [
                "psql",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h127.0.0.1",
                f"-p{port}",
                "-Upostgres",
                "-dwarehouse",
                *args,
            ],
            env=env,
            stdin=source,
            capture_output=True,
            text=True,
            check=True,
        )
    return result.stdout


def api_sql(port: int, path: str) -> str:
    """The pipeline db_connect sends for GET path, as a pgbench script; from db_connect's own code."""

    async def statements() -> list:
        async with await psycopg.AsyncConnection.connect(**superuser(port), autocommit=True) as conn:
            catalog = Catalog(("consumption",))
            await catalog.reload(conn)
        schema, name = urlsplit(path).path.strip("/").split("/")
        relation = catalog.lookup(schema, name)
        assert relation is not None
        query = parse_query(parse_qsl(urlsplit(path).query), 100, 1000)
        return page_statements(catalog, relation, query, preferences(Headers()), 10_000)

    with psycopg.connect(**superuser(port)) as conn:
        cursor = psycopg.ClientCursor(conn)
        parts = [
            settings_sql("api_reader", True),
            *(cursor.mogrify(s.text(), s.params) for s in asyncio.run(statements())),
        ]
    return "\\startpipeline\n" + "".join(part + ";\n" for part in parts) + "\\endpipeline\n"


def superuser(port: int) -> dict[str, object]:
    return {"host": "127.0.0.1", "port": port, "dbname": "warehouse", "user": "postgres", "password": SUPER_PASSWORD}


def pgbench(
    port: int, script: Path, clients: int, seconds: int, logdir: Path, as_api: bool = False
) -> tuple[float, float, float]:
    """Transactions/s, average latency (pgbench's own) and p99 (from its per-transaction log), in ms.

    as_api: connect as db_connect does (its login role, its statement timeout).
    """
    for old in logdir.glob("pgbench_log*"):
        old.unlink()
    env = dict(os.environ, PGPASSWORD=SUPER_PASSWORD)
    user = "postgres"
    if as_api:
        env.update(PGPASSWORD=PASSWORD, PGOPTIONS="-c statement_timeout=120000")
        user = "db_connect"
    argv = [str(PG_BIN / "pgbench"), "-n", "-h127.0.0.1", f"-p{port}", f"-U{user}", "-Mprepared", f"-c{clients}"]
    argv += [f"-j{min(clients, 2)}", f"-T{seconds}", f"-f{script}", "-l", "warehouse"]
    out = subprocess.run(argv, env=env, cwd=logdir, capture_output=True, text=True, check=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    average = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    latencies = sorted(int(line.split()[2]) / 1000 for f in logdir.glob("pgbench_log*") for line in f.open())
    return tps, average, percentile(latencies, 99)


def percentile(values: list[float], p: int) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


def wrk(base: str, path: str, clients: int, seconds: int) -> tuple[float, float, float]:
    """Requests/s and p50/p99 (ms) from wrk (HTTP/1.1 keep-alive); any non-2xx or socket error fails the run."""
    argv = ["wrk", f"-c{clients}", f"-t{min(clients, 2)}", f"-d{seconds}s", "--latency", "-H", f"X-API-Key: {API_KEY}"]
    out = subprocess.run([*argv, base + path], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, wrk_ms(out, "50%"), wrk_ms(out, "99%")


def process_cpu(leader: int) -> float:
    """CPU seconds (user + system) so far of a process and its children: the live ones, and those it has
    reaped (Postgres backends that have exited). Children, not the process group: backends call setsid()."""
    seconds = 0
    for entry in os.scandir("/proc"):
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
        except OSError:  # exited meanwhile
            continue
        if entry.name == str(leader):
            seconds += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        elif fields and int(fields[1]) == leader:
            seconds += int(fields[11]) + int(fields[12])
    return seconds / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_per_call(
    measure: Callable[[], tuple[float, ...]], leaders: dict[str, int], load: str, seconds: int
) -> tuple[tuple[float, ...], dict[str, float]]:
    """measure()'s result (calls/s first), and the CPU µs per call spent by each process (with its children)
    and by the load generator (a child of this process)."""
    before = {label: process_cpu(pid) for label, pid in leaders.items()}
    load_before = children_cpu()
    result = measure()
    spent = {label: process_cpu(pid) - before[label] for label, pid in leaders.items()}
    spent[load] = children_cpu() - load_before
    return result, {label: cpu / (result[0] * seconds) * 1e6 for label, cpu in spent.items()}


def cpu_text(per_call: dict[str, float]) -> str:
    parts = ", ".join(f"{label} {us:.0f}" for label, us in per_call.items())
    return f"{sum(per_call.values()):.0f} µs ({parts})"


def wrk_ms(out: str, label: str) -> float:
    value, unit = re.search(rf"\s{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def start_api(root: Path, port: int, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    (root / "db_password").write_text(PASSWORD)
    (root / "api_key").write_text(API_KEY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(port),
        "PGDATABASE": "warehouse",
        "PGUSER": "db_connect",
        "PGPASSWORD_FILE": str(root / "db_password"),
        "API_KEY_FILE": str(root / "api_key"),
        "STATEMENT_TIMEOUT_MS": "120000",
        "MAX_BODY_BYTES": str(1 << 30),
        "POOL_MAX_SIZE": "20",
    }
    return serve("db_connect.app:app", env, workers, SINGLE_PATH)


def serve(app: str, env: dict[str, str], workers: int, probe: str) -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn serving app as the db_connect image does (no access log), once probe answers 200."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    server = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + probe, headers={"X-API-Key": API_KEY}).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(server)
    raise SystemExit(f"{app} did not start")


def stop(server: subprocess.Popen[bytes]) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=20)


def bulk(port: int, base: str, root: Path, jwt_role_key: str) -> tuple[float, float]:
    csv_file = root / "bulk.csv"
    with csv_file.open("w") as out:
        out.write("id,meter,kwh,read_at\n")
        for i in range(1, BULK_ROWS + 1):
            out.write(f"{i},meter-{i % 500},{i * 0.25},2024-01-01T00:00:00+00:00\n")
    psql(port, "-c", "TRUNCATE consumption.bulk")
    started = time.monotonic()
    psql(port, "-c", "COPY consumption.bulk FROM STDIN (FORMAT csv, HEADER)", stdin=csv_file)
    raw = BULK_ROWS / (time.monotonic() - started)
    psql(port, "-c", "TRUNCATE consumption.bulk")
    headers = {"X-API-Key": jwt_role_key, "Content-Type": "text/csv"}
    started = time.monotonic()
    with csv_file.open("rb") as body:
        response = httpx.post(base + "/consumption/bulk", content=body, headers=headers, timeout=300)
    api = BULK_ROWS / (time.monotonic() - started)
    if response.status_code != 201 or response.headers["Content-Range"] != f"*/{BULK_ROWS}":
        raise SystemExit(f"bulk insert failed: {response.status_code} {response.text}")
    return api, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="per measurement (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2, as 2 replicas)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sawmill-bench-dbc-"))
    server = None
    try:
        port = start_postgres(root)
        subprocess.run(
            [
                "psql",
                "-X",
                "-q",
                "-h127.0.0.1",
                f"-p{port}",
                "-Upostgres",
                "-dpostgres",
                "-c",
                "CREATE DATABASE warehouse",
            ],
            env=dict(os.environ, PGPASSWORD=SUPER_PASSWORD),
            check=True,
        )
        psql(port, "-c", SETUP_SQL)
        register = "ALTER TABLE db_connect.api_keys OWNER TO db_connect; INSERT INTO db_connect.api_keys"
        register += f" (name, key_sha256, role) VALUES ('bench', '{digest(WRITER_KEY)}', 'api_writer')"
        psql(port, "-c", KEYS_DDL + ";" + register)
        scripts = {}
        for name, select, path in REQUESTS:
            scripts[name] = (root / f"{name}.sql", root / f"{name}-api.sql")
            scripts[name][0].write_text(select)
            scripts[name][1].write_text(api_sql(port, path))
        server, base = start_api(root, port, args.workers)
        print(f"db_connect benchmark: {os.cpu_count()} cores, uvicorn workers={args.workers}, {args.seconds} s each")
        print("pgbench (a): the bare SELECT, prepared; (b): the SQL db_connect sends, as db_connect sends it\n")
        print(
            f"{'request':<8} {'clients':>7} {'API req/s':>10} {'p50 ms':>7} {'p99 ms':>7}   "
            f"{'(a) tps':>8} {'p99 ms':>7} {'ratio':>6}   {'(b) tps':>8} {'p99 ms':>7} {'ratio':>6}"
        )
        ratios: dict[str, tuple[float, float]] = {}
        throughput: dict[str, float] = {}
        postmaster = int((root / "data" / "postmaster.pid").read_text().split()[0])
        cpu: dict[tuple[str, str, int], dict[str, float]] = {}  # (what, request, clients) -> µs per call by process
        for name, _, path in REQUESTS:
            for clients in CLIENTS:
                api, cpu["db_connect", name, clients] = cpu_per_call(
                    partial(wrk, base, path, clients, args.seconds),
                    {"API": server.pid, "Postgres": postmaster},
                    "wrk",
                    args.seconds,
                )
                bare = pgbench(port, scripts[name][0], clients, args.seconds, root)
                same, cpu["pgbench (b)", name, clients] = cpu_per_call(
                    partial(pgbench, port, scripts[name][1], clients, args.seconds, root, as_api=True),
                    {"Postgres": postmaster},
                    "pgbench",
                    args.seconds,
                )
                ratios[f"{name}@{clients}"] = (api[0] / bare[0], api[0] / same[0])
                throughput[f"{name}@{clients}"] = api[0]
                print(
                    f"{name:<8} {clients:>7} {api[0]:>10.0f} {api[1]:>7.1f} {api[2]:>7.1f}   "
                    f"{bare[0]:>8.0f} {bare[2]:>7.2f} {api[0] / bare[0]:>6.2f}   "
                    f"{same[0]:>8.0f} {same[2]:>7.2f} {api[0] / same[0]:>6.2f}"
                )
        floor_server, floor_base = serve("bench.http_floor:app", dict(os.environ), args.workers, "/")
        try:
            floor = {}
            for clients in CLIENTS:
                (floor[clients], *_), cpu["HTTP floor", "single", clients] = cpu_per_call(
                    partial(wrk, floor_base, "/", clients, args.seconds),
                    {"uvicorn": floor_server.pid},
                    "wrk",
                    args.seconds,
                )
        finally:
            stop(floor_server)
        print(
            "\nHTTP floor (bench/http_floor.py: no work at all, the same uvicorn and wrk): "
            + ", ".join(f"{rps:,.0f} req/s at {clients}" for clients, rps in floor.items())
            + f"; a single row from db_connect at 10 clients is {throughput['single@10'] / floor[10]:.2f} of it"
        )
        print("\nCPU per request or transaction, single row at 10 clients (both cores, every process involved):")
        for label in ("db_connect", "pgbench (b)", "HTTP floor"):
            print(f"  {label:<12} {cpu_text(cpu[label, 'single', 10])}")
        api_rows, raw_rows = bulk(port, base, root, WRITER_KEY)
        print(
            f"\nbulk insert of {BULK_ROWS:,} rows (CSV): API {api_rows:,.0f} rows/s, psql COPY {raw_rows:,.0f} rows/s, "
            f"ratio {api_rows / raw_rows:.2f}"
        )
        single, page, embed = ratios["single@10"], ratios["page@10"], ratios["embed@10"]
        print(
            f"\ntargets: GET at 10 clients >= 0.30 of pgbench running the same SQL (b): single {single[1]:.2f}, "
            f"page {page[1]:.2f}, embed {embed[1]:.2f} (of the bare SELECT (a): {single[0]:.2f}, {page[0]:.2f}, "
            f"{embed[0]:.2f}); "
            f"bulk insert >= 0.70 of COPY: {api_rows / raw_rows:.2f}"
        )
    finally:
        if server is not None:
            stop(server)
        data = root / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run(
                as_postgres([str(PG_BIN / "pg_ctl"), "stop", "-m", "fast", f"-D{data}"]), capture_output=True
            )
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
