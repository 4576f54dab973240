"""Stage 1 of a request: the query string parsed into a plain description, PostgREST's syntax.

    ?select=a,b  &a=gte.5  &b=not.in.(x,"y,z")  &or=(a.lt.0,and(b.is.null,c.like.*kw*))
    &order=a.desc.nullslast,b  &limit=100&offset=0  (or &cursor= for keyset pages)

Nothing here knows SQL or the schema: names are checked against the schema cache by the planner.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Literal

from db_connect.errors import ApiError

COMPARISONS = ("eq", "neq", "gt", "gte", "lt", "lte")
OPERATORS = (*COMPARISONS, "like", "ilike", "in", "is")
IS_VALUES = ("null", "true", "false", "unknown")
RESERVED = frozenset({"select", "order", "limit", "offset", "cursor", "on_conflict", "or", "and", "not.or", "not.and"})
READ_PARAMETERS = frozenset({"order", "limit", "offset", "cursor"})
MAX_DEPTH = 8
MAX_CONDITIONS = 200
MAX_OFFSET = 2**63 - 1  # Postgres's OFFSET is a bigint


@dataclass(frozen=True)
class Condition:
    column: str
    operator: str
    value: str  # for `in`, the list as a Postgres array literal: one value, whatever the list's length
    negated: bool = False


@dataclass(frozen=True)
class Group:
    conjunction: Literal["and", "or"]
    items: tuple["Condition | Group", ...]
    negated: bool = False


@dataclass(frozen=True)
class OrderTerm:
    column: str
    descending: bool = False
    nulls: Literal["first", "last"] | None = None


@dataclass(frozen=True)
class Query:
    """Everything a read, update or delete needs from the query string."""

    select: tuple[str, ...] | None
    where: Group
    order: tuple[OrderTerm, ...]
    limit: int
    offset: int
    cursor: tuple[str, ...] | None  # the decoded Next-Cursor values; () for the first keyset page
    on_conflict: tuple[str, ...] | None


def invalid(parameter: str, message: str, hint: str | None = None) -> ApiError:
    return ApiError(
        400,
        "invalid_parameter",
        f"Invalid parameter '{parameter}': {message}",
        details=f"query parameter '{parameter}': {message}",
        hint=hint,
    )


def split_top_level(text: str, parameter: str) -> list[str]:
    """Split on commas outside parentheses and double quotes; quotes stay for unquote()."""
    parts: list[str] = []
    depth, quoted, escaped, start = 0, False, False, 0
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth < 0:
                raise invalid(parameter, "unbalanced parentheses")
        elif not quoted and depth == 0 and char == ",":
            parts.append(text[start:index])
            start = index + 1
    if depth or quoted:
        raise invalid(parameter, "unbalanced parentheses or quotes")
    parts.append(text[start:])
    return parts


def unquote(value: str) -> str:
    """`"a,b"` is the value a,b; backslash escapes a quote or a backslash inside."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out, escaped = [], False
        for char in value[1:-1]:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def parse_list(text: str, parameter: str) -> tuple[str, ...]:
    if not (text.startswith("(") and text.endswith(")")):
        raise invalid(parameter, "'in' takes a parenthesised list", hint="e.g. id=in.(1,2,3)")
    inner = text[1:-1]
    if not inner:
        return ()
    return tuple(unquote(part.strip()) for part in split_top_level(inner, parameter))


