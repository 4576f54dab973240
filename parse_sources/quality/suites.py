"""Which checks run on which table: one suite per configured table, and running one."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import psycopg

from parse_sources.batch import example
from parse_sources.quality import results
from parse_sources.quality.checks import (
    Accuracy,
    Check,
    Completeness,
    Consistency,
    Timeliness,
    Uniqueness,
    Validity,
)

log = logging.getLogger(__name__)
DIMENSIONS = ("completeness", "uniqueness", "validity", "consistency", "timeliness", "accuracy")


@dataclass(frozen=True)
class Suite:
    table: str
    checks: tuple[Check, ...]

    @property
    def dimensions(self) -> list[str]:
        return [d for d in DIMENSIONS if any(c.dimension == d for c in self.checks)]


@dataclass(frozen=True)
class Result:
    table: str
    dimension: str
    check: str
    passed: bool
    detail: str


class QualityFailure(Exception):
    """One or more checks failed; the message lists each with what to look at."""


FLIGHTS = Suite(
    table="flights",
    checks=(
        Completeness("flight_id"),
        Completeness("carrier"),
        Completeness("scheduled_departure"),
        Completeness("departure_delay_min", max_null_rate=0.05),  # cancelled flights have none
        Uniqueness(("flight_id",)),
        Uniqueness(("flight_date", "carrier", "flight_number")),
        Validity("passengers", minimum=0, maximum=853),
        Validity("departure_delay_min", minimum=-60, maximum=24 * 60),
        Validity("flight_id", pattern=r"^[0-9]{8}-[A-Z]{2}[0-9]+$"),
        Validity("carrier", allowed=example.CARRIERS),
        Consistency(key=("flight_id",)),
        Timeliness(max_age=dt.timedelta(days=1, hours=6)),  # daily schedule + 6 h of slack
        Accuracy(example.REFERENCE_DISTANCES, key=("origin", "destination"), compare=("distance_km",)),
    ),
)
SUITES: dict[str, Suite] = {s.table: s for s in (FLIGHTS,)}


def run(conn: psycopg.Connection, suite: Suite, run_id: str, dimensions: tuple[str, ...] = DIMENSIONS) -> list[Result]:
    """Measure, store every result (passed or not), then raise QualityFailure if any check failed."""
    results.ensure_schema(conn)
    outcome: list[Result] = []
    with conn.transaction():
        for check in suite.checks:
            if check.dimension not in dimensions:
                continue
            measured = check.measure(conn, suite.table)
            results.store(
                conn,
                run_id,
                suite.table,
                check.dimension,
                check.name,
                measured.measured,
                measured.passed,
                measured.detail,
            )
            outcome.append(Result(suite.table, check.dimension, check.name, measured.passed, measured.detail))
            log.info("%s %s / %s: %s", "PASS" if measured.passed else "FAIL", suite.table, check.name, measured.detail)
    failed = [r for r in outcome if not r.passed]
    if failed:
        lines = "\n".join(f"  - {r.dimension}: {r.check}: {r.detail}" for r in failed)
        raise QualityFailure(f"{len(failed)} of {len(outcome)} quality checks on {suite.table} failed:\n{lines}")
    return outcome
