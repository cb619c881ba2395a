"""``/search``: words (CLIP) with the timeline's filters; filters alone list matches."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.response import Template

from projections.web.common import page
from projections.web.filters import SORTS, parse_form

__all__ = ["SearchPages"]


class SearchPages(Controller):
    path = "/search"
    include_in_schema = False

    @get("/", name="web-search")
    async def search(self, request: Request[Any, Any, Any], q: str | None = None) -> Template:
        form = parse_form(request)
        return page(request, "search.html", "search", form=form, sorts=SORTS, words=q or "")
