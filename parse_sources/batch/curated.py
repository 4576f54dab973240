"""Zone `curated`: typed columns, one row per key, merged from a batch in `raw`.

Schema evolution happens here: a new column is added with the type its values need, a column whose values
outgrow its type is widened in place, and a row whose values fit no type of its column is quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from parse_sources.batch import pgtypes
from parse_sources.batch.raw import META_COLUMNS, table_columns

CURATED_META = ("_batch_id", "_loaded_at", "_merged_at")
_REASON = "_why"


@dataclass(frozen=True)
class Evolution:
    """What a batch changes in curated.<table>: the column types after it, and which columns are new or wider."""

    types: dict[str, str]
    added: list[str] = field(default_factory=list)
    widened: list[str] = field(default_factory=list)
    create: bool = False

    @property
    def changes_schema(self) -> bool:
        return self.create or bool(self.added or self.widened)


def plan_evolution(
    conn: psycopg.Connection, table: str, key: tuple[str, ...], declared: dict[str, str], batch_id: str
) -> Evolution:
    """Decide the column types after this batch from the shapes of its values in raw (one scan)."""
    raw_columns = [c for c in table_columns(conn, "raw", table) if c not in META_COLUMNS]
    current = {c: t for c, t in table_columns(conn, "curated", table).items() if c not in CURATED_META}
    to_infer = [c for c in raw_columns if c not in declared]
    shapes: dict[str, int] = {}
    if to_infer:
        row = conn.execute(
            sql.SQL("SELECT {shapes} FROM {t} WHERE _batch_id = %s").format(
                shapes=sql.SQL(", ").join(pgtypes.shape_sql(c) for c in to_infer), t=sql.Identifier("raw", table)
            ),
            (batch_id,),
        ).fetchone()
        shapes = dict(zip(to_infer, row or (), strict=True))
    types, added, widened = dict(current), [], []
    for name in raw_columns:
        needed = declared.get(name) or pgtypes.type_of_shapes(shapes.get(name, 0))
        if name not in current:
            if needed is None:
                continue  # never had a value: its type is unknown until one arrives
            types[name] = needed
            added.append(name)
        elif name not in declared and pgtypes.widened(current[name], needed) != current[name]:
            types[name] = pgtypes.widened(current[name], needed)
            widened.append(name)
    missing_keys = [k for k in key if k not in types]
    if missing_keys:
        raise ValueError(
            f"key column(s) {', '.join(missing_keys)} of {table} have no values in batch {batch_id}; "
            f"columns received: {', '.join(raw_columns)}"
        )
    create = not current
    return Evolution(types, [] if create else added, widened, create)


def apply_evolution(conn: psycopg.Connection, table: str, key: tuple[str, ...], evolution: Evolution) -> None:
    ident = sql.Identifier("curated", table)
    if evolution.create:
        ordered = list(key) + [c for c in evolution.types if c not in key]
        columns = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(evolution.types[c])) for c in ordered]
        conn.execute(
            sql.SQL(
                "CREATE TABLE {t} ({cols}, _batch_id text NOT NULL, _loaded_at timestamptz NOT NULL,"
                " _merged_at timestamptz NOT NULL, PRIMARY KEY ({key}))"
            ).format(t=ident, cols=sql.SQL(", ").join(columns), key=sql.SQL(", ").join(map(sql.Identifier, key)))
        )
        return
    for name in evolution.added:
        conn.execute(
            sql.SQL("ALTER TABLE {t} ADD COLUMN {c} {type}").format(
                t=ident, c=sql.Identifier(name), type=sql.SQL(evolution.types[name])
            )
        )
    for name in evolution.widened:
        conn.execute(
            sql.SQL("ALTER TABLE {t} ALTER COLUMN {c} TYPE {type} USING {cast}").format(
                t=ident,
                c=sql.Identifier(name),
                type=sql.SQL(evolution.types[name]),
                cast=pgtypes.cast_sql(name, evolution.types[name]),
            )
        )


def _reasons(types: dict[str, str], key: tuple[str, ...]) -> sql.Composable:
    """Why a raw row cannot enter curated, '' when it can: every column that does not fit, every empty key."""
    parts = [
        sql.SQL(
            "CASE WHEN NOT {fits} THEN format('column %%s: %%L is not a valid %%s', {name}, {c}, {type}) END"
        ).format(fits=pgtypes.fits_sql(c, t), name=sql.Literal(c), c=sql.Identifier(c), type=sql.Literal(t))
        for c, t in types.items()
        if t != pgtypes.TEXT
    ]
    parts += [
        sql.SQL("CASE WHEN {c} IS NULL THEN {msg} END").format(
            c=sql.Identifier(k), msg=sql.Literal(f"key column {k} is empty")
        )
        for k in key
    ]
    return sql.SQL("concat_ws('; ', {})").format(sql.SQL(", ").join(parts))


def merge(
    conn: psycopg.Connection, table: str, key: tuple[str, ...], types: dict[str, str], batch_id: str
) -> tuple[int, int]:
    """Quarantine the batch's rows that do not fit, upsert the rest by key; return (rows changed, quarantined).

    The last row of a key in the batch wins; a row equal to the stored one is not rewritten, so merging a
    batch twice changes nothing.
    """
    raw_table, target = sql.Identifier("raw", table), sql.Identifier("curated", table)
    reasons = _reasons(types, key)
    quarantined = conn.execute(
        sql.SQL(
            "INSERT INTO etl.quarantine (target, batch_id, stage, raw_id, record, reason)"
            " SELECT %s, _batch_id, 'curated', _raw_id, to_jsonb(r) - {meta}::text[], {why}"
            " FROM (SELECT *, {reasons} AS {why} FROM {raw} WHERE _batch_id = %s) r WHERE {why} <> ''"
        ).format(
            meta=sql.Literal([*META_COLUMNS, _REASON]), why=sql.Identifier(_REASON), reasons=reasons, raw=raw_table
        ),
        (table, batch_id),
    ).rowcount
    columns = list(types)
    key_casts = sql.SQL(", ").join(pgtypes.cast_sql(k, types[k]) for k in key)
    non_key = [c for c in columns if c not in key]
    on_conflict = sql.SQL("DO NOTHING")
    if non_key:
        on_conflict = sql.SQL(
            "DO UPDATE SET {sets}, _batch_id = EXCLUDED._batch_id, _loaded_at = EXCLUDED._loaded_at,"
            " _merged_at = EXCLUDED._merged_at WHERE ({old}) IS DISTINCT FROM ({new})"
        ).format(
            sets=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in non_key),
            old=sql.SQL(", ").join(sql.Identifier("cur", c) for c in non_key),
            new=sql.SQL(", ").join(sql.Identifier("excluded", c) for c in non_key),
        )
    merged = conn.execute(
        sql.SQL(
            "INSERT INTO {target} AS cur ({cols}, _batch_id, _loaded_at, _merged_at)"
            " SELECT DISTINCT ON ({key_casts}) {casts}, _batch_id, _loaded_at, now() FROM {raw}"
            " WHERE _batch_id = %s AND {reasons} = '' ORDER BY {key_casts}, _raw_id DESC"
            " ON CONFLICT ({key}) {on_conflict}"
        ).format(
            target=target,
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            key_casts=key_casts,
            casts=sql.SQL(", ").join(pgtypes.cast_sql(c, types[c]) for c in columns),
            raw=raw_table,
            reasons=reasons,
            key=sql.SQL(", ").join(map(sql.Identifier, key)),
            on_conflict=on_conflict,
        ),
        (batch_id,),
    ).rowcount
    return merged, quarantined
