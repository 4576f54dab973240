"""Stage 2 of a request: the parsed query resolved against the schema cache into a plain value, before SQL.

As PostgREST's Plan.hs: every name is found here (columns, embedded resources through their foreign
keys, a function and its arguments), so the SQL builders only translate a plan and tests can look at one.
A bad name is a 400 naming the parameter; an embedding that several relationships fit is PostgREST's 300.
The response's media type and the transaction's mode are decided here too (plan_request, plan_call).

A read's plan is made once per query shape and kept with its SQL (templates.py): planning every request
would cost a twentieth of a small read's CPU, and requests of one shape have one plan.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers

from db_connect.catalog import Catalog, Function, Relation, Relationship
from db_connect.errors import ApiError
from db_connect.query_params import (
    STAR,
    Embed,
    Field,
    Group,
    OrderTerm,
    Query,
    SelectItem,
    SubQuery,
    invalid,
)
from db_connect.routes import Target

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
OBJECT_TYPE = "application/vnd.pgrst.object+json"  # one row, as an object: single()
ARRAY_TYPE = "application/vnd.pgrst.array+json"
ACCEPTED = (JSON_TYPE, CSV_TYPE, OBJECT_TYPE, ARRAY_TYPE, "*/*", "application/*")


@dataclass(frozen=True)
class Plan:
    """A request as decided before any SQL: what it names, how it is answered, in which transaction mode.

    What it reads or calls is planned next, from the query string (plan_query) or the arguments (plan_call).
    """

    target: Target
    media_type: str  # JSON_TYPE, CSV_TYPE or OBJECT_TYPE
    strip_nulls: bool
    read_only: bool  # for a call, plan_call decides from the function's volatility


def plan_request(target: Target, method: str, headers: Headers) -> Plan:
    """Written rows are answered as JSON (one object with single()), whatever else Accept allows."""
    media, stripped = negotiate(headers)
    reading = method in ("GET", "HEAD")
    if not reading and target.function is None and media == CSV_TYPE:
        media = JSON_TYPE
    return Plan(target, media, stripped, reading)


@dataclass(frozen=True)
class Output:
    """A value of each row: a column, or a JSON path into one, under its name in the response."""

    name: str
    column: str  # as the client wrote it, e.g. data->a->>b; statements.column() splits the path
    cast: str | None = None  # checked by the parser: letters, digits, underscores, maybe []


@dataclass(frozen=True)
class RelatedOrder:
    """`order=parent(name).desc`: rows ordered by a column of a to-one embedded resource."""

    relationship: Relationship
    relation: Relation
    term: OrderTerm


@dataclass(frozen=True)
class ReadPlan:
    relation: Relation
    outputs: tuple["Output | EmbedPlan", ...]
    where: Group
    order: tuple[OrderTerm | RelatedOrder, ...] = ()
    limit: object = None  # an int, or a Slot of templates.py; None: no limit
    offset: object = 0

    @property
    def embeds(self) -> tuple["EmbedPlan", ...]:
        return tuple(o for o in self.outputs if isinstance(o, EmbedPlan))


@dataclass(frozen=True)
class EmbedPlan:
    """A related resource in each row: an object (to-one) or an array (to-many), from one lateral subquery."""

    name: str
    relationship: Relationship
    read: ReadPlan
    inner: bool  # !inner: only rows that have a related row

    @property
    def to_one(self) -> bool:
        return self.relationship.cardinality in ("many-to-one", "one-to-one")


@dataclass(frozen=True)
class Call:
    """An RPC: the function (the one overload the argument names fit) and its arguments, in its order."""

    function: Function
    arguments: tuple[tuple[str, str, object], ...]  # (name, type, value)
    read: ReadPlan | None  # for a function returning rows: select, filters, order and paging on them
    read_only: bool  # a STABLE or IMMUTABLE function runs read-only, whatever the method


def unknown_column(relation: Relation, name: str, parameter: str) -> ApiError:
    listed = ", ".join(column.name for column in relation.columns[:20])
    return invalid(parameter, f"{relation.schema}.{relation.name} has no column '{name}'", hint=f"Columns: {listed}")


def base_column(name: str) -> str:
    """The column a JSON path starts from: data->a->>b → data."""
    return name.split("->", 1)[0]


def output_name(field: Field) -> str:
    """PostgREST's name for a selected value: its alias, or the last key of a JSON path, or the column."""
    if field.alias:
        return field.alias
    if "->" in field.column:
        return field.column.rsplit("->", 1)[1].lstrip(">")
    return field.column


