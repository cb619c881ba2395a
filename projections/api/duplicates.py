"""GET /duplicates: exact duplicates (same BLAKE3, two or more live locations) or near
duplicates (pHash within a Hamming distance); POST/DELETE /duplicates/not-duplicate.

Near duplicates: every content with a 64-bit pHash and a live location (in ``library``
when given) is searched with multi-index hashing (``projections.near``); pairs within
``max_distance`` are kept unless a NotDuplicate decision holds for them, and, with
``window``, only when their dates taken are at most that many seconds apart. Groups are
the connected components of the kept pairs (union-find). Re-encodes, resizes and copies
keep their metadata, so their dates are equal (``seconds_apart`` 0): ``window=0`` finds
those only, while a burst of shots is a few seconds apart and appears from ``window=N``
on; pairs without a date on both sides are dropped whenever a window is given.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, post
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from eventsvc.core.events import NotDuplicate
from projections.api import db
from projections.api.context import ApiContext, Ctx
from projections.api.duplicate_queries import (
    DEFAULT_MAX_DISTANCE,
    MAX_MAX_DISTANCE,
    exact_after,
    exact_groups,
    near_after,
    near_groups,
)
from projections.api.duplicate_schemas import (
    DuplicatePage,
    NearDuplicatePage,
    NotDuplicateAccepted,
    NotDuplicateRequest,
)
from projections.api.errors import WRITES, bad_parameter, error_responses
from projections.api.filters import LIBRARY_DESCRIPTION
from projections.api.idempotency import IdempotencyKey, decision_msg_id
from projections.api.paging import encode_cursor
from projections.api.params import (
    CURSOR_PATTERN,
    HASH_PATTERN,
    NOT_BLANK,
    AnyOfOperation,
    body_operation,
    decode_body,
)
from projections.api.photos import check_hash
from projections.api.schemas import ErrorDetail

__all__ = ["DEFAULT_MAX_DISTANCE", "DuplicatesController"]


# ------------------------------------------------------------------ not-duplicate


def _unknown(conn: sqlite3.Connection, hashes: list[str]) -> list[str]:
    out = []
    for h in hashes:
        known = conn.execute(
            "SELECT 1 FROM content WHERE content_hash = ?"
            " UNION ALL SELECT 1 FROM files WHERE content_hash = ? LIMIT 1",
            (h, h),
        ).fetchone()
        if known is None:
            out.append(h)
    return out


async def _record(
    ctx: ApiContext, a: str, b: str, undo: bool, key: str | None = None
) -> NotDuplicateAccepted:
    check_hash(a, "a")
    check_hash(b, "b")
    if a == b:
        raise bad_parameter("b", "is the same content as a")
    unknown = await db.read(ctx.settings.readmodel_dir, lambda c: _unknown(c, [a, b]), [a, b])
    if unknown:
        raise NotFoundException(detail=f"unknown content_hash {', '.join(unknown)}")
    event_log = ctx.require_log()  # LogError: 503 (projections.api.errors)
    lo, hi = sorted((a, b))
    ev = NotDuplicate(a=lo, b=hi, undo=undo)
    published = await event_log.publish(
        ev, msg_id=decision_msg_id(ev, key), dedupe_after=0 if key else None
    )
    return NotDuplicateAccepted(
        seq=published.seq, duplicate=published.duplicate, a=lo, b=hi, undo=undo
    )


_RECORD_RESPONSES = {
    **error_responses(400, 404, *WRITES),
    503: ResponseSpec(
        ErrorDetail, description="No NATS connection (or the publish failed), or no read model."
    ),
}


class DuplicatesController(Controller):
    path = "/duplicates"
    tags = ("duplicates",)

    @get(
        "/",
        summary="Duplicate groups",
        response_description="Exact (DuplicatePage) or near (NearDuplicatePage) groups, by kind.",
        description="kind=exact: contents held by two or more live locations, ordered by "
        "wasted bytes (size * (count - 1)) descending, then hash; with `library`, only "
        "locations in that library count. kind=near: groups of contents whose 64-bit "
        "pHashes are within `max_distance` bits, linked pair by pair (union-find), "
        "leaving out pairs marked not-duplicate; with `window`, only pairs taken at most "
        "that many seconds apart (0: re-encodes and copies, which keep their dates; a few "
        "seconds: also bursts). Near groups are ordered by member count descending, then "
        "first member hash; with `library`, only contents with a location there take part.",
        responses=error_responses(400),
        operation_class=AnyOfOperation,
    )
    async def list_duplicates(
        self,
        ctx: Ctx,
        kind: Annotated[
            Literal["exact", "near"],
            Parameter(description="'exact': same BLAKE3; 'near': similar pHash."),
        ] = "exact",
        max_distance: Annotated[
            int | None,
            Parameter(
                ge=0,
                schema_extra={"minimum": 0},  # Litestar drops a 0 bound
                le=MAX_MAX_DISTANCE,
                description=f"kind=near: largest Hamming distance between two pHashes "
                f"(0-{MAX_MAX_DISTANCE}, default {DEFAULT_MAX_DISTANCE}).",
            ),
        ] = None,
        window: Annotated[
            float | None,
            Parameter(
                ge=0,
                schema_extra={"minimum": 0},  # Litestar drops a 0 bound
                description="kind=near: only pairs whose dates taken are at most this many "
                "seconds apart (wall-clock); pairs without both dates are left out.",
            ),
        ] = None,
        library: Annotated[
            str | None, Parameter(description=LIBRARY_DESCRIPTION, pattern=NOT_BLANK)
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Groups per page.")] = 100,
        cursor: Annotated[
            str | None,
            Parameter(
                description="The `next` of the previous page (made with the same kind, "
                "max_distance and window).",
                pattern=CURSOR_PATTERN,
            ),
        ] = None,
    ) -> DuplicatePage | NearDuplicatePage:
        if kind == "near":
            return await self._near(ctx, max_distance, window, library, limit, cursor)
        if max_distance is not None:
            raise bad_parameter("max_distance", "only applies with kind=near")
        if window is not None:
            raise bad_parameter("window", "only applies with kind=near")
        after = exact_after(cursor) if cursor is not None else None
        found = await db.read(
            ctx.settings.readmodel_dir, lambda c: exact_groups(c, library, after, limit + 1), []
        )
        nxt = None
        if len(found) > limit:
            last = found[limit - 1]
            nxt = encode_cursor({"w": last.wasted_bytes, "h": last.content_hash})
        return DuplicatePage(items=found[:limit], next=nxt)

    @staticmethod
    async def _near(
        ctx: ApiContext,
        max_distance: int | None,
        window: float | None,
        library: str | None,
        limit: int,
        cursor: str | None,
    ) -> NearDuplicatePage:
        d = DEFAULT_MAX_DISTANCE if max_distance is None else max_distance
        after = near_after(cursor, d, window) if cursor is not None else None
        found = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: near_groups(c, library, d, window, after, limit + 1),
            [],
        )
        nxt = None
        if len(found) > limit:
            last = found[limit - 1]
            first = min(m.content_hash for m in last.members)
            nxt = encode_cursor({"k": "near", "n": last.count, "h": first, "d": d, "w": window})
        return NearDuplicatePage(
            kind="near", max_distance=d, window=window, items=found[:limit], next=nxt
        )

    @post(
        "/not-duplicate",
        status_code=202,
        summary="Mark two contents as not duplicates",
        description="Publishes a NotDuplicate event (or, with undo, takes one back). The API "
        "never writes the read model: once the projector has applied the event (seq), "
        "the pair no longer links near-duplicate groups.",
        responses=_RECORD_RESPONSES,
        operation_class=body_operation("NotDuplicateRequest"),
    )
    async def not_duplicate(
        self,
        ctx: Ctx,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
    ) -> NotDuplicateAccepted:
        data = await decode_body(request, NotDuplicateRequest)
        return await _record(ctx, data.a, data.b, data.undo, idempotency_key)

    @delete(
        "/not-duplicate",
        status_code=202,
        summary="Take back a not-duplicate decision",
        description="The same as POST with undo=true, the pair given as query parameters.",
        responses=_RECORD_RESPONSES,
    )
    async def undo_not_duplicate(
        self,
        ctx: Ctx,
        a: Annotated[
            str, Parameter(description="Content hash of one of the pair.", pattern=HASH_PATTERN)
        ],
        b: Annotated[
            str,
            Parameter(description="Content hash of the other (not a).", pattern=HASH_PATTERN),
        ],
        idempotency_key: IdempotencyKey = None,
    ) -> NotDuplicateAccepted:
        return await _record(ctx, a, b, True, idempotency_key)
