"""SQL composed once per query shape: requests that differ only in their values share one statement text.

Composing SQL from psycopg's sql objects was a quarter of the CPU of a small read. A query's shape is
the query with every bound value replaced by a Slot; the statement builders run on the shape (they pass
values through as parameters and never look at them) and the text they produce is kept on the relation,
so a schema reload starts afresh. A request then only fills the slots with its own values.
"""

from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from db_connect.catalog import Relation
from db_connect.query_params import Condition, Group, Query, SubQuery
from db_connect.statements import Statement

MAX_SHAPES = 256  # per relation: a client inventing new shapes only costs rebuilds


@dataclass(frozen=True)
class Slot:
    """Where the request's value number `index` goes."""

    index: int


@dataclass(frozen=True)
class Template:
    text: str
    params: tuple[object, ...]  # Slots, and constants a builder added itself (a count's cap)

    def bind(self, values: list[object]) -> Statement:
        return Statement(self.text, [values[p.index] if isinstance(p, Slot) else p for p in self.params])


def shape_of(query: Query) -> tuple[Query, list[object]]:
    """The query with its values replaced by Slots, and the values."""
    values: list[object] = []

    def slot(value: object) -> Slot:
        values.append(value)
        return Slot(len(values) - 1)

    def condition(cond: Condition) -> Condition:
        if cond.operator == "is":
            return cond  # null/true/false/unknown is SQL text, not a bound value
        return Condition(cond.column, cond.operator, slot(cond.value), cond.negated, cond.modifier)  # type: ignore[arg-type]

    def group(where: Group) -> Group:
        items = tuple(group(i) if isinstance(i, Group) else condition(i) for i in where.items)
        return Group(where.conjunction, items, where.negated)

    def sub(query: SubQuery) -> SubQuery:
        limit = None if query.limit is None else slot(query.limit)
        return replace(query, where=group(query.where), limit=limit, offset=slot(query.offset))  # type: ignore[arg-type]

    where = group(query.where)
    embedded = tuple((path, sub(query)) for path, query in query.embedded) if query.embedded else ()
    cursor = None if query.cursor is None else tuple(slot(v) for v in query.cursor)
    limit, offset = slot(query.limit), slot(query.offset)
    shape = Query(query.select, where, query.order, limit, offset, cursor, query.on_conflict, query.columns, embedded)  # type: ignore[arg-type]
    return shape, values


def statements(
    relation: Relation, query: Query, kind: Hashable, build: Callable[[Query], list[Statement]]
) -> list[Statement]:
    """build(shape)'s statements with this query's values; kind tells apart builders used on one relation."""
    shape, values = shape_of(query)
    key = (kind, shape)
    templates = relation.templates.get(key)
    if templates is None:
        if len(relation.templates) >= MAX_SHAPES:
            relation.templates.clear()
        templates = [Template(s.text(), tuple(s.params)) for s in build(shape)]
        relation.templates[key] = templates
    return [template.bind(values) for template in templates]
