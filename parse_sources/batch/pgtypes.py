"""Column types of `curated`: inferred from the text in `raw`, widened when a batch needs it, never forked.

Types form chains: bigint → double precision and date → timestamptz widen in place (ALTER ... TYPE).
A value that fits no widening of its column's type (text in a number column) does not turn the column into
text: its row is quarantined with the reason, so one bad value cannot change a table's schema.
"""

from __future__ import annotations

from psycopg import sql

BIGINT = "bigint"
DOUBLE = "double precision"
BOOLEAN = "boolean"
DATE = "date"
TIMESTAMPTZ = "timestamp with time zone"
JSONB = "jsonb"
TEXT = "text"
TYPES = (BIGINT, DOUBLE, BOOLEAN, DATE, TIMESTAMPTZ, JSONB, TEXT)
_CHAINS = ((BIGINT, DOUBLE), (DATE, TIMESTAMPTZ))

# Shapes of text, each a bit; a column's kind is the OR of its values' bits (first matching shape wins).
_SHAPES: tuple[tuple[int, str, str], ...] = (
    (1, BIGINT, r"^\s*[+-]?[0-9]{1,18}\s*$"),
    (2, DOUBLE, r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"),
    (4, BOOLEAN, r"(?i)^(true|false|t|f)$"),
    (8, DATE, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
    (
        16,
        TIMESTAMPTZ,
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$",
    ),
    (32, JSONB, r"^\s*[\[{]"),
)
_TEXT_BIT = 64
_PATTERN = {type_: pattern for _, type_, pattern in _SHAPES}
# Shapes that a regular expression cannot settle (2024-02-30, broken JSON): a cast in a subtransaction does.
_CHECKED_BY_CAST = (DATE, TIMESTAMPTZ, JSONB)

FUNCTIONS_SQL = "\n".join(
    f"""
CREATE OR REPLACE FUNCTION etl.casts_to_{type_.split()[0]}(value text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    PERFORM value::{type_};
    RETURN true;
EXCEPTION WHEN others THEN
    RETURN false;
END $$;"""
    for type_ in _CHECKED_BY_CAST
)


def shape_sql(column: str) -> sql.Composable:
    """An aggregate over a text column: the OR of the shape bits of its values (0: all NULL)."""
    ident = sql.Identifier(column)
    cases = sql.SQL(" ").join(
        sql.SQL("WHEN {c} ~ {p} THEN {b}").format(c=ident, p=sql.Literal(pattern), b=sql.Literal(bit))
        for bit, _, pattern in _SHAPES
    )
    return sql.SQL("coalesce(bit_or(CASE WHEN {c} IS NULL THEN 0 {cases} ELSE {t} END), 0)").format(
        c=ident, cases=cases, t=sql.Literal(_TEXT_BIT)
    )


def type_of_shapes(bits: int) -> str | None:
    """The narrowest type every value fits, from `shape_sql`'s bits; None when every value was NULL."""
    if bits == 0:
        return None
    for chain in _CHAINS:
        chain_bits = sum(bit for bit, type_, _ in _SHAPES if type_ in chain)
        if bits & ~chain_bits == 0:
            return next(type_ for bit, type_, _ in reversed(_SHAPES) if type_ in chain and bits & bit)
    single = {bit: type_ for bit, type_, _ in _SHAPES}
    return single.get(bits, TEXT)


def widened(current: str, needed: str | None) -> str:
    """The column type after a batch whose values need `needed`: wider on the same chain, else unchanged."""
    if needed is None or needed == current or current == TEXT:
        return current
    for chain in _CHAINS:
        if current in chain and needed in chain and chain.index(needed) > chain.index(current):
            return needed
    return current


def fits_sql(column: str, type_: str) -> sql.Composable:
    """True when the text column's value casts to `type_` (NULL fits every type)."""
    ident = sql.Identifier(column)
    if type_ == TEXT:
        return sql.SQL("true")
    check = sql.SQL("{c} ~ {p}").format(c=ident, p=sql.Literal(_PATTERN[type_]))
    if type_ in _CHECKED_BY_CAST:
        function = sql.Identifier("etl", f"casts_to_{type_.split()[0]}")
        check = sql.SQL("({check} AND {f}({c}))").format(check=check, f=function, c=ident)
    if type_ == DOUBLE:  # a bigint-shaped value is a valid double too
        check = sql.SQL("({c} ~ {p} OR {check})").format(c=ident, p=sql.Literal(_PATTERN[BIGINT]), check=check)
    return sql.SQL("({c} IS NULL OR {check})").format(c=ident, check=check)


def cast_sql(column: str, type_: str) -> sql.Composable:
    return sql.SQL("{c}::{t}").format(c=sql.Identifier(column), t=sql.SQL(type_))