def check_column(relation: Relation, name: str, parameter: str) -> None:
    if base_column(name) not in relation.by_name:
        raise unknown_column(relation, base_column(name), parameter)


def check_where(relation: Relation, where: Group, parameter: str) -> None:
    for item in where.items:
        if isinstance(item, Group):
            check_where(relation, item, parameter)
        else:
            check_column(relation, item.column, parameter or item.column)


def ambiguous(source: Relation, name: str, found: Sequence[Relationship]) -> ApiError:
    """PostgREST's PGRST201: the client must say which foreign key it means."""
    details = [
        {
            "cardinality": r.cardinality,
            "embedding": f"{source.name} with {r.target[1]}",
            "relationship": f"{r.constraint} using {r.source[1]} and {r.target[1]}",
        }
        for r in found
    ]
    options = ", ".join(f"'{name}!{r.constraint}'" for r in found)
    return ApiError(
        300,
        "PGRST201",
        f"Could not embed because more than one relationship was found for '{source.name}' and '{name}'",
        details=details,
        hint=f"Try changing '{name}' to one of the following: {options}. Find the desired relationship in "
        "the 'details' key.",
    )


def relationship(catalog: Catalog, source: Relation, embed: Embed) -> Relationship:
    """The one relationship an embed names: by target table name, narrowed by its hint."""
    key = (source.schema, source.name)
    found = [
        r
        for r in catalog.relationships(key)
        if embed.name == r.target[1] or (r.junction is None and embed.name == r.constraint)
    ]
    if not found and embed.hint is None:  # PostgREST also takes a foreign key column: parent_id(*)
        found = [r for r in catalog.relationships(key) if r.junction is None and embed.name in r.names()]
    if embed.hint is not None:
        found = [r for r in found if embed.hint in r.names() or embed.hint == r.target[1]]
    if not found:
        hint_text = f"!{embed.hint}" if embed.hint else ""
        raise ApiError(
            400,
            "PGRST200",
            f"Could not find a relationship between '{source.name}' and '{embed.name}{hint_text}' in the schema cache",
            details=f"query parameter 'select': no foreign key links {source.schema}.{source.name} and {embed.name}",
            hint="Embedding follows foreign keys between the tables and views of the exposed schemas",
        )
    direct = [r for r in found if r.junction is None]
    if len(found) > 1 and len(direct) == 1 and embed.hint is None:
        return direct[0]  # a direct foreign key wins over a junction that also links the two, as in PostgREST
    if len(found) > 1:
        raise ambiguous(source, embed.name, found)
    return found[0]


def plan_read(
    catalog: Catalog,
    relation: Relation,
    query: Query,
    path: tuple[str, ...] = (),
    select: Sequence[SelectItem] | None = None,
) -> ReadPlan:
    """Resolve select, filters and order of `relation` (top level when path is empty) and of its embeds."""
    items = (query.select or (STAR,)) if not path else (select or (STAR,))
    outputs: list[Output | EmbedPlan] = []
    for item in items:
        if isinstance(item, Embed):
            found = relationship(catalog, relation, item)
            target = catalog.lookup(*found.target)
            if target is None:
                raise invalid("select", f"'{item.name}' is not an exposed table or view")
            read = plan_read(catalog, target, query, (*path, item.key), item.select)
            outputs.append(EmbedPlan(item.key, found, read, item.inner))
        elif item.column == "*":
            outputs.extend(Output(c.name, c.name) for c in relation.columns)
        else:
            check_column(relation, item.column, "select")
            outputs.append(Output(output_name(item), item.column, item.cast))
    keys = [o.name for o in outputs if isinstance(o, EmbedPlan)]
    if len(set(keys)) != len(keys):
        raise invalid("select", "the same resource is embedded twice under one name", hint="Alias one: kids:child(*)")
    sub: SubQuery = SubQuery(query.where, query.order, query.limit, query.offset) if not path else query.sub(path)
    check_where(relation, sub.where, ".".join(path))  # top level: each filter is named by its own key
    embeds = {o.name: o for o in outputs if isinstance(o, EmbedPlan)}
    order: list[OrderTerm | RelatedOrder] = []
    for term in sub.order:
        name, paren, inner = term.column.partition("(")
        if paren:
            embedded = embeds.get(name)
            if embedded is None or not embedded.to_one:
                raise invalid("order", f"'{name}' is not a to-one embedded resource of this request")
            column = inner.removesuffix(")")
            check_column(embedded.read.relation, column, "order")
            related = OrderTerm(column, term.descending, term.nulls)
            order.append(RelatedOrder(embedded.relationship, embedded.read.relation, related))
        else:
            check_column(relation, term.column, "order")
            order.append(term)
    return ReadPlan(relation, tuple(outputs), sub.where, tuple(order), sub.limit, sub.offset)


