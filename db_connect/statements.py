"""Stage 3 of a request: SQL built from a plan (plan.py), or for writes from the parsed query and the cache.

Every identifier is looked up in the relation and quoted by psycopg; every value is a bound parameter
(sent untyped, so Postgres casts it to the column's type, and a bad value is a 400, not an injection).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from db_connect.catalog import Relation, Relationship
from db_connect.errors import ApiError
from db_connect.plan import EmbedPlan, Output, ReadPlan, RelatedOrder, unknown_column
from db_connect.query_params import Condition, Group, OrderTerm, Query, invalid

Params = list[object]
FromCall = tuple[sql.Composable, Params] | None  # a function call in place of the relation: its text and values
SQL_OPERATORS = {
    "eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
    "cs": "@>", "cd": "<@", "ov": "&&", "sl": "<<", "sr": ">>", "nxr": "&<", "nxl": "&>", "adj": "-|-",
}  # fmt: skip
TEXT_OPERATORS = {"like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*"}
FULL_TEXT_FUNCTIONS = {
    "fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery", "wfts": "websearch_to_tsquery",
}  # fmt: skip
JSON_STEP = re.compile(r"(->>|->)")


@dataclass(frozen=True)
class Statement:
    query: sql.Composable | str  # str: a text rendered once for many requests (templates.py)
    params: Params

    def text(self) -> str:
        return self.query if isinstance(self.query, str) else self.query.as_string()


def json_path(base: sql.Composable, path: str) -> sql.Composable:
    """`->a->>b->0`: each key a literal (an index when all digits), never SQL text from the request."""
    parts = JSON_STEP.split(path)[1:]  # ["->", "a", "->>", "b", ...]
    expr = base
    for arrow, key in zip(parts[::2], parts[1::2], strict=True):
        if not key:
            raise invalid("select", "an empty JSON key")
        literal = sql.Literal(int(key)) if key.lstrip("-").isdigit() else sql.Literal(key)
        expr = sql.SQL("{} " + arrow + " {}").format(expr, literal)
    return expr


def column(relation: Relation, name: str, parameter: str, alias: str = "t") -> sql.Composable:
    """A column of the relation (or a JSON path into one), qualified by its alias; unknown names are a 400."""
    base, arrow, _ = name.partition("->")
    if base not in relation.by_name:
        raise unknown_column(relation, base, parameter)
    target = sql.Identifier(alias, base)
    return json_path(target, name[len(base) :]) if arrow else target


def full_text(relation: Relation, cond: Condition, target: sql.Composable, params: Params) -> sql.Composable:
    """`fts(english).cat`: the column itself when it is a tsvector, else to_tsvector of its text."""
    config = [sql.SQL("{}::regconfig").format(sql.Literal(cond.modifier))] if cond.modifier else []
    is_vector = "->" not in cond.column and relation.by_name[cond.column].type == "tsvector"
    vector = target if is_vector else sql.SQL("to_tsvector({})").format(sql.SQL(", ").join([*config, target]))
    params.append(cond.value)
    query = sql.SQL("{}({})").format(
        sql.SQL(FULL_TEXT_FUNCTIONS[cond.operator]), sql.SQL(", ").join([*config, sql.SQL("%s")])
    )
    return sql.SQL("{} @@ {}").format(vector, query)


def condition_sql(relation: Relation, cond: Condition, params: Params, alias: str = "t") -> sql.Composable:
    target = column(relation, cond.column, cond.column, alias)
    quantifier = {"any": "ANY(%s)", "all": "ALL(%s)", None: "%s"}.get(cond.modifier, "%s")
    if cond.operator in SQL_OPERATORS:
        params.append(cond.value)
        clause = sql.SQL("{} " + SQL_OPERATORS[cond.operator] + " " + quantifier).format(target)
    elif cond.operator in TEXT_OPERATORS:
        params.append(cond.value)
        clause = sql.SQL("{}::text " + TEXT_OPERATORS[cond.operator] + " " + quantifier).format(target)
    elif cond.operator == "in":  # one array of any length: one statement text, however long the list
        params.append(cond.value)
        clause = sql.SQL("{} = ANY(%s)").format(target)
    elif cond.operator == "isdistinct":
        params.append(cond.value)
        clause = sql.SQL("{} IS DISTINCT FROM %s").format(target)
    elif cond.operator in FULL_TEXT_FUNCTIONS:
        clause = full_text(relation, cond, target, params)
    else:  # is: the value was checked by the parser against a fixed list
        clause = sql.SQL("{} IS " + str(cond.value).upper()).format(target)
    return sql.SQL("NOT ({})").format(clause) if cond.negated else clause


def group_sql(relation: Relation, group: Group, params: Params, alias: str = "t") -> sql.Composable:
    parts = [
        group_sql(relation, item, params, alias)
        if isinstance(item, Group)
        else condition_sql(relation, item, params, alias)
        for item in group.items
    ]
    joined = sql.SQL(" AND " if group.conjunction == "and" else " OR ").join(sql.SQL("({})").format(p) for p in parts)
    return sql.SQL("NOT ({})").format(joined) if group.negated else joined


def where_sql(
    relation: Relation, where: Group, params: Params, extra: Sequence[sql.Composable] = (), alias: str = "t"
) -> sql.Composable:
    parts = [group_sql(relation, where, params, alias)] if where.items else []
    parts += extra
    if not parts:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(sql.SQL("({})").format(p) for p in parts)


def effective_order(plan: ReadPlan) -> tuple[OrderTerm | RelatedOrder, ...]:
    """The client's order, completed by the primary key so pages are stable and never overlap."""
    named = {term.column for term in plan.order if isinstance(term, OrderTerm)}
    return plan.order + tuple(OrderTerm(name) for name in plan.relation.primary_key if name not in named)


