"""The timeline (home page ``/``): thumbnails grouped by month, endless scroll.

The first screen is rendered with the page; each further page is an HTML fragment
(``/web/timeline/page?cursor=...``) that htmx appends when its sentinel scrolls into
view. Rows come from the same query as ``GET /photos`` (``list_rows``), and cursors
are that API's cursors. The month scrubber is a fragment too
(``/web/timeline/months``), loaded after the first screen.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.exceptions import ClientException
from litestar.params import Parameter
from litestar.response import Template

from projections import readmodel
from projections.api import db, geo, photo_queries
from projections.api.context import Ctx
from projections.api.filters import Query
from projections.api.schemas import Photo
from projections.web.common import PAGE_HEADERS, page
from projections.web.filters import SORTS, Form, parse_form
from projections.web.render import with_query

__all__ = ["FIRST_SCREEN", "PAGE_SIZE", "TimelinePages", "month_start", "photo_page"]

FIRST_SCREEN = 60
"""Items rendered with the page."""
PAGE_SIZE = 60
"""Items per scroll fragment."""


@dataclass
class PhotoPage:
    items: list[Photo]
    next: str | None


def photo_page(
    conn: sqlite3.Connection, q: Query, sort: str, after: tuple[Any, str] | None, limit: int
) -> PhotoPage:
    """One page of ``GET /photos`` (same rows, same cursor), as Photo structs."""
    items, nxt = photo_queries.photo_page(conn, q, sort, after, limit)  # type: ignore[arg-type]
    return PhotoPage(items, nxt)


def month_start(month: str, sort: str) -> tuple[str, str] | None:
    """The keyset position just before ``YYYY-MM`` in a by-date order (None: not one)."""
    if sort not in ("taken", "-taken") or len(month) != 7 or month[4] != "-":
        return None
    try:
        y, m = int(month[:4]), int(month[5:])
    except ValueError:
        return None
    if not 1 <= m <= 12:
        return None
    if sort == "taken":
        return (f"{y:04d}-{m:02d}", "")  # everything after "YYYY-MM" as text: that month on
    y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return (f"{y:04d}-{m:02d}-01", "")  # everything before the next month


_MEDIA = re.compile(r"\bm\.")
_MONTHS_CACHE: OrderedDict[tuple[Any, ...], list[tuple[str, int]]] = OrderedDict()
_MONTHS_LOCK = threading.Lock()


def _months(conn: sqlite3.Connection, q: Query) -> list[tuple[str, int]]:
    """Photos per month of date_taken, newest first; cached per read-model generation and
    checkpoint (a full count over the files costs more than a page)."""
    db_file = conn.execute("PRAGMA database_list").fetchone()[2]
    key = (db_file, readmodel.checkpoint(conn), tuple(q.where), tuple(q.params))
    with _MONTHS_LOCK:
        found = _MONTHS_CACHE.get(key)
        if found is not None:
            _MONTHS_CACHE.move_to_end(key)
            return found
    found = _count_months(conn, q)
    with _MONTHS_LOCK:
        _MONTHS_CACHE[key] = found
        while len(_MONTHS_CACHE) > 32:
            _MONTHS_CACHE.popitem(last=False)
    return found


def _count_months(conn: sqlite3.Connection, q: Query) -> list[tuple[str, int]]:
    where = " AND ".join(["f.date_taken IS NOT NULL", *q.where])
    if q.near is not None:
        conn.create_function("haversine_km", 4, geo.haversine_km, deterministic=True)
    # The media join only when a filter reads it: without it the count is one pass over
    # the files_by_taken index.
    join = (
        " LEFT JOIN media AS m ON m.content_hash = f.content_hash" if _MEDIA.search(where) else ""
    )
    sql = (
        f"SELECT substr(f.date_taken, 1, 7) AS month, count(*) FROM files AS f{join}"
        f" WHERE {where} GROUP BY month ORDER BY month DESC"
    )
    return [(r[0], r[1]) for r in conn.execute(sql, q.params)]


def _month(p: Photo) -> str:
    return p.date_taken[:7] if p.date_taken else ""


def _next_url(form: Form, nxt: str | None, last_month: str) -> str | None:
    if nxt is None:
        return None
    return with_query("/web/timeline/page", form.params(cursor=nxt, month=last_month or "-"))


class TimelinePages(Controller):
    path = "/"
    include_in_schema = False

    @get("/", name="web-timeline")
    async def timeline(self, request: Request[Any, Any, Any], ctx: Ctx) -> Template:
        form = parse_form(request)
        at = request.query_params.get("at") or ""
        after = month_start(at, form.sort) if at else None

        def first(conn: sqlite3.Connection) -> PhotoPage:
            return photo_page(conn, form.query(conn), form.sort, after, FIRST_SCREEN)

        error = None
        try:
            result = await db.read(ctx.settings.readmodel_dir, first, PhotoPage([], None))
        except ClientException as exc:
            result, error = PhotoPage([], None), exc.detail
        last = _month(result.items[-1]) if result.items else ""
        return page(
            request, "timeline.html", "timeline", status_code=400 if error else 200,
            form=form, sorts=SORTS, items=result.items, by_date=form.sort.endswith("taken"),
            prev_month=None, next_url=_next_url(form, result.next, last), error=error,
            months_url=with_query("/web/timeline/months", form.params()), at=at,
        )  # fmt: skip

    @get("/web/timeline/page", name="web-timeline-page")
    async def scroll_page(
        self, request: Request[Any, Any, Any], ctx: Ctx,
        cursor: Annotated[str, Parameter(description="The previous page's next.")],
        month: Annotated[str, Parameter(description="The month shown last.")] = "-",
    ) -> Template:  # fmt: skip
        form = parse_form(request)
        after = photo_queries.after_cursor(cursor, form.sort)  # type: ignore[arg-type]

        def more(conn: sqlite3.Connection) -> PhotoPage:
            return photo_page(conn, form.query(conn), form.sort, after, PAGE_SIZE)

        result = await db.read(ctx.settings.readmodel_dir, more, PhotoPage([], None))
        last = _month(result.items[-1]) if result.items else month
        return Template(
            template_name="timeline_items.html",
            context={"items": result.items, "by_date": form.sort.endswith("taken"),
                     "prev_month": None if month == "-" else month, "form": form,
                     "next_url": _next_url(form, result.next, last)},
            headers=PAGE_HEADERS,
        )  # fmt: skip

    @get("/web/timeline/months", name="web-timeline-months")
    async def months(self, request: Request[Any, Any, Any], ctx: Ctx) -> Template:
        form = parse_form(request)
        if not form.sort.endswith("taken"):
            found: list[tuple[str, int]] = []
        else:
            found = await db.read(
                ctx.settings.readmodel_dir, lambda c: _months(c, form.query(c)), []
            )
        years: dict[str, list[tuple[str, int]]] = {}
        for month, n in found:
            years.setdefault(month[:4], []).append((month, n))
        return Template(
            template_name="timeline_months.html",
            context={"years": years, "form": form},
            headers=PAGE_HEADERS,
        )
