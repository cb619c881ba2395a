"""GET /duplicates: contents with two or more live locations, most wasted bytes first."""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any, Literal

from litestar import Controller, get
from litestar.params import Parameter

from eventsvc.ids import HASH_RE
from projections.api import db, rows
from projections.api.context import Ctx
from projections.api.errors import bad_parameter, error_responses
from projections.api.paging import decode_cursor, encode_cursor
from projections.api.schemas import DuplicateGroup, DuplicatePage

__all__ = ["DuplicatesController"]


def _after(cursor: str) -> tuple[int, str]:
    data = decode_cursor(cursor)
    wasted, content_hash = data.get("w"), data.get("h")
    if (
        type(wasted) is not int
        or not isinstance(content_hash, str)
        or not HASH_RE.fullmatch(content_hash)
    ):
        raise bad_parameter("cursor", "not a duplicates cursor handed out by this API")
    return wasted, content_hash


def _groups(
    conn: sqlite3.Connection, library: str | None, after: tuple[int, str] | None, limit: int
) -> list[DuplicateGroup]:
    lib_sql = " AND library_id = ?" if library is not None else ""
    lib_params: list[Any] = [library] if library is not None else []
    page_sql, page_params = "", []
    if after is not None:
        page_sql = " WHERE wasted < ? OR (wasted = ? AND content_hash > ?)"
        page_params = [after[0], after[0], after[1]]
    groups = conn.execute(
        f"""WITH g AS (
                SELECT content_hash, count(*) AS n, max(size) AS size,
                       max(size) * (count(*) - 1) AS wasted
                FROM files WHERE content_hash IS NOT NULL{lib_sql}
                GROUP BY content_hash HAVING count(*) >= 2
            )
            SELECT content_hash, n, size, wasted FROM g{page_sql}
            ORDER BY wasted DESC, content_hash ASC LIMIT ?""",
        [*lib_params, *page_params, limit],
    ).fetchall()
    if not groups:
        return []
    hashes = [g["content_hash"] for g in groups]
    marks = ",".join("?" * len(hashes))
    by_hash: dict[str, list[sqlite3.Row]] = {h: [] for h in hashes}
    for r in conn.execute(
        f"SELECT {rows.LOCATION_COLUMNS} FROM files WHERE content_hash IN ({marks}){lib_sql}"
        " ORDER BY library_id, path, file_id",
        [*hashes, *lib_params],
    ):
        by_hash[r["content_hash"]].append(r)
    return [
        DuplicateGroup(
            content_hash=g["content_hash"],
            size=g["size"],
            count=g["n"],
            wasted_bytes=g["wasted"],
            locations=[rows.location(r) for r in by_hash[g["content_hash"]]],
        )
        for g in groups
    ]


class DuplicatesController(Controller):
    path = "/duplicates"
    tags = ("duplicates",)

    @get(
        "/",
        summary="Duplicate groups",
        description="Contents held by two or more live locations, ordered by wasted bytes "
        "(size * (count - 1)) descending, then hash. With `library`, only locations in "
        "that library count.",
        responses=error_responses(400),
    )
    async def list_duplicates(
        self,
        ctx: Ctx,
        kind: Annotated[
            Literal["exact"], Parameter(description="'exact': same BLAKE3 (only kind so far).")
        ] = "exact",
        library: Annotated[str | None, Parameter(description="Only this library id.")] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Groups per page.")] = 100,
        cursor: Annotated[
            str | None, Parameter(description="The `next` of the previous page.")
        ] = None,
    ) -> DuplicatePage:
        after = _after(cursor) if cursor is not None else None
        found = await db.read(
            ctx.settings.readmodel_dir, lambda c: _groups(c, library, after, limit + 1), []
        )
        nxt = None
        if len(found) > limit:
            last = found[limit - 1]
            nxt = encode_cursor({"w": last.wasted_bytes, "h": last.content_hash})
        return DuplicatePage(items=found[:limit], next=nxt)