def unused_embedded_parameters(query: Query, plan: ReadPlan) -> None:
    """`child.col=eq.1` for a child the select does not embed would be silently ignored: refuse it."""
    known: set[tuple[str, ...]] = set()

    def walk(read: ReadPlan, path: tuple[str, ...]) -> None:
        for embed in read.embeds:
            known.add((*path, embed.name))
            walk(embed.read, (*path, embed.name))

    walk(plan, ())
    for path, _ in query.embedded:
        if path not in known:
            raise invalid(
                ".".join(path), f"'{'.'.join(path)}' is not embedded in select", hint="e.g. select=*,child(*)"
            )


def plan_query(catalog: Catalog, relation: Relation, query: Query) -> ReadPlan:
    plan = plan_read(catalog, relation, query)
    unused_embedded_parameters(query, plan)
    return plan


def function_not_found(schema: str, name: str, given: Sequence[str], overloads: Sequence[Function]) -> ApiError:
    """PostgREST's PGRST202, naming the arguments the function does not take."""
    signature = f"{schema}.{name}({', '.join(sorted(given))})"
    hint = None
    if overloads:
        known = {arg for f in overloads for arg, _ in f.arguments}
        unknown = sorted(set(given) - known)
        takes = " or ".join(f"({', '.join(a for a, _ in f.arguments)})" for f in overloads)
        hint = f"Unknown argument {', '.join(repr(u) for u in unknown)}; " if unknown else ""
        hint += f"{schema}.{name} takes {takes}"
    return ApiError(
        404,
        "PGRST202",
        f"Could not find the function {signature} in the schema cache",
        details=f"Searched for the function {signature} with parameters named {', '.join(sorted(given)) or 'none'}",
        hint=hint or "GET /openapi.json lists the functions you can call",
    )


def plan_call(
    catalog: Catalog, schema: str, name: str, arguments: dict[str, object], query: Query, method: str
) -> Call:
    """The overload whose arguments are exactly fitted by the given names (defaults may be left out)."""
    overloads = catalog.functions(schema, name)
    given = set(arguments)
    fitting = [f for f in overloads if set(f.required) <= given <= {arg for arg, _ in f.arguments}]
    if len(fitting) != 1:
        if len(fitting) > 1:
            raise ApiError(
                300,
                "PGRST203",
                f"Could not choose the best candidate function between several overloads of {schema}.{name}",
                hint="Name the arguments so that only one overload fits",
            )
        raise function_not_found(schema, name, list(given), overloads)
    function = fitting[0]
    if method in ("GET", "HEAD") and function.volatility == "v":
        raise ApiError(
            405,
            "PGRST101",
            f"{schema}.{name} is VOLATILE: call it with POST",
            hint="Only STABLE and IMMUTABLE functions can be called with GET",
            headers={"Allow": "POST"},
        )
    values = tuple((arg, type_, arguments[arg]) for arg, type_ in function.arguments if arg in given)
    read = plan_query(catalog, function.result, query) if function.result is not None else None
    if read is None and (query.select or query.where.items or query.order):
        raise invalid("select", f"{schema}.{name} returns {function.return_type}, not rows to select or filter")
    if query.cursor is not None:
        raise invalid("cursor", "keyset pages are for tables and views", hint="Use limit and offset")
    return Call(function, values, read, function.volatility != "v")


def negotiate(headers: Headers) -> tuple[str, bool]:
    """The response's media type (JSON array, CSV or one object) and whether nulls are stripped; else 406."""
    accept = headers.get("accept", "")
    if not accept:
        return JSON_TYPE, False
    for part in accept.split(","):
        media, *parameters = (item.strip().lower() for item in part.split(";"))
        if media in ACCEPTED:
            stripped = "nulls=stripped" in parameters and media in (OBJECT_TYPE, ARRAY_TYPE)
            kind = media if media in (CSV_TYPE, OBJECT_TYPE) else JSON_TYPE
            return kind, stripped
    raise ApiError(
        406,
        "PGRST107",
        f"None of these media types are available: {accept}",
        hint=f"Accept one of {', '.join(ACCEPTED[:4])}",
    )
