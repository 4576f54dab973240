"""A request's statements as one libpq pipeline of prepared statements: one round trip, one transaction.

Why not psycopg's cursors: for a small read, psycopg's execution machinery and Postgres parsing and
planning the same text again cost more CPU than anything else in the request (measured: 100 µs of
client CPU and 155 µs in the backend per single-row read, against 50 and 75 here). So each distinct
text is prepared once per connection and role, and a request sends Bind/Execute for each statement and
one Sync. Postgres runs everything before a Sync as one implicit transaction: settings made LOCAL by
the first statement hold for the rest, and an error rolls all of it back and skips what follows.

Statements are prepared under the role that runs them (the key includes it), as name lookups such as a
schema's USAGE are checked when a text is parsed; table privileges and row security are checked by
Postgres on every execution. Values go as text of unspecified type, so Postgres infers each one from its
use, as it does for a quoted literal. Results are loaded by psycopg, so rows have the usual Python types.
"""

import asyncio
import contextlib
import functools
import hashlib
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import psycopg
from psycopg import errors, pq
from psycopg.abc import Buffer
from psycopg.adapt import PyFormat, Transformer

from db_connect.statements import Statement

MAX_PREPARED = 256  # per connection; the least recently used is closed beyond that
CANCEL_TIMEOUT_S = 2.0
PLACEHOLDER = re.compile(rb"%%|%s|%")
ABORTED = pq.ExecStatus.PIPELINE_ABORTED
SYNC = pq.ExecStatus.PIPELINE_SYNC
OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)

Key = tuple[str, str]  # (role, text)


class Prepared:
    """What one connection has prepared: (role, text) → name, least recently used first.

    Nothing here refers to the connection (its adapters, not itself, configure the transformer; the pool
    makes every connection UTF-8): the connection is this object's weak key, and a closed one must go.
    """

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.names: OrderedDict[Key, bytes] = OrderedDict()
        self.transformer = Transformer.from_context(conn.adapters)

    def lookup(self, key: Key) -> bytes | None:
        name = self.names.get(key)
        if name is not None:
            self.names.move_to_end(key)
        return name


def statement_name(key: Key) -> bytes:
    """Named after role and text: one name is one statement on every connection, so behind a pooler that
    mixes up sessions a statement can be missing (an error), never replaced by another one."""
    return b"dbc_" + hashlib.blake2b("\0".join(key).encode(), digest_size=12).hexdigest().encode()


class StatementsLost(Exception):
    """The connection had lost statements prepared on it (a DEALLOCATE): nothing ran, and it is closed."""


@dataclass(frozen=True)
class Parse:
    """A statement prepared in this pipeline: known to the connection only if its result is OK."""

    key: Key
    name: bytes


CLOSE, ROWS = "close", "rows"  # a closed statement's result; a statement's rows
Sent = Parse | str

_prepared: WeakKeyDictionary[psycopg.AsyncConnection, Prepared] = WeakKeyDictionary()


@functools.lru_cache(maxsize=1024)
def numbered(text: str) -> bytes:
    """psycopg's `%s` placeholders as Postgres's `$1, $2 …`; `%%` is a literal percent sign."""
    counter = iter(range(1, 1 << 16))

    def replace(match: re.Match[bytes]) -> bytes:
        if match.group() == b"%%":
            return b"%"
        if match.group() == b"%":
            raise psycopg.ProgrammingError("only '%s' placeholders are allowed")
        return b"$%d" % next(counter)

    return PLACEHOLDER.sub(replace, text.encode())


