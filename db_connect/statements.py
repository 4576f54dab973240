"""Stage 2 of a request: SQL built from a parsed query and the schema cache.

Every identifier is looked up in the relation and quoted by psycopg; every value is a bound parameter
(sent untyped, so Postgres casts it to the column's type, and a bad value is a 400, not an injection).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from db_connect.catalog import Relation
from db_connect.errors import ApiError
from db_connect.query_params import COMPARISONS, Condition, Group, OrderTerm, Query, invalid

Params = list[object]
SQL_COMPARISON = dict(zip(COMPARISONS, ("=", "<>", ">", ">=", "<", "<="), strict=True))
TABLE = sql.Identifier("t")


@dataclass(frozen=True)
class Statement:
    query: sql.Composable | str  # str: a text rendered once for many requests (templates.py)
    params: Params

    def text(self) -> str:
        return self.query if isinstance(self.query, str) else self.query.as_string()


def unknown_column(relation: Relation, name: str, parameter: str) -> ApiError:
    listed = ", ".join(column.name for column in relation.columns[:20])
    return invalid(parameter, f"{relation.schema}.{relation.name} has no column '{name}'", hint=f"Columns: {listed}")


def column(relation: Relation, name: str, parameter: str) -> sql.Composable:
    """A column of the request's relation, qualified by its alias; unknown names are a 400."""
    if name not in relation.by_name:
        raise unknown_column(relation, name, parameter)
    return sql.Identifier("t", name)


def selected(relation: Relation, query: Query) -> list[str]:
    names = query.select or [c.name for c in relation.columns]
    for name in names:
        column(relation, name, "select")
    return list(names)


def condition_sql(relation: Relation, cond: Condition, params: Params) -> sql.Composable:
    target = column(relation, cond.column, cond.column)
    if cond.operator in SQL_COMPARISON:
        params.append(cond.value)
        clause = sql.SQL("{} " + SQL_COMPARISON[cond.operator] + " %s").format(target)
    elif cond.operator in ("like", "ilike"):
        params.append(cond.value)
        clause = sql.SQL("{}::text " + cond.operator.upper() + " %s").format(target)
    elif cond.operator == "in":  # one array of any length: one statement text, however long the list
        params.append(cond.value)
        clause = sql.SQL("{} = ANY(%s)").format(target)
    else:  # is: the value was checked by the parser against a fixed list
        clause = sql.SQL("{} IS " + str(cond.value).upper()).format(target)
    return sql.SQL("NOT ({})").format(clause) if cond.negated else clause


def group_sql(relation: Relation, group: Group, params: Params) -> sql.Composable:
    parts = [
        group_sql(relation, item, params) if isinstance(item, Group) else condition_sql(relation, item, params)
        for item in group.items
    ]
    joined = sql.SQL(" AND " if group.conjunction == "and" else " OR ").join(sql.SQL("({})").format(p) for p in parts)
    return sql.SQL("NOT ({})").format(joined) if group.negated else joined


def where_sql(relation: Relation, where: Group, params: Params, extra: sql.Composable | None = None) -> sql.Composable:
    parts = [group_sql(relation, where, params)] if where.items else []
    if extra is not None:
        parts.append(extra)
    if not parts:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(sql.SQL("({})").format(p) for p in parts)


def effective_order(relation: Relation, query: Query) -> tuple[OrderTerm, ...]:
    """The client's order, completed by the primary key so pages are stable and never overlap."""
    named = {term.column for term in query.order}
    return query.order + tuple(OrderTerm(name) for name in relation.primary_key if name not in named)


def order_sql(relation: Relation, order: Sequence[OrderTerm]) -> sql.Composable:
    if not order:
        return sql.SQL("")
    terms = [
        sql.SQL("{}{}{}").format(
            column(relation, term.column, "order"),
            sql.SQL(" DESC" if term.descending else " ASC"),
            sql.SQL({"first": " NULLS FIRST", "last": " NULLS LAST", None: ""}[term.nulls]),
        )
        for term in order
    ]
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(terms)


def keyset_order(relation: Relation, query: Query) -> tuple[OrderTerm, ...]:
    """Keyset pages need a total order on columns that are never null."""
    if not relation.primary_key:
        raise invalid("cursor", f"{relation.name} has no primary key to page by", hint="Use limit and offset")
    order = effective_order(relation, query)
    for term in order:
        column(relation, term.column, "order")
        if not relation.by_name[term.column].not_null:
            raise invalid("cursor", f"column '{term.column}' may be null", hint="Order by NOT NULL columns only")
    return order


