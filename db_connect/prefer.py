"""The `Prefer` request header (RFC 7240), with PostgREST's vocabulary."""

from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import Headers

from db_connect.errors import ApiError

CHOICES = {
    "count": ("exact", "planned", "estimated"),
    "return": ("minimal", "representation", "headers-only"),
    "resolution": ("merge-duplicates", "ignore-duplicates"),
    "handling": ("strict", "lenient"),
    "missing": ("default", "null"),
}


@dataclass(frozen=True)
class Preferences:
    count: Literal["exact", "planned", "estimated"] | None = None
    representation: bool = False
    resolution: Literal["merge", "ignore"] | None = None
    max_affected: int | None = None  # enforced with handling=strict, as PostgREST does
    missing_default: bool = False  # columns= names a column a row lacks: its default, not null


def preferences(headers: Headers) -> Preferences:
    """Unknown preferences are ignored, as RFC 7240 asks; a known one with a wrong value is a 400."""
    chosen: dict[str, str] = {}
    for header in headers.getlist("prefer"):
        for token in header.split(","):
            name, _, value = token.strip().partition("=")
            if name == "max-affected":
                if not value.isdigit():
                    raise ApiError(400, "invalid_header", f"Invalid Prefer: max-affected={value}", hint="e.g. 10")
                chosen[name] = value
            elif name in CHOICES:
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
        max_affected=int(chosen["max-affected"])
        if chosen.get("handling") == "strict" and "max-affected" in chosen
        else None,
        missing_default=chosen.get("missing") == "default",
    )
