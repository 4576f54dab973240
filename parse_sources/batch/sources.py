"""Sources: CSV and JSON files (a path or an HTTP URL) and paginated HTTP JSON APIs with a cursor.

Every source yields the same thing, an `Extract`: the column names as received and rows of text, so the
loader has one path into `raw` whatever the format. Values stay text until `curated` types them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

HTTP_TIMEOUT_S = 30
CHUNK = 1 << 20


@dataclass(frozen=True)
class Rejected:
    """A record the source could not turn into a row; it is quarantined, never dropped."""

    record_number: int
    record: Any
    reason: str


@dataclass(frozen=True)
class CsvBytes:
    """A CSV file that COPY may read as is, skipping the client-side parse (the fast path)."""

    path: Path
    delimiter: str
    encoding: str


@dataclass
class Extract:
    """One batch as received: rows of text (None = NULL); a row of the wrong length is quarantined."""

    columns: list[str]
    rows: Iterable[Sequence[str | None]]
    digest: str  # of the content, so a batch loaded again with the same content is recognised
    location: str  # recorded with every row as its source
    rejected: list[Rejected] = field(default_factory=list)
    cursor: str | None = None  # incremental state after this batch; None: the source has none
    file: CsvBytes | None = None  # the same rows as a CSV file, when there is one


class Source(Protocol):
    @property
    def location(self) -> str: ...

    def extract(self, cursor: str | None) -> contextlib.AbstractContextManager[Extract]: ...


def is_url(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme in ("http", "https")


def _get(url: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"Accept": "application/json, text/csv, */*"})


@contextlib.contextmanager
def local_copy(location: str) -> Iterator[tuple[Path, str]]:
    """A local file for `location` (downloaded when it is a URL) and the sha256 of its bytes."""
    digest = hashlib.sha256()
    if not is_url(location):
        path = Path(location)
        with path.open("rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
        yield path, digest.hexdigest()
        return
    with tempfile.NamedTemporaryFile(prefix="parse_sources-") as temp:
        with urllib.request.urlopen(_get(location), timeout=HTTP_TIMEOUT_S) as response:
            while block := response.read(CHUNK):
                digest.update(block)
                temp.write(block)
        temp.flush()
        yield Path(temp.name), digest.hexdigest()


@dataclass(frozen=True)
class CsvFile:
    """A CSV file with a header row; an empty field is NULL."""

    location: str
    delimiter: str = ","
    encoding: str = "utf-8"

    @contextlib.contextmanager
    def extract(self, cursor: str | None = None) -> Iterator[Extract]:
        with local_copy(self.location) as (path, digest), path.open(newline="", encoding=self.encoding) as handle:
            reader = csv.reader(handle, delimiter=self.delimiter)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{self.location} is empty: a CSV source needs a header row")
            file = CsvBytes(path, self.delimiter, self.encoding)
            yield Extract(columns=header, rows=reader, digest=digest, location=self.location, file=file)


def text_of(value: Any) -> str | None:
    """JSON value → the text `raw` keeps: JSON literals for booleans and numbers, JSON for nested values."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def tabulate(records: Iterable[Any], first_number: int = 1) -> tuple[list[str], list[list[str | None]], list[Rejected]]:
    """Records → (columns in order of first appearance, rows, rejected); a non-object is rejected."""
    objects: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    columns: dict[str, None] = {}
    for number, record in enumerate(records, start=first_number):
        if not isinstance(record, dict):
            rejected.append(Rejected(number, record, f"record is a JSON {type(record).__name__}, not an object"))
            continue
        objects.append(record)
        columns.update(dict.fromkeys(record))
    names = list(columns)
    return names, [[text_of(obj.get(name)) for name in names] for obj in objects], rejected


def _json_records(text: str, location: str) -> list[Any]:
    """A JSON array, or newline-delimited JSON (one record per line)."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(stripped)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                records.append(_Unparsable(line, f"line {number} of {location} is not JSON: {exc.msg}"))
    return records


@dataclass(frozen=True)
class _Unparsable:
    line: str
    reason: str


@dataclass(frozen=True)
class JsonFile:
    """A JSON array of objects or newline-delimited JSON; nested values are kept as JSON text."""

    location: str

    @contextlib.contextmanager
    def extract(self, cursor: str | None = None) -> Iterator[Extract]:
        with local_copy(self.location) as (path, digest):
            records = _json_records(path.read_text(encoding="utf-8"), self.location)
        unparsable = [
            Rejected(n, r.line, r.reason) for n, r in enumerate(records, start=1) if isinstance(r, _Unparsable)
        ]
        columns, rows, rejected = tabulate(r for r in records if not isinstance(r, _Unparsable))
        yield Extract(columns, rows, digest, self.location, rejected=unparsable + rejected)


@dataclass(frozen=True)
class HttpApi:
    """A paginated JSON API read incrementally: only records past the stored cursor are asked for.

    The stored cursor is sent as `cursor_param`; the largest `cursor_field` seen becomes the next cursor.
    Pages follow the body's `next_field` URL until it is empty; with `next_field=None`, `page_param` counts
    up instead until a page comes back empty. `max_pages` bounds a misbehaving API.
    """

    url: str
    cursor_field: str
    cursor_param: str = "since"
    records_field: str | None = "data"  # None: the body is the list of records
    next_field: str | None = "next"
    page_param: str = "page"
    max_pages: int = 1000

    @property
    def location(self) -> str:
        return self.url

    def pages(self, cursor: str | None) -> Iterator[list[Any]]:
        params = {self.cursor_param: cursor} if cursor is not None else {}
        url = _with_query(self.url, params | {self.page_param: "1"})
        for page in range(1, self.max_pages + 1):
            with urllib.request.urlopen(_get(url), timeout=HTTP_TIMEOUT_S) as response:
                body = json.loads(response.read())
            records = body if self.records_field is None else body.get(self.records_field) or []
            if not isinstance(records, list):
                raise ValueError(f"{url}: {self.records_field!r} is not a list of records")
            if not records:
                return
            yield records
            if self.next_field is None:
                url = _with_query(self.url, params | {self.page_param: str(page + 1)})
            elif isinstance(body, dict) and body.get(self.next_field):
                url = urllib.parse.urljoin(url, body[self.next_field])
            else:
                return
        raise RuntimeError(f"{self.url}: more than {self.max_pages} pages; raise max_pages if that is expected")

    @contextlib.contextmanager
    def extract(self, cursor: str | None = None) -> Iterator[Extract]:
        records = [record for page in self.pages(cursor) for record in page]
        payload = json.dumps(records, sort_keys=True, separators=(",", ":")).encode()
        columns, rows, rejected = tabulate(records)
        values = [r[self.cursor_field] for r in records if isinstance(r, dict) and r.get(self.cursor_field) is not None]
        new_cursor = text_of(max(values, key=_cursor_order)) if values else cursor
        yield Extract(columns, rows, hashlib.sha256(payload).hexdigest(), self.url, rejected, cursor=new_cursor)


def _cursor_order(value: Any) -> tuple[int, Any]:
    """Numbers compare as numbers, everything else (ISO timestamps, ids) as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query)) | params
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