def after_sql(
    relation: Relation, order: Sequence[OrderTerm], values: Sequence[object], params: Params
) -> sql.Composable:
    """Rows strictly after the cursor, for any mix of directions: (a > x) OR (a = x AND b < y) ..."""
    alternatives = []
    for index, term in enumerate(order):
        parts = []
        for previous, value in zip(order[:index], values, strict=False):
            params.append(value)
            parts.append(sql.SQL("{} = %s").format(column(relation, previous.column, "order")))
        params.append(values[index])
        comparison = "<" if term.descending else ">"
        parts.append(sql.SQL("{} " + comparison + " %s").format(column(relation, term.column, "order")))
        alternatives.append(sql.SQL("({})").format(sql.SQL(" AND ").join(parts)))
    return sql.SQL(" OR ").join(alternatives)


def source_sql(relation: Relation, names: list[str], row_expr: sql.Composable) -> sql.Composable:
    """SELECT row_expr FROM the relation as t, with the selected columns as a named row s."""
    cols = sql.SQL(", ").join(sql.Identifier("t", name) for name in names)
    return sql.SQL("SELECT {} FROM {} AS t CROSS JOIN LATERAL (SELECT {}) AS s").format(
        row_expr, sql.Identifier(relation.schema, relation.name), cols
    )


def page_statement(relation: Relation, query: Query) -> Statement:
    """One round trip: the page as a JSON array, its row count, and (keyset) the last row's cursor values."""
    params: Params = []
    names = selected(relation, query)
    if query.cursor is not None:
        order = keyset_order(relation, query)
        keys = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier("t", t.column)) for t in order)
        extra_params: Params = []
        if query.cursor and len(query.cursor) != len(order):
            raise invalid("cursor", "does not match this ordering", hint="Start again with cursor= (empty)")
        extra = after_sql(relation, order, query.cursor, extra_params) if query.cursor else None
        inner = source_sql(relation, names, sql.SQL("s AS doc, json_build_array({}) AS k").format(keys))
        last_key = sql.SQL(", (array_agg(p.k))[count(*)]::text")
    else:
        order, extra, extra_params = effective_order(relation, query), None, []
        inner = source_sql(relation, names, sql.SQL("s AS doc"))
        last_key = sql.SQL(", NULL::text")
    where = where_sql(relation, query.where, params, extra)
    params += [*extra_params, query.limit, query.offset]
    return Statement(
        sql.SQL(
            "SELECT coalesce(json_agg(p.doc), '[]')::text, count(*){} FROM ({}{}{} LIMIT %s OFFSET %s) AS p"
        ).format(last_key, inner, where, order_sql(relation, order)),
        params,
    )


def stream_statement(relation: Relation, query: Query, as_csv: bool) -> tuple[Statement, list[str]]:
    """Row by row, for responses streamed as they are read: JSON text per row, or each value as text for CSV."""
    if query.cursor is not None:
        raise invalid("cursor", "keyset pages are JSON pages of at most 1000 rows", hint="Lower limit")
    params: Params = []
    names = selected(relation, query)
    if as_csv:
        row = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier("t", name)) for name in names)
        source = sql.SQL("SELECT {} FROM {} AS t").format(row, sql.Identifier(relation.schema, relation.name))
    else:
        source = source_sql(relation, names, sql.SQL("row_to_json(s)::text"))
    where = where_sql(relation, query.where, params)
    params += [query.limit, query.offset]
    order = order_sql(relation, effective_order(relation, query))
    return Statement(sql.SQL("{}{}{} LIMIT %s OFFSET %s").format(source, where, order), params), names


def count_statement(relation: Relation, query: Query, cap: int | None = None) -> Statement:
    """The exact number of matching rows; with a cap, counting stops after cap + 1 rows."""
    params: Params = []
    where = where_sql(relation, query.where, params)
    source = sql.SQL("SELECT 1 FROM {} AS t{}").format(sql.Identifier(relation.schema, relation.name), where)
    if cap is None:
        return Statement(sql.SQL("SELECT count(*) FROM ({}) AS c").format(source), params)
    return Statement(sql.SQL("SELECT count(*) FROM ({} LIMIT %s) AS c").format(source), [*params, cap + 1])


def planned_count_statement(relation: Relation, query: Query) -> Statement:
    """The planner's row estimate: instant on any table, as good as its statistics."""
    params: Params = []
    where = where_sql(relation, query.where, params)
    return Statement(
        sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} AS t{}").format(
            sql.Identifier(relation.schema, relation.name), where
        ),
        params,
    )


