"""The `Prefer` request header (RFC 7240), with PostgREST's vocabulary."""

from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import Headers

from db_connect.errors import ApiError

CHOICES = {
    "count": ("exact", "planned", "estimated"),
    "return": ("minimal", "representation"),
    "resolution": ("merge-duplicates", "ignore-duplicates"),
}


@dataclass(frozen=True)
class Preferences:
    count: Literal["exact", "planned", "estimated"] | None = None
    representation: bool = False
    resolution: Literal["merge", "ignore"] | None = None


def preferences(headers: Headers) -> Preferences:
    """Unknown preferences are ignored, as RFC 7240 asks; a known one with a wrong value is a 400."""
    chosen: dict[str, str] = {}
    for header in headers.getlist("prefer"):
        for token in header.split(","):
            name, _, value = token.strip().partition("=")
            if name in CHOICES:
                if value not in CHOICES[name]:
                    raise ApiError(
                        400,
                        "invalid_header",
                        f"Invalid Prefer: {name}={value}",
                        hint=f"{name} takes one of {', '.join(CHOICES[name])}",
                    )
                chosen[name] = value
    resolution = chosen.get("resolution")
    return Preferences(
        count=chosen.get("count"),  # type: ignore[arg-type]
        representation=chosen.get("return") == "representation",
        resolution=None if resolution is None else ("merge" if resolution == "merge-duplicates" else "ignore"),
    )