class Aliases:
    """t, t1, t2 ...: one alias per relation in a statement, so embedded subqueries never mix up columns."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return f"t{self.count}"


def join_condition(relationship: Relationship, outer: str, inner: str, aliases: Aliases) -> sql.Composable:
    """How the embedded rows (alias inner) belong to the outer row (alias outer)."""
    if relationship.junction is None:
        return sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier(inner, target), sql.Identifier(outer, source))
            for source, target in relationship.join
        )
    junction, via = relationship.junction, aliases.next()
    to_source = (
        sql.SQL("{} = {}").format(sql.Identifier(via, a), sql.Identifier(outer, b))
        for a, b in zip(junction.to_source.columns, junction.to_source.referenced, strict=True)
    )
    to_target = (
        sql.SQL("{} = {}").format(sql.Identifier(via, a), sql.Identifier(inner, b))
        for a, b in zip(junction.to_target.columns, junction.to_target.referenced, strict=True)
    )
    return sql.SQL("EXISTS (SELECT 1 FROM {} AS {} WHERE {})").format(
        sql.Identifier(*junction.relation), sql.Identifier(via), sql.SQL(" AND ").join([*to_source, *to_target])
    )


def order_sql(
    plan: ReadPlan, order: Sequence[OrderTerm | RelatedOrder], alias: str, aliases: Aliases
) -> sql.Composable:
    if not order:
        return sql.SQL("")
    terms = []
    for term in order:
        if isinstance(term, RelatedOrder):  # a to-one row: at most one value, so a scalar subquery
            other = aliases.next()
            expr = sql.SQL("(SELECT {} FROM {} AS {} WHERE {})").format(
                column(term.relation, term.term.column, "order", other),
                sql.Identifier(term.relation.schema, term.relation.name),
                sql.Identifier(other),
                join_condition(term.relationship, alias, other, aliases),
            )
            term = term.term
        else:
            expr = column(plan.relation, term.column, "order", alias)
        terms.append(
            sql.SQL("{}{}{}").format(
                expr,
                sql.SQL(" DESC" if term.descending else " ASC"),
                sql.SQL({"first": " NULLS FIRST", "last": " NULLS LAST", None: ""}[term.nulls]),
            )
        )
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(terms)


def keyset_order(plan: ReadPlan) -> tuple[OrderTerm, ...]:
    """Keyset pages need a total order on columns of the relation that are never null."""
    relation = plan.relation
    if not relation.primary_key:
        raise invalid("cursor", f"{relation.name} has no primary key to page by", hint="Use limit and offset")
    order = effective_order(plan)
    terms: list[OrderTerm] = []
    for term in order:
        if isinstance(term, RelatedOrder) or "->" in term.column:
            raise invalid("cursor", "keyset pages order by plain columns only", hint="Use limit and offset")
        column(relation, term.column, "order")
        if not relation.by_name[term.column].not_null:
            raise invalid("cursor", f"column '{term.column}' may be null", hint="Order by NOT NULL columns only")
        terms.append(term)
    return tuple(terms)


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


@dataclass
class Source:
    """FROM ... with the laterals of the embeds, the select list, and what the embeds add to WHERE."""

    from_: sql.Composable
    outputs: sql.Composable
    inner: list[sql.Composable]


def relation_sql(relation: Relation) -> sql.Composable:
    return sql.Identifier(relation.schema, relation.name)


def source(plan: ReadPlan, alias: str, aliases: Aliases, params: Params, from_: sql.Composable) -> Source:
    """The relation as alias, one LEFT JOIN LATERAL per embed (to-one: an object, to-many: an array)."""
    joins: list[sql.Composable] = []
    outputs: list[sql.Composable] = []
    inner: list[sql.Composable] = []
    for output in plan.outputs:
        name = sql.Identifier(output.name)
        if isinstance(output, Output):
            value = column(plan.relation, output.column, "select", alias)
            if output.cast:
                value = sql.SQL("CAST({} AS " + output.cast + ")").format(value)
            outputs.append(sql.SQL("{} AS {}").format(value, name))
            continue
        lateral = aliases.next()
        joins.append(embed_sql(output, alias, aliases, params, lateral))
        body = sql.SQL("{}.body").format(sql.Identifier(lateral))
        outputs.append(
            sql.SQL("{} AS {}").format(body if output.to_one else sql.SQL("coalesce({}, '[]')").format(body), name)
        )
        if output.inner:
            inner.append(sql.SQL("{} IS NOT NULL").format(body))
    table = sql.SQL("{} AS {}").format(from_, sql.Identifier(alias))
    return Source(sql.SQL(" ").join([table, *joins]), sql.SQL(", ").join(outputs), inner)


def embed_sql(embed: EmbedPlan, outer: str, aliases: Aliases, params: Params, lateral: str) -> sql.Composable:
    """One embedded resource as a lateral subquery: its rows filtered, ordered and paged, as JSON."""
    read, alias = embed.read, aliases.next()
    found = source(read, alias, aliases, params, relation_sql(read.relation))
    joined = join_condition(embed.relationship, outer, alias, aliases)
    where = where_sql(read.relation, read.where, params, [joined, *found.inner], alias)
    order = order_sql(read, read.order, alias, aliases)
    paging = sql.SQL("")
    if read.limit is not None:
        params.append(read.limit)
        paging += sql.SQL(" LIMIT %s")
    if read.offset:
        params.append(read.offset)
        paging += sql.SQL(" OFFSET %s")
    aggregate = "row_to_json(x)" if embed.to_one else "json_agg(x)"
    return sql.SQL(
        "LEFT JOIN LATERAL (SELECT " + aggregate + " AS body FROM (SELECT {} FROM {}{}{}{}) AS x) AS {} ON TRUE"
    ).format(found.outputs, found.from_, where, order, paging, sql.Identifier(lateral))


def rows_sql(
    plan: ReadPlan,
    params: Params,
    row_expr: str,
    after: tuple[sql.Composable, Params] | None = None,
    from_: FromCall = None,
) -> tuple[sql.Composable, Aliases]:
    """SELECT row_expr FROM the relation as t with its embeds, the selected values as a named row s; filtered.

    Values are bound in the order they appear in the text: a call's arguments, the embeds', the filters'.
    """
    aliases = Aliases()
    if from_ is not None:
        params += from_[1]
    found = source(plan, "t", aliases, params, relation_sql(plan.relation) if from_ is None else from_[0])
    extra = [*found.inner, *([after[0]] if after else [])]
    where = where_sql(plan.relation, plan.where, params, extra)
    if after:
        params += after[1]
    text = sql.SQL("SELECT " + row_expr + " FROM {} CROSS JOIN LATERAL (SELECT {}) AS s{}").format(
        found.from_, found.outputs, where
    )
    return text, aliases


def page_statement(plan: ReadPlan, cursor: Sequence[object] | None = None, from_: FromCall = None) -> Statement:
    """One round trip: the page as a JSON array, its row count, and (keyset) the last row's cursor values."""
    params: Params = []
    after: tuple[sql.Composable, Params] | None = None
    order: Sequence[OrderTerm | RelatedOrder] = effective_order(plan)
    row_expr, last_key = "s AS doc", sql.SQL(", NULL::text")
    if cursor is not None:
        keyset = keyset_order(plan)
        keys = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier("t", t.column)) for t in keyset)
        if cursor and len(cursor) != len(keyset):
            raise invalid("cursor", "does not match this ordering", hint="Start again with cursor= (empty)")
        if cursor:
            after_params: Params = []
            after = (after_sql(plan.relation, keyset, cursor, after_params), after_params)
        order, row_expr = keyset, "s AS doc, json_build_array(" + keys.as_string() + ") AS k"
        last_key = sql.SQL(", (array_agg(p.k))[count(*)]::text")
    inner, aliases = rows_sql(plan, params, row_expr, after, from_)
    ordered = order_sql(plan, order, "t", aliases)
    return Statement(
        sql.SQL("SELECT coalesce(json_agg(p.doc), '[]')::text, count(*){} FROM ({}{} LIMIT %s OFFSET %s) AS p").format(
            last_key, inner, ordered
        ),
        [*params, plan.limit, plan.offset],
    )


