"""The filter form shared by the timeline and search: query parameters in, the API's
``Query`` (``projections.api.filters.build_query``) out, with the same rules and 400s."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from litestar import Request

from projections.api.errors import bad_parameter
from projections.api.filters import Query, build_query, resolve_library

__all__ = ["FIELDS", "SORTS", "Form", "parse_form"]

FIELDS = (
    "library", "media_kind", "make", "model", "taken_from", "taken_to", "near", "radius_km",
    "person", "tag", "tag_mode", "favorite",
)  # fmt: skip
"""The filter parameters the pages take, as ``GET /photos`` names them."""

SORTS = {
    "-taken": "Newest first",
    "taken": "Oldest first",
    "-mtime": "Recently changed",
    "path": "By path",
}


@dataclass
class Form:
    values: dict[str, str] = field(default_factory=dict)
    sort: str = "-taken"

    def params(self, **more: Any) -> dict[str, Any]:
        """The filters (and sort) as query parameters, for links and next pages."""
        out: dict[str, Any] = dict(self.values)
        if self.sort != "-taken":
            out["sort"] = self.sort
        out.update(more)
        return out

    @property
    def active(self) -> bool:
        return bool(self.values)

    def query(self, conn: sqlite3.Connection) -> Query:
        """The SQL filter; ``ClientException`` (400) naming a bad parameter."""
        v = self.values
        radius = None
        if "radius_km" in v:
            try:
                radius = float(v["radius_km"])
            except ValueError:
                raise bad_parameter("radius_km", "must be a number of km") from None
        library = resolve_library(conn, v["library"]) if "library" in v else None
        media_kind = v.get("media_kind")
        if media_kind not in (None, "image", "video"):
            raise bad_parameter("media_kind", "must be 'image' or 'video'")
        return build_query(
            library=library, media_kind=media_kind, make=v.get("make"), model=v.get("model"),
            taken_from=v.get("taken_from"), taken_to=v.get("taken_to"), near=v.get("near"),
            radius_km=radius, person=v.get("person"), **_tags(v),
        )  # fmt: skip


def _tags(v: dict[str, str]) -> dict[str, Any]:
    """The tag and favourite fields (issue 16): ``tag`` is one or more names, comma
    separated; ``tag_mode`` "and" (default) or "or"; ``favorite`` "true" or "false"."""
    out: dict[str, Any] = {}
    if "tag" in v:
        out["tag"] = [t for t in (x.strip() for x in v["tag"].split(",")) if t] or [v["tag"]]
        out["tag_mode"] = v.get("tag_mode", "and")
    if "favorite" in v:
        if v["favorite"] not in ("true", "false"):
            raise bad_parameter("favorite", "must be 'true' or 'false'")
        out["favorite"] = v["favorite"] == "true"
    return out


def parse_form(request: Request[Any, Any, Any], default_sort: str = "-taken") -> Form:
    """The non-empty filter fields of the request, and a known sort order."""
    qp = request.query_params
    values = {k: qp[k].strip() for k in FIELDS if qp.get(k) and qp[k].strip()}
    if "near" in values and "radius_km" not in values:
        values["radius_km"] = "10"
    if "radius_km" in values and "near" not in values:
        del values["radius_km"]  # a radius alone means nothing (the form always sends one)
    sort = qp.get("sort") or default_sort
    return Form(values, sort if sort in SORTS else default_sort)