def array_literal(values: tuple[str, ...]) -> str:
    """`{"a","b\\"c"}`: every element quoted, so each stays one string whatever it holds (never SQL NULL)."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


def parse_condition(column: str, text: str, parameter: str, *, in_group: bool = False) -> Condition:
    """`[not.]op.value` for one column."""
    negated = text.startswith("not.")
    if negated:
        text = text[4:]
    operator, dot, value = text.partition(".")
    if not dot or operator not in OPERATORS:
        raise invalid(
            parameter,
            f"'{text}' is not operator.value",
            hint=f"Operators: {', '.join(OPERATORS)}; negate with not., e.g. not.eq.5",
        )
    if operator == "in":
        return Condition(column, operator, array_literal(parse_list(value, parameter)), negated)
    if operator == "is":
        if value.lower() not in IS_VALUES:
            raise invalid(parameter, f"'is' takes one of {', '.join(IS_VALUES)}")
        return Condition(column, operator, value.lower(), negated)
    value = unquote(value) if in_group else value
    if operator in ("like", "ilike"):
        value = value.replace("*", "%")  # PostgREST's URL-safe wildcard
    return Condition(column, operator, value, negated)


def parse_group(key: str, text: str, parameter: str, depth: int = 0) -> Group:
    """`or=(a.eq.1,and(b.gt.2,c.is.null))`; key is and, or, not.and or not.or."""
    if depth > MAX_DEPTH:
        raise invalid(parameter, f"logic groups nest deeper than {MAX_DEPTH}")
    negated = key.startswith("not.")
    conjunction = key.removeprefix("not.")
    if not (text.startswith("(") and text.endswith(")")) or len(text) < 3:
        raise invalid(parameter, f"'{key}' takes a parenthesised list of conditions", hint="e.g. or=(a.eq.1,b.gt.2)")
    items: list[Condition | Group] = []
    for part in split_top_level(text[1:-1], parameter):
        part = part.strip()
        head, paren, rest = part.partition("(")
        if paren and head in ("and", "or", "not.and", "not.or"):
            items.append(parse_group(head, "(" + rest, parameter, depth + 1))
            continue
        column, dot, condition = part.partition(".")
        if not dot or not column:
            raise invalid(parameter, f"'{part}' is not column.operator.value")
        items.append(parse_condition(column, condition, parameter, in_group=True))
    return Group("or" if conjunction == "or" else "and", tuple(items), negated)


def count_conditions(group: Group) -> int:
    return sum(count_conditions(item) if isinstance(item, Group) else 1 for item in group.items)


def parse_order(text: str) -> tuple[OrderTerm, ...]:
    terms = []
    for part in split_top_level(text, "order"):
        column, *modifiers = part.strip().split(".")
        descending, nulls = False, None
        for modifier in modifiers:
            if modifier in ("asc", "desc"):
                descending = modifier == "desc"
            elif modifier in ("nullsfirst", "nullslast"):
                nulls = "first" if modifier == "nullsfirst" else "last"
            else:
                raise invalid("order", f"unknown modifier '{modifier}'", hint="e.g. order=a.desc.nullslast,b.asc")
        if not column:
            raise invalid("order", "an empty column name")
        terms.append(OrderTerm(column, descending, nulls))
    return tuple(terms)


def parse_names(parameter: str, text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in split_top_level(text, parameter)))
    if not all(names):
        raise invalid(parameter, "an empty column name")
    return names


def parse_int(parameter: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise invalid(parameter, "not an integer") from None
    if not low <= value <= high:
        raise invalid(parameter, f"must be between {low} and {high}")
    return value


def encode_cursor(values: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[str, ...]:
    """The values of a Next-Cursor header; whether they fit the ordering is the planner's check."""
    if not token:
        return ()
    try:
        values = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise invalid("cursor", "not a cursor returned by this API") from None
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise invalid("cursor", "not a cursor returned by this API", hint="Start again with cursor= (empty)")
    return tuple(values)


def refuse_read_parameters(params: list[tuple[str, str]], method: str) -> None:
    """A write changes every row its filters match: paging or ordering it would be silently ignored."""
    for key, _ in params:
        if key in READ_PARAMETERS or (key == "on_conflict" and method != "POST"):
            raise invalid(key, f"does not apply to {method}", hint="Narrow the filters to the rows to change")


def parse_query(params: list[tuple[str, str]], default_limit: int, max_limit: int) -> Query:
    """Parse the whole query string; repeated column filters are ANDed."""
    single: dict[str, str] = {}
    conditions: list[Condition | Group] = []
    for key, value in params:
        if key in ("or", "and", "not.or", "not.and"):
            conditions.append(parse_group(key, value, key))
        elif key in RESERVED:
            if key in single:
                raise invalid(key, "given more than once")
            single[key] = value
        else:
            conditions.append(parse_condition(key, value, key))
    where = Group("and", tuple(conditions))
    if count_conditions(where) > MAX_CONDITIONS:
        raise invalid("filters", f"more than {MAX_CONDITIONS} conditions")
    select = single.get("select")
    on_conflict = single.get("on_conflict")
    offset = parse_int("offset", single["offset"], 0, MAX_OFFSET) if "offset" in single else 0
    cursor = decode_cursor(single["cursor"]) if "cursor" in single else None
    if cursor is not None and offset:
        raise invalid("cursor", "cannot be combined with offset")
    return Query(
        select=None if select in (None, "*") else parse_names("select", select),
        where=where,
        order=parse_order(single["order"]) if single.get("order") else (),
        limit=parse_int("limit", single["limit"], 1, max_limit) if "limit" in single else default_limit,
        offset=offset,
        cursor=cursor,
        on_conflict=parse_names("on_conflict", on_conflict) if on_conflict else None,
    )