def stream_statement(plan: ReadPlan, as_csv: bool, from_: FromCall = None) -> tuple[Statement, list[str]]:
    """Row by row, for responses streamed as they are read: JSON text per row, or each value as text for CSV."""
    params: Params = []
    names = [output.name for output in plan.outputs]
    if as_csv:
        row = ", ".join(f"s.{sql.Identifier(name).as_string()}::text" for name in names)
        source_text, aliases = rows_sql(plan, params, row or "NULL", None, from_)
    else:
        source_text, aliases = rows_sql(plan, params, "row_to_json(s)::text", None, from_)
    order = order_sql(plan, effective_order(plan), "t", aliases)
    return Statement(
        sql.SQL("{}{} LIMIT %s OFFSET %s").format(source_text, order), [*params, plan.limit, plan.offset]
    ), names


def count_source(plan: ReadPlan, params: Params, from_: FromCall) -> sql.Composable:
    """The rows a read matches, without its select list: only embeds marked !inner change which rows."""
    counted = ReadPlan(plan.relation, tuple(e for e in plan.embeds if e.inner), plan.where)
    text, _ = rows_sql(counted, params, "1", None, from_)
    return text


def count_statement(plan: ReadPlan, cap: int | None = None, from_: FromCall = None) -> Statement:
    """The exact number of matching rows; with a cap, counting stops after cap + 1 rows."""
    params: Params = []
    rows = count_source(plan, params, from_)
    if cap is None:
        return Statement(sql.SQL("SELECT count(*) FROM ({}) AS c").format(rows), params)
    return Statement(sql.SQL("SELECT count(*) FROM ({} LIMIT %s) AS c").format(rows), [*params, cap + 1])


