"""``/web/duplicates``: exact groups (same bytes) with the bytes they waste and every path,
and near pairs (similar perceptual hashes) side by side with their distance and how many
seconds apart they were taken, each with a "Not a duplicate" button.

Rendered with the queries of ``GET /duplicates`` (kind exact and near); the button posts
``POST /duplicates/not-duplicate`` from ``static/duplicates.js`` and the page reloads once
the projector has applied the NotDuplicate event (the pair then drops out).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import Parameter
from litestar.response import Template

from projections.api import db
from projections.api.context import Ctx
from projections.api.duplicate_queries import (
    DEFAULT_MAX_DISTANCE,
    MAX_MAX_DISTANCE,
    exact_groups,
    near_groups,
)
from projections.api.duplicate_schemas import (
    DuplicateGroup,
    NearDuplicateGroup,
    NearDuplicateMember,
)
from projections.web.common import page

__all__ = ["MAX_GROUPS", "DuplicatePages"]

MAX_GROUPS = 200
"""Groups of each kind shown on the page (the largest first); the rest are counted."""


def _with_thumbnail(conn: sqlite3.Connection, hashes: list[str]) -> set[str]:
    """The contents among ``hashes`` that have a small thumbnail (no broken images)."""
    found: set[str] = set()
    for i in range(0, len(hashes), 500):
        chunk = hashes[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for r in conn.execute(
            f"SELECT content_hash, sizes FROM thumbnails WHERE content_hash IN ({marks})", chunk
        ):
            if "small" in json.loads(r["sizes"]):
                found.add(r["content_hash"])
    return found


class DuplicatePages(Controller):
    path = "/web/duplicates"
    include_in_schema = False

    @get("/", name="web-duplicates")
    async def duplicates(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        max_distance: Annotated[int, Parameter(ge=0, le=MAX_MAX_DISTANCE)] = DEFAULT_MAX_DISTANCE,
        window: Annotated[float | None, Parameter(ge=0)] = None,
    ) -> Template:
        def load(
            c: sqlite3.Connection,
        ) -> tuple[list[DuplicateGroup], list[NearDuplicateGroup], set[str]]:
            exact = exact_groups(c, None, None, MAX_GROUPS + 1)
            near = near_groups(c, None, max_distance, window, None, MAX_GROUPS + 1)
            return exact, near, _with_thumbnail(c, [g.content_hash for g in exact])

        exact, near, thumbs = await db.read(ctx.settings.readmodel_dir, load, ([], [], set()))
        pairs = []
        for g in near[:MAX_GROUPS]:
            members: dict[str, NearDuplicateMember] = {m.content_hash: m for m in g.members}
            pairs += [(members[p.a], members[p.b], p) for p in g.pairs]
        return page(
            request, "duplicates.html", "duplicates",
            exact=exact[:MAX_GROUPS], more_exact=len(exact) > MAX_GROUPS,
            wasted=sum(g.wasted_bytes for g in exact[:MAX_GROUPS]),
            near=near[:MAX_GROUPS], more_near=len(near) > MAX_GROUPS, pairs=pairs,
            max_distance=max_distance, window=window, max_max=MAX_MAX_DISTANCE, thumbs=thumbs,
        )  # fmt: skip