async def run(
    conn: psycopg.AsyncConnection, role: str, statements: Sequence[Statement], named: bool = True
) -> list[tuple]:
    """The first row of each statement (an empty tuple for none), all run in one implicit transaction.

    named=False sends every text unnamed, parsed on each execution (PREPARED_STATEMENTS=false): for a
    pooler in transaction mode, where the next transaction may run on a session that never saw the Parse.

    The connection must be idle and in autocommit. A value psycopg cannot send, or a database error, is
    raised as psycopg raises it, the connection left idle; after any other exception it is broken or
    closed, as results may still be on their way (the pool then replaces it).
    """
    prepared = _prepared.get(conn) or _prepared.setdefault(conn, Prepared(conn))
    commands = plan(prepared, role, statements) if named else unnamed(prepared, statements)
    pg = conn.pgconn
    pg.enter_pipeline_mode()
    try:
        sent = send(pg, prepared, commands)
        await flush(pg)
        results = await collect(pg)
        pg.exit_pipeline_mode()
    except BaseException:
        if not conn.broken:  # a broken one is the caller's to notice (and to retry elsewhere)
            with contextlib.suppress(Exception):  # stop what was sent, not only our end of it
                await conn.cancel_safe(timeout=CANCEL_TIMEOUT_S)
            await conn.close()
        raise
    rows: list[tuple] = []
    failure: pq.abc.PGresult | None = None
    for what, result in zip(sent, results, strict=True):
        if result.status not in OK:
            if failure is None and result.status != ABORTED:
                failure = result
        elif isinstance(what, Parse):
            prepared.names[what.key] = what.name
        elif what is ROWS:
            prepared.transformer.set_pgresult(result)
            rows.append(prepared.transformer.load_row(0, tuple) if result.ntuples else ())
            prepared.transformer.set_pgresult(None)  # an idle connection keeps no result alive
    if failure is not None:
        error = errors.error_from_result(failure, encoding=conn.info.encoding)
        if isinstance(error, errors.InvalidSqlStatementName):
            await conn.close()
            raise StatementsLost() from error
        raise error
    return rows


@dataclass(frozen=True)
class Command:
    """One statement as it goes on the wire: its prepared name, or a Parse to send first; its values."""

    name: bytes
    parse: "Parse | None"
    text: bytes
    params: Sequence[Buffer | None]


def plan(prepared: Prepared, role: str, statements: Sequence[Statement]) -> list[Command]:
    """Names, $n texts and values as text, before anything is sent: what can fail here changes nothing."""
    commands = []
    fresh: dict[Key, bytes] = {}
    dump = prepared.transformer.dump_sequence
    for statement in statements:
        key = (role, statement.text())
        name = prepared.lookup(key) or fresh.get(key)
        parse = None
        if name is None:
            name = fresh[key] = statement_name(key)
            parse = Parse(key, name)
        params = dump(statement.params, [PyFormat.TEXT] * len(statement.params))
        commands.append(Command(name, parse, numbered(key[1]) if parse else b"", params))
    return commands


def unnamed(prepared: Prepared, statements: Sequence[Statement]) -> list[Command]:
    """Each statement as the unnamed statement: Parse, Bind and Execute every time, nothing left on the session."""
    dump = prepared.transformer.dump_sequence
    return [Command(b"", None, numbered(s.text()), dump(s.params, [PyFormat.TEXT] * len(s.params))) for s in statements]


def send(pg: pq.abc.PGconn, prepared: Prepared, commands: Sequence[Command]) -> list[Sent]:
    """Queue the pipeline and its sync; returns what each of its results will answer, in order.

    A new text is parsed just before its first execution, so after the first statement set the role.
    """
    sent: list[Sent] = []
    excess = len(prepared.names) + sum(c.parse is not None for c in commands) - MAX_PREPARED
    for _ in range(max(0, excess)):
        _, oldest = prepared.names.popitem(last=False)
        pg.send_close_prepared(oldest)  # first in the pipeline, so nothing before it can abort it
        sent.append(CLOSE)
    for command in commands:
        if command.parse is not None:
            pg.send_prepare(command.name, command.text)
            sent.append(command.parse)
        if command.name:
            pg.send_query_prepared(command.name, command.params)
        else:
            pg.send_query_params(command.text, command.params)
        sent.append(ROWS)
    pg.pipeline_sync()
    return sent


async def flush(pg: pq.abc.PGconn) -> None:
    """Send what is queued; take in what arrives meanwhile, so a server blocked writing to us can go on."""
    while pg.flush():
        if await ready(pg.socket, writing=True, reading=True):
            pg.consume_input()


async def collect(pg: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    """Every result up to the pipeline's sync, in order."""
    results = []
    while True:
        while pg.is_busy():
            await ready(pg.socket, reading=True)
            pg.consume_input()
        result = pg.get_result()
        if result is None:  # the end of one command's results
            continue
        if result.status == SYNC:
            return results
        results.append(result)


async def ready(fd: int, *, reading: bool = False, writing: bool = False) -> bool:
    """Wait until fd can be read or written (as asked); True if it can be read."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()

    def wake(readable: bool) -> None:
        if not done.done():
            done.set_result(readable)

    if reading:
        loop.add_reader(fd, wake, True)
    if writing:
        loop.add_writer(fd, wake, False)
    try:
        return await done
    finally:
        if reading:
            loop.remove_reader(fd)
        if writing:
            loop.remove_writer(fd)
