"""A CSV body goes to COPY as it arrives; a line of only `\\.` would end COPY's data there, silently."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from db_connect.errors import ApiError
from db_connect.writes import copy_data


async def arriving(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def passed_on(rest: bytes, chunks: list[bytes]) -> bytes:
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in copy_data(rest, arriving(chunks))])

    return asyncio.run(collect())


@pytest.mark.parametrize(
    ("rest", "chunks"),
    [
        (b"\\.\n2,b\n", []),  # the first row
        (b"1,a\n", [b"\\.\r\n2,b\n"]),
        (b"1,a\n\\", [b".", b"\n2,b\n"]),  # split over three chunks
        (b"1,a\n", [b"\\.", b"\r", b"\n2,b\n"]),
        (b"1,a\r\\.\r2,b\r", []),  # bare CR line ends, which COPY takes from the first row
        (b"1,a\r", [b"\\", b".\r2,b\r"]),
        (b"1,a\n", [b"\\."]),  # the last line: nothing follows, but the row itself would be dropped
    ],
    ids=[
        "first line",
        "a line of its own",
        "split after the backslash",
        "split before the line end",
        "bare CR",
        "bare CR, split",
        "last line",
    ],
)
def test_a_line_of_only_the_end_marker_is_refused_before_copy_ends(rest: bytes, chunks: list[bytes]) -> None:
    with pytest.raises(ApiError) as refused:
        passed_on(rest, chunks)
    assert refused.value.status == 400 and "\\." in refused.value.body.message


def test_everything_else_is_passed_on_unchanged() -> None:
    chunks = [b'2,"\\."\n3,x\\.\n', b"4,\\.y\r", b"5,\\\r.\r", b"6,\\.\r\n"]
    assert passed_on(b"1,a\n", chunks) == b"1,a\n" + b"".join(chunks)
