"""The one data query: a page of a relation, rendered to JSON by Postgres itself.

Postgres's own JSON keeps numeric precision exact and writes timestamps in ISO 8601, uuid and bytea as
text, json/jsonb and arrays as JSON; no value makes a round trip through Python types.
"""

from psycopg import sql

from db_connect.catalog import Relation


def page_query(relation: Relation) -> sql.Composed:
    """SQL for one page (params: limit, offset), ordered by the primary key so pages never overlap.

    Relations without a primary key (views) come in the order Postgres returns them.
    """
    target = sql.Identifier(relation.schema, relation.name)
    if not relation.primary_key:
        return sql.SQL(
            "SELECT coalesce(json_agg(page.*), '[]')::text FROM (SELECT * FROM {} LIMIT %s OFFSET %s) AS page"
        ).format(target)
    inner_order = sql.SQL(", ").join(sql.Identifier(column) for column in relation.primary_key)
    outer_order = sql.SQL(", ").join(sql.Identifier("page", column) for column in relation.primary_key)
    return sql.SQL(
        "SELECT coalesce(json_agg(page.* ORDER BY {}), '[]')::text"
        " FROM (SELECT * FROM {} ORDER BY {} LIMIT %s OFFSET %s) AS page"
    ).format(outer_order, target, inner_order)
