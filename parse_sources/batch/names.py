"""Column and table names: source headers become one stable SQL identifier each.

"Flight Date", "flight_date" and "FlightDate" are the same column, so a source that changes its header
style does not grow variant columns.
"""

from __future__ import annotations

import re

MAX_IDENTIFIER = 63  # Postgres truncates longer names silently; we refuse instead of colliding
META_PREFIX = "_"  # load metadata columns start with it; source columns never do after normalising
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class InvalidName(ValueError):
    """A table or column name that cannot become an identifier, or two that become the same one."""


def column(raw: str) -> str:
    """The identifier of a source column: snake_case, letters and digits, never starting with '_' or a digit."""
    name = _NOT_WORD.sub("_", _CAMEL.sub("_", raw.strip()).lower()).strip("_")
    if not name:
        raise InvalidName(f"column {raw!r} has no letters or digits; rename it in the source")
    if name[0].isdigit():
        name = "c_" + name
    if len(name) > MAX_IDENTIFIER:
        raise InvalidName(f"column {raw!r} is longer than {MAX_IDENTIFIER} characters once normalised")
    return name


def columns(raw: list[str]) -> list[str]:
    """Normalise a header; two source columns that normalise to one name are an error, not a silent merge."""
    result = [column(name) for name in raw]
    seen: dict[str, str] = {}
    for original, name in zip(raw, result, strict=True):
        if name in seen:
            raise InvalidName(f"columns {seen[name]!r} and {original!r} are both {name!r}; rename one in the source")
        seen[name] = original
    return result


def table(name: str) -> str:
    if not _TABLE.match(name):
        raise InvalidName(f"table name {name!r} must match {_TABLE.pattern}")
    return name