def returning_sql(relation: Relation, query: Query) -> sql.Composable:
    names = selected(relation, query)
    return sql.SQL(" RETURNING ") + sql.SQL(", ").join(sql.Identifier("t", name) for name in names)


def wrap_returning(statement: sql.Composable, returning: bool) -> sql.Composed:
    """Written rows as a JSON array (or NULL) and how many there were, in one row."""
    if returning:
        return sql.SQL("WITH w AS ({}) SELECT coalesce(json_agg(w), '[]')::text, count(*) FROM w").format(statement)
    return sql.SQL("WITH w AS ({}) SELECT NULL::text, count(*) FROM w").format(statement)


def require_filter(query: Query, method: str) -> None:
    if not query.where.items:
        raise ApiError(
            400,
            "filter_required",
            f"{method} needs at least one filter",
            hint="Add a filter such as ?id=eq.1; to touch every row, say so with e.g. ?id=not.is.null",
        )


def update_statement(relation: Relation, query: Query, values: dict[str, str | None], returning: bool) -> Statement:
    require_filter(query, "PATCH")
    if not values:
        raise ApiError(400, "invalid_body", "The body names no column to update", hint='e.g. {"status": "done"}')
    params: Params = list(values.values())
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = %s").format(sql.Identifier(name)) for name in checked_columns(relation, values, "body")
    )
    where = where_sql(relation, query.where, params)
    tail = returning_sql(relation, query) if returning else sql.SQL("")
    update = sql.SQL("UPDATE {} AS t SET {}{}{}").format(
        sql.Identifier(relation.schema, relation.name), assignments, where, tail
    )
    return Statement(wrap_returning(update, returning) if returning else count_wrap(update), params)


def delete_statement(relation: Relation, query: Query, returning: bool) -> Statement:
    require_filter(query, "DELETE")
    params: Params = []
    where = where_sql(relation, query.where, params)
    tail = returning_sql(relation, query) if returning else sql.SQL("")
    delete = sql.SQL("DELETE FROM {} AS t{}{}").format(sql.Identifier(relation.schema, relation.name), where, tail)
    return Statement(wrap_returning(delete, returning) if returning else count_wrap(delete), params)


def count_wrap(statement: sql.Composable) -> sql.Composed:
    return sql.SQL("WITH w AS ({} RETURNING 1) SELECT NULL::text, count(*) FROM w").format(statement)


def checked_columns(relation: Relation, names: Sequence[str], parameter: str) -> list[str]:
    for name in names:
        if name not in relation.by_name:
            raise unknown_column(relation, name, parameter)
    return list(names)


def copy_statement(target: sql.Composable, names: list[str], as_csv: bool) -> sql.Composed:
    cols = sql.SQL(", ").join(sql.Identifier(name) for name in names)
    options = sql.SQL(" (FORMAT csv)" if as_csv else "")
    return sql.SQL("COPY {} ({}) FROM STDIN{}").format(target, cols, options)


STAGING = sql.Identifier("db_connect_staging")


def staging_statement(relation: Relation, names: list[str]) -> sql.Composed:
    """A column-compatible temporary table without constraints, where COPY lands before an upsert."""
    cols = sql.SQL(", ").join(sql.Identifier(name) for name in names)
    return sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        STAGING, cols, sql.Identifier(relation.schema, relation.name)
    )


def merge_statement(
    relation: Relation, query: Query, names: list[str], conflict: str | None, returning: bool
) -> sql.Composed:
    """INSERT ... SELECT from the staging table, with ON CONFLICT for upserts (merge or ignore)."""
    cols = sql.SQL(", ").join(sql.Identifier(name) for name in names)
    insert = sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {}").format(
        sql.Identifier(relation.schema, relation.name), cols, cols, STAGING
    )
    if conflict is not None:
        keys = query.on_conflict or relation.primary_key
        if not keys:
            raise invalid(
                "on_conflict", f"{relation.name} has no primary key", hint="Name the columns: on_conflict=a,b"
            )
        target = sql.SQL(", ").join(sql.Identifier(k) for k in checked_columns(relation, keys, "on_conflict"))
        updates = [name for name in names if name not in keys]
        if conflict == "ignore" or not updates:
            insert += sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(target)
        else:
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n)) for n in updates
            )
            insert += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(target, assignments)
    tail = returning_sql(relation, query) if returning else sql.SQL(" RETURNING 1")
    return wrap_returning(insert + tail, returning)
