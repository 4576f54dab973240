"""Stage 1 of a request: the query string parsed into a plain description, PostgREST's syntax.

    ?select=a,b,data->>k,parent(*),kids:child!fk_name!inner(c)  &a=gte.5  &b=not.in.(x,"y,z")
    &or=(a.lt.0,and(b.is.null,c.like.*kw*))  &order=a.desc.nullslast,b  &limit=100&offset=0  (or &cursor=)
    &child.c=eq.1  &child.order=c.desc  &child.limit=5   (on an embedded resource, by its alias or name)

Nothing here knows SQL or the schema: names are checked against the schema cache by the planner.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Literal

from db_connect.errors import ApiError

COMPARISONS = ("eq", "neq", "gt", "gte", "lt", "lte")
# containment and range operators of arrays, ranges and jsonb: @> <@ && << >> &< &> -|-
CONTAINMENT = ("cs", "cd", "ov", "sl", "sr", "nxr", "nxl", "adj")
FULL_TEXT = ("fts", "plfts", "phfts", "wfts")
OPERATORS = (*COMPARISONS, "like", "ilike", "match", "imatch", "in", "is", "isdistinct", *CONTAINMENT, *FULL_TEXT)
QUANTIFIABLE = (*COMPARISONS, "like", "ilike", "match", "imatch")  # op(any) / op(all) take a {list}
IS_VALUES = ("null", "true", "false", "unknown")
LOGIC = ("not.or", "not.and", "or", "and")
SINGLE = frozenset({"select", "order", "limit", "offset", "cursor", "on_conflict", "columns"})
RESERVED = SINGLE | frozenset(LOGIC)
READ_PARAMETERS = frozenset({"order", "limit", "offset", "cursor"})
EMBEDDED_PARAMETERS = ("order", "limit", "offset", *LOGIC)  # child.order=, child.limit=, child.or= ...
MAX_DEPTH = 8
CAST_TYPE = re.compile(r"[a-z_][a-z0-9_]*(\[\])?")  # the only text of a request that reaches SQL unquoted
MAX_CONDITIONS = 200
MAX_OFFSET = 2**63 - 1  # Postgres's OFFSET is a bigint


@dataclass(frozen=True)
class Condition:
    column: str  # a column, or a JSON path into one: data->a->>b
    operator: str
    value: str  # for `in`, the list as a Postgres array literal: one value, whatever the list's length
    negated: bool = False
    modifier: str | None = None  # any/all for a quantified comparison; a text-search configuration for fts


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
class Field:
    """A selected column, or a JSON path into one (`data->a->>b`), under an optional alias and cast."""

    column: str
    alias: str | None = None
    cast: str | None = None  # a type name of letters, digits and underscores, maybe an array: text, int8[]


@dataclass(frozen=True)
class Embed:
    """`alias:name!hint!inner(select)`: a related resource, found through a foreign key by the planner."""

    name: str
    select: tuple["Field | Embed", ...]
    alias: str | None = None
    hint: str | None = None
    inner: bool = False

    @property
    def key(self) -> str:
        """What the response and embedded parameters (`key.col=eq.1`) call it."""
        return self.alias or self.name


SelectItem = Field | Embed
STAR = Field("*")


@dataclass(frozen=True)
class SubQuery:
    """Filters, order and paging of one embedded resource, named by its path of embed keys."""

    where: Group
    order: tuple[OrderTerm, ...] = ()
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True)
class Query:
    """Everything a read, update or delete needs from the query string."""

    select: tuple[SelectItem, ...] | None  # None: every column, no embedding
    where: Group
    order: tuple[OrderTerm, ...]
    limit: int
    offset: int
    cursor: tuple[str, ...] | None  # the decoded Next-Cursor values; () for the first keyset page
    on_conflict: tuple[str, ...] | None
    columns: tuple[str, ...] | None = None  # the body's columns to insert (others: null or default)
    embedded: tuple[tuple[tuple[str, ...], SubQuery], ...] = ()

    def sub(self, path: tuple[str, ...]) -> SubQuery:
        return dict(self.embedded).get(path, SubQuery(Group("and", ())))


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
    operator, paren, modifier = operator.partition("(")
    modifier = modifier.removesuffix(")") if paren else None
    if not dot or operator not in OPERATORS:
        raise invalid(
            parameter,
            f"'{text}' is not operator.value",
            hint=f"Operators: {', '.join(OPERATORS)}; negate with not., e.g. not.eq.5",
        )
    if modifier is not None:
        return modified_condition(column, operator, modifier, value, negated, parameter)
    if operator == "in":
        return Condition(column, operator, array_literal(parse_list(value, parameter)), negated)
    if operator == "ov" and value.startswith("("):  # PostgREST's list form, as for in
        return Condition(column, operator, array_literal(parse_list(value, parameter)), negated)
    if operator == "is":
        if value.lower() not in IS_VALUES:
            raise invalid(parameter, f"'is' takes one of {', '.join(IS_VALUES)}")
        return Condition(column, operator, value.lower(), negated)
    value = unquote(value) if in_group else value
    if operator in ("like", "ilike"):
        value = value.replace("*", "%")  # PostgREST's URL-safe wildcard
    return Condition(column, operator, value, negated)


def modified_condition(
    column: str, operator: str, modifier: str, value: str, negated: bool, parameter: str
) -> Condition:
    """`like(any).{a*,b*}` compares with each of a list; `fts(english).word` names the configuration."""
    if operator in FULL_TEXT:
        if not modifier.replace("_", "").isalnum():
            raise invalid(parameter, f"'{modifier}' is not a text search configuration", hint="e.g. fts(english)")
        return Condition(column, operator, value, negated, modifier)
    if operator not in QUANTIFIABLE or modifier not in ("any", "all"):
        raise invalid(parameter, f"'{operator}({modifier})' is not an operator", hint="e.g. like(any).{a*,b*}")
    if not (value.startswith("{") and value.endswith("}")):
        raise invalid(parameter, f"'{operator}({modifier})' takes a list in braces", hint="e.g. like(any).{a*,b*}")
    items = parse_list("(" + value[1:-1] + ")", parameter)
    if operator in ("like", "ilike"):
        items = tuple(item.replace("*", "%") for item in items)
    return Condition(column, operator, array_literal(items), negated, modifier)


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


def parse_order(text: str, parameter: str = "order") -> tuple[OrderTerm, ...]:
    """`a.desc.nullslast,data->>k,parent(name).desc` (the last orders by a to-one embedded column)."""
    terms = []
    for part in split_top_level(text, parameter):
        column, *modifiers = part.strip().split(".")
        descending, nulls = False, None
        for modifier in modifiers:
            if modifier in ("asc", "desc"):
                descending = modifier == "desc"
            elif modifier in ("nullsfirst", "nullslast"):
                nulls = "first" if modifier == "nullsfirst" else "last"
            else:
                raise invalid(parameter, f"unknown modifier '{modifier}'", hint="e.g. order=a.desc.nullslast,b.asc")
        if not column:
            raise invalid(parameter, "an empty column name")
        terms.append(OrderTerm(column, descending, nulls))
    return tuple(terms)


def parse_names(parameter: str, text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(unquote(part.strip()) for part in split_top_level(text, parameter)))
    if not all(names):
        raise invalid(parameter, "an empty column name")
    return names


def parse_select(text: str, parameter: str = "select", depth: int = 0) -> tuple[SelectItem, ...]:
    """`*,a,b:data->>k,parent(*),kids:child!fk!inner(c,grand(*))`."""
    if depth > MAX_DEPTH:
        raise invalid(parameter, f"embedding nests deeper than {MAX_DEPTH}")
    items: list[SelectItem] = []
    for part in split_top_level(text, parameter):
        part = part.strip()
        if not part:
            raise invalid(parameter, "an empty column name")
        head, paren, rest = part.partition("(")
        alias, colon, name = head.partition(":")
        if not colon or name.startswith(":"):  # a cast (a::text) is not an alias
            alias, name = "", head
        if paren:
            if not rest.endswith(")"):
                raise invalid(parameter, f"'{part}' does not end with ')'")
            name, *marks = name.split("!")
            inner = "inner" in marks
            hints = [mark for mark in marks if mark not in ("inner", "left")]
            if len(hints) > 1 or not name:
                raise invalid(parameter, f"'{head}' is not name!hint!inner", hint="e.g. parent!parent_fk!inner(*)")
            nested = parse_select(rest[:-1], parameter, depth + 1) if rest[:-1].strip() else (STAR,)
            items.append(Embed(name, nested, alias or None, hints[0] if hints else None, inner))
        else:
            name, cast, type_ = name.partition("::")
            if cast and not CAST_TYPE.fullmatch(type_):
                raise invalid(parameter, f"'{type_}' is not a type name to cast to", hint="e.g. amount::text")
            items.append(Field(name, alias or None, type_ or None))
    return tuple(items)


def split_key(key: str) -> tuple[tuple[str, ...], str]:
    """`child.grand.col=` → (("child", "grand"), "col"); a JSON path keeps its own arrows: `data->a.b`."""
    if "." not in key:
        return (), key
    for suffix in (*EMBEDDED_PARAMETERS, *SINGLE):
        if key == suffix:
            return (), key
        if key.endswith("." + suffix) and suffix in EMBEDDED_PARAMETERS:
            head = key[: -len(suffix) - 1]
            if head != "not":
                return tuple(head.split(".")), suffix
    base = key.split("->", 1)[0]
    path, _, name = base.rpartition(".")
    return (tuple(path.split(".")) if path else ()), name + key[len(base) :]


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
        if key in READ_PARAMETERS or (key in ("on_conflict", "columns") and method != "POST"):
            raise invalid(key, f"does not apply to {method}", hint="Narrow the filters to the rows to change")


def parse_query(params: list[tuple[str, str]], default_limit: int, max_limit: int) -> Query:
    """Parse the whole query string; repeated column filters are ANDed."""
    single: dict[str, str] = {}
    conditions: dict[tuple[str, ...], list[Condition | Group]] = {(): []}
    paging: dict[tuple[str, ...], dict[str, str]] = {}
    for key, value in params:
        path, name = split_key(key)
        if name in LOGIC:
            conditions.setdefault(path, []).append(parse_group(name, value, key))
        elif path and name in EMBEDDED_PARAMETERS:
            if name in paging.setdefault(path, {}):
                raise invalid(key, "given more than once")
            paging[path][name] = value
        elif not path and name in SINGLE:
            if key in single:
                raise invalid(key, "given more than once")
            single[key] = value
        else:
            conditions.setdefault(path, []).append(parse_condition(name, value, key))
    where = Group("and", tuple(conditions.pop(())))
    if sum(count_conditions(Group("and", tuple(c))) for c in conditions.values()) + count_conditions(where) > (
        MAX_CONDITIONS
    ):
        raise invalid("filters", f"more than {MAX_CONDITIONS} conditions")
    embedded = not (paging or conditions) or {
        path: SubQuery(
            Group("and", tuple(conditions.get(path, ()))),
            parse_order(given["order"], ".".join((*path, "order"))) if given.get("order") else (),
            parse_int(".".join((*path, "limit")), given["limit"], 0, max_limit) if "limit" in given else None,
            parse_int(".".join((*path, "offset")), given["offset"], 0, MAX_OFFSET) if "offset" in given else 0,
        )
        for path, given in (paging | {p: paging.get(p, {}) for p in conditions}).items()
    }
    select = single.get("select")
    on_conflict = single.get("on_conflict")
    columns = single.get("columns")
    offset = parse_int("offset", single["offset"], 0, MAX_OFFSET) if "offset" in single else 0
    cursor = decode_cursor(single["cursor"]) if "cursor" in single else None
    if cursor is not None and offset:
        raise invalid("cursor", "cannot be combined with offset")
    return Query(
        select=None if select in (None, "*") else parse_select(select),
        where=where,
        order=parse_order(single["order"]) if single.get("order") else (),
        limit=parse_int("limit", single["limit"], 1, max_limit) if "limit" in single else default_limit,
        offset=offset,
        cursor=cursor,
        on_conflict=parse_names("on_conflict", on_conflict) if on_conflict else None,
        columns=parse_names("columns", columns) if columns else None,
        embedded=() if embedded is True else tuple(sorted(embedded.items())),
    )