def planned_count_statement(plan: ReadPlan, from_: FromCall = None) -> Statement:
    """The planner's row estimate: instant on any table, as good as its statistics."""
    params: Params = []
    return Statement(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(count_source(plan, params, from_)), params)


WRITTEN = sql.SQL("w")  # the rows a write returned, as a CTE the returned representation selects from


def wrap_returning(statement: sql.Composable, returned: ReadPlan | None, params: Params) -> sql.Composed:
    """Written rows as a JSON array (or NULL) and how many there were, in one row.

    The returned representation is planned as a read (select, aliases, casts, embedded resources) over the
    written rows, so `insert(...).select('*,parent(*)')` is one statement too.
    """
    if returned is None:
        return sql.SQL("WITH w AS ({} RETURNING 1) SELECT NULL::text, count(*) FROM w").format(statement)
    rows, _ = rows_sql(returned, params, "s AS doc", None, (WRITTEN, []))
    return sql.SQL(
        "WITH w AS ({} RETURNING t.*) SELECT coalesce(json_agg(p.doc), '[]')::text, count(*) FROM ({}) AS p"
    ).format(statement, rows)


def require_filter(query: Query, method: str) -> None:
    if not query.where.items:
        raise ApiError(
            400,
            "filter_required",
            f"{method} needs at least one filter",
            hint="Add a filter such as ?id=eq.1; to touch every row, say so with e.g. ?id=not.is.null",
        )


