"""The example pipeline: a day of flights, generated (no internet needed), loaded daily into `consumption`.

The generator is deterministic per day, so a re-run of a day produces the same file and changes nothing,
and it writes one truncated line a day, as real feeds do, so the quarantine is exercised every run.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

from parse_sources.batch import pgtypes
from parse_sources.batch.pipeline import TableSpec

REFERENCE_DISTANCES = Path(__file__).parent / "example_data" / "route_distances.csv"
CARRIERS = ("SW", "NA", "LB", "KP")


def _routes() -> dict[tuple[str, str], int]:
    """(origin, destination) → km, from the reference sample the accuracy check also compares against."""
    with REFERENCE_DISTANCES.open(newline="") as handle:
        return {(r["origin"], r["destination"]): int(r["distance_km"]) for r in csv.DictReader(handle)}


ROUTES = _routes()
COLUMNS = (
    "flight_id",
    "flight_date",
    "carrier",
    "flight_number",
    "origin",
    "destination",
    "scheduled_departure",
    "departure_delay_min",
    "distance_km",
    "passengers",
    "cancelled",
)

FLIGHTS = TableSpec(
    name="flights",
    key=("flight_id",),
    types={
        "flight_id": pgtypes.TEXT,
        "flight_date": pgtypes.DATE,
        "carrier": pgtypes.TEXT,
        "flight_number": pgtypes.BIGINT,
        "origin": pgtypes.TEXT,
        "destination": pgtypes.TEXT,
        "scheduled_departure": pgtypes.TIMESTAMPTZ,
        "departure_delay_min": pgtypes.BIGINT,
        "distance_km": pgtypes.BIGINT,
        "passengers": pgtypes.BIGINT,
        "cancelled": pgtypes.BOOLEAN,
    },
)


def flights(day: dt.date, rows: int = 500) -> list[list[str]]:
    """The day's flights as CSV rows (header first); the last data row is cut short on purpose."""
    rng = random.Random(day.toordinal())
    routes = list(ROUTES)
    out = [list(COLUMNS)]
    for number in range(rows):
        origin, destination = routes[number % len(routes)]
        carrier = CARRIERS[number % len(CARRIERS)]
        departure = dt.datetime.combine(day, dt.time(5), dt.UTC) + dt.timedelta(minutes=rng.randrange(0, 17 * 60))
        cancelled = rng.random() < 0.02
        out.append(
            [
                f"{day:%Y%m%d}-{carrier}{100 + number}",
                day.isoformat(),
                carrier,
                str(100 + number),
                origin,
                destination,
                departure.isoformat(),
                "" if cancelled else str(max(-10, int(rng.gauss(8, 20)))),
                str(ROUTES[(origin, destination)]),
                str(rng.randint(40, 320)),
                "true" if cancelled else "false",
            ]
        )
    out[-1] = out[-1][:5]  # a truncated line: quarantined with "expected 11 fields, got 5"
    return out


def write_flights(day: dt.date, path: Path, rows: int = 500) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(flights(day, rows))
    return path
