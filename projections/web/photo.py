"""``/photo/{content_hash}``: one photo or video, its facts, faces and neighbours."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.response import Template

from projections.api import db
from projections.api.context import Ctx
from projections.api.photos import _detail, check_hash
from projections.api.redact import redacted
from projections.web.common import page
from projections.web.filters import parse_form

__all__ = ["PhotoPages"]


class PhotoPages(Controller):
    path = "/photo"
    include_in_schema = False

    @get("/{content_hash:str}", name="web-photo")
    async def photo(self, request: Request[Any, Any, Any], ctx: Ctx, content_hash: str) -> Template:
        check_hash(content_hash)
        form = parse_form(request)
        detail = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: redacted(ctx.settings, c, _detail(content_hash, c), "decode_error"),
            None,
        )
        if detail is None:
            raise NotFoundException(detail=f"unknown content_hash {content_hash}")
        return page(request, "photo.html", "timeline", p=detail, form=form)
