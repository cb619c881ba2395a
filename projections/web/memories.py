"""The Memories page (issue 16): ``/web/memories`` (``/memories`` is the JSON API's),
"on this day" in earlier years, one section per year, the API's choice and order
(:mod:`projections.api.memories`)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.exceptions import ClientException
from litestar.response import Template

from projections.api import db
from projections.api.context import Ctx
from projections.api.memories import MemoryYear, memories, parse_day
from projections.web.common import page
from projections.web.filters import Form

__all__ = ["MemoriesPages"]


class MemoriesPages(Controller):
    path = "/web/memories"
    include_in_schema = False

    @get("/", name="web-memories")
    async def memories_page(self, request: Request[Any, Any, Any], ctx: Ctx) -> Template:
        s = ctx.settings
        error = None
        years: list[MemoryYear] = []
        try:
            mmdd, year = parse_day(request.query_params.get("date") or None)
        except ClientException as exc:
            error, (mmdd, year) = str(exc.detail), parse_day(None)
        else:
            years = await db.read(
                s.readmodel_dir,
                lambda c: memories(
                    c, mmdd, year, s.memories_burst_seconds, s.memories_near_distance
                ),
                [],
            )
        return page(
            request, "memories.html", "memories", status_code=400 if error else 200,
            years=years, day=mmdd, error=error, form=Form(),
        )  # fmt: skip
