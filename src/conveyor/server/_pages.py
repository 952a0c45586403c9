"""Pages of a name-ordered listing: ``?limit=N&after=NAME``, the next page named in headers.

The answer's body stays the plain list it always was (clients that never page
see no change); a page that is not the last carries the next one's address:

    Link: </v1/apps?limit=50&after=scorer>; rel="next"
    X-Next-Cursor: scorer

The cursor is the last name on the page: names are unique and ordered, so a
page never repeats or skips an item when others are created or deleted
between two requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Response

__all__ = ["After", "Limit", "page"]

Limit = Annotated[int | None, Query(ge=1, le=10_000, description="Items per page (all if absent)")]
After = Annotated[
    str | None, Query(max_length=200, description="The X-Next-Cursor of the previous page")
]


def page(
    items: Sequence[Mapping[str, Any]],
    *,
    limit: int | None,
    after: str | None,
    response: Response,
    path: str,
) -> list[Mapping[str, Any]]:
    """The items named after ``after`` (by ``name``), at most ``limit``; next page in headers."""
    ordered = sorted(items, key=lambda item: str(item["name"]))
    if after is not None:
        ordered = [item for item in ordered if str(item["name"]) > after]
    if limit is None or len(ordered) <= limit:
        return list(ordered)
    shown = ordered[:limit]
    cursor = str(shown[-1]["name"])
    response.headers["X-Next-Cursor"] = cursor
    query = urlencode({"limit": limit, "after": cursor})
    response.headers["Link"] = f'<{path}?{query}>; rel="next"'
    return list(shown)