def update_statement(
    relation: Relation, query: Query, values: dict[str, str | None], returned: ReadPlan | None
) -> Statement:
    require_filter(query, "PATCH")
    if not values:
        raise ApiError(400, "invalid_body", "The body names no column to update", hint='e.g. {"status": "done"}')
    params: Params = list(values.values())
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = %s").format(sql.Identifier(name)) for name in checked_columns(relation, values, "body")
    )
    where = where_sql(relation, query.where, params)
    update = sql.SQL("UPDATE {} AS t SET {}{}").format(
        sql.Identifier(relation.schema, relation.name), assignments, where
    )
    return Statement(wrap_returning(update, returned, params), params)


def delete_statement(relation: Relation, query: Query, returned: ReadPlan | None) -> Statement:
    require_filter(query, "DELETE")
    params: Params = []
    where = where_sql(relation, query.where, params)
    delete = sql.SQL("DELETE FROM {} AS t{}").format(sql.Identifier(relation.schema, relation.name), where)
    return Statement(wrap_returning(delete, returned, params), params)


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


MISSING = "db_connect_missing"  # a staged row's columns its JSON object lacked (Prefer: missing=default)


def staging_statement(relation: Relation, names: list[str], missing: bool = False) -> sql.Composed:
    """A column-compatible temporary table without constraints, where COPY lands before an upsert."""
    cols = sql.SQL(", ").join(
        [*(sql.Identifier(name) for name in names), *([sql.SQL("NULL::text[] AS " + MISSING)] if missing else [])]
    )
    return sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        STAGING, cols, sql.Identifier(relation.schema, relation.name)
    )


def staged_value(relation: Relation, name: str, missing: bool) -> sql.Composable:
    """A staged column, or its default (Postgres's own expression) where the row's object lacked it."""
    if not missing:
        return sql.Identifier(name)
    default = relation.by_name[name].default
    return sql.SQL("CASE WHEN {} = ANY(" + MISSING + ") THEN {} ELSE {} END").format(
        sql.Literal(name), sql.SQL(default or "NULL"), sql.Identifier(name)
    )


def merge_statement(
    relation: Relation,
    query: Query,
    names: list[str],
    conflict: str | None,
    returned: ReadPlan | None,
    missing: bool = False,
) -> Statement:
    """INSERT ... SELECT from the staging table, with ON CONFLICT for upserts (merge or ignore)."""
    cols = sql.SQL(", ").join(sql.Identifier(name) for name in names)
    values = sql.SQL(", ").join(staged_value(relation, name, missing) for name in names)
    insert = sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {}").format(
        sql.Identifier(relation.schema, relation.name), cols, values, STAGING
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
    params: Params = []
    return Statement(wrap_returning(insert, returned, params), params)
