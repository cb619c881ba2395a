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

import re
import sqlite3
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from litestar import Controller, Request, delete, get, post
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from eventsvc.core.events import NotDuplicate
from eventsvc.core.ids import HASH_RE
from projections import near, readmodel
from projections.api import db, rows
from projections.api.context import ApiContext, Ctx
from projections.api.errors import WRITES, bad_parameter, error_responses
from projections.api.filters import LIBRARY_DESCRIPTION, library_clause, resolve_library
from projections.api.idempotency import IdempotencyKey, decision_msg_id
from projections.api.paging import decode_cursor, encode_cursor
from projections.api.params import (
    CURSOR_PATTERN,
    HASH_PATTERN,
    NOT_BLANK,
    AnyOfOperation,
    body_operation,
    decode_body,
)
from projections.api.photos import check_hash
from projections.api.schemas import (
    DuplicateGroup,
    DuplicatePage,
    ErrorDetail,
    NearDuplicateGroup,
    NearDuplicateMember,
    NearDuplicatePage,
    NearPair,
    NotDuplicateAccepted,
    NotDuplicateRequest,
)

__all__ = ["DEFAULT_MAX_DISTANCE", "DuplicatesController"]

DEFAULT_MAX_DISTANCE = 6
MAX_MAX_DISTANCE = 16
_PHASH = re.compile(r"^[0-9a-f]{16}$")
_CHUNK = 500  # SQLite parameters per IN (...)


# ------------------------------------------------------------------ exact


def _library_sql(
    conn: sqlite3.Connection, column: str, library: str | None
) -> tuple[str, list[Any]]:
    """`` AND <the library filter>`` (an id or a name), or nothing without one."""
    if library is None:
        return "", []
    sql, params = library_clause(column, resolve_library(conn, library))
    return " AND " + sql, params


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
    lib_sql, lib_params = _library_sql(conn, "library_id", library)
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
    by_hash = _locations(conn, hashes, library)
    return [
        DuplicateGroup(
            content_hash=g["content_hash"],
            size=g["size"],
            count=g["n"],
            wasted_bytes=g["wasted"],
            locations=by_hash[g["content_hash"]],
        )
        for g in groups
    ]


def _locations(
    conn: sqlite3.Connection, hashes: list[str], library: str | None
) -> dict[str, list[Any]]:
    lib_sql, lib_params = _library_sql(conn, "library_id", library)
    by_hash: dict[str, list[Any]] = {h: [] for h in hashes}
    for start in range(0, len(hashes), _CHUNK):
        part = hashes[start : start + _CHUNK]
        marks = ",".join("?" * len(part))
        for r in conn.execute(
            f"SELECT {rows.LOCATION_COLUMNS} FROM files WHERE content_hash IN ({marks}){lib_sql}"
            " ORDER BY library_id, path, file_id",
            [*part, *lib_params],
        ):
            by_hash[r["content_hash"]].append(rows.location(r))
    return by_hash


# ------------------------------------------------------------------ near

_CACHE: OrderedDict[tuple[Any, ...], tuple[list[str], near.Pairs]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def _candidates(
    conn: sqlite3.Connection, library: str | None, max_distance: int
) -> tuple[list[str], near.Pairs]:
    """Contents with a usable pHash and a live location, and their pairs within the
    distance. Cached per (generation, checkpoint, library, distance): paging through
    the groups of one read-model state searches once."""
    db_file = conn.execute("PRAGMA database_list").fetchone()[2]
    key = (db_file, readmodel.checkpoint(conn), library, max_distance)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    lib_sql, lib_params = _library_sql(conn, "f.library_id", library)
    found = conn.execute(
        "SELECT c.content_hash, c.phash FROM content AS c WHERE c.phash IS NOT NULL"
        f" AND EXISTS (SELECT 1 FROM files AS f WHERE f.content_hash = c.content_hash{lib_sql})"
        " ORDER BY c.content_hash",
        lib_params,
    ).fetchall()
    hashes, phashes = [], []
    for r in found:
        ph = str(r["phash"]).lower()
        if _PHASH.fullmatch(ph):  # 64-bit hashes only; anything else cannot be compared
            hashes.append(r["content_hash"])
            phashes.append(ph)
    pairs = near.near_pairs(phashes, max_distance)
    with _CACHE_LOCK:
        _CACHE[key] = (hashes, pairs)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return hashes, pairs


def _wall(text: str | None) -> datetime | None:
    """A date_taken as naive wall-clock time (an offset or 'Z' is dropped)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def _dates(
    conn: sqlite3.Connection, hashes: list[str], library: str | None
) -> dict[str, str | None]:
    """Earliest date_taken among each content's live locations (in the library)."""
    lib_sql, lib_params = _library_sql(conn, "library_id", library)
    out: dict[str, str | None] = dict.fromkeys(hashes)
    for start in range(0, len(hashes), _CHUNK):
        part = hashes[start : start + _CHUNK]
        marks = ",".join("?" * len(part))
        for r in conn.execute(
            f"SELECT content_hash, min(date_taken) AS taken FROM files"
            f" WHERE content_hash IN ({marks}){lib_sql} GROUP BY content_hash",
            [*part, *lib_params],
        ):
            out[r["content_hash"]] = r["taken"]
    return out


def _near_groups(
    conn: sqlite3.Connection,
    library: str | None,
    max_distance: int,
    window: float | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[NearDuplicateGroup]:
    hashes, pairs = _candidates(conn, library, max_distance)
    if not len(pairs):
        return []
    involved = np.unique(np.concatenate((pairs.i, pairs.j))).tolist()
    taken = _dates(conn, [hashes[k] for k in involved], library)
    wall = {h: _wall(t) for h, t in taken.items()}
    refused = {
        (r["a"], r["b"]) for r in conn.execute("SELECT a, b FROM not_duplicates")
    }  # a < b, as hashes are sorted
    kept: list[tuple[int, int, int, float | None]] = []
    for i, j, d in pairs.as_tuples():
        a, b = hashes[i], hashes[j]
        if (a, b) in refused:
            continue
        ta, tb = wall[a], wall[b]
        apart = abs((ta - tb).total_seconds()) if ta is not None and tb is not None else None
        if window is not None and (apart is None or apart > window):
            continue
        kept.append((i, j, d, apart))
    comps = near.components(len(hashes), [k[0] for k in kept], [k[1] for k in kept])
    comps.sort(key=lambda g: (-len(g), hashes[g[0]]))
    if after is not None:
        comps = [g for g in comps if (-len(g), hashes[g[0]]) > (-after[0], after[1])]
    page = comps[:limit]
    if not page:
        return []
    members = [hashes[k] for g in page for k in g]
    info = _member_info(conn, members)
    locs = _locations(conn, members, library)
    edges: dict[int, list[NearPair]] = {}
    where = {k: n for n, g in enumerate(page) for k in g}
    for i, j, d, apart in kept:
        if i in where:
            edges.setdefault(where[i], []).append(
                NearPair(a=hashes[i], b=hashes[j], distance=d, seconds_apart=apart)
            )
    out = []
    for n, g in enumerate(page):
        group_members = [
            NearDuplicateMember(
                content_hash=hashes[k],
                **info[hashes[k]],
                date_taken=taken[hashes[k]],
                locations=locs[hashes[k]],
            )
            for k in g
        ]
        group_members.sort(key=lambda m: (m.date_taken is None, m.date_taken or "", m.content_hash))
        out.append(
            NearDuplicateGroup(
                count=len(g),
                members=group_members,
                pairs=sorted(edges.get(n, []), key=lambda p: (p.distance, p.a, p.b)),
            )
        )
    return out


def _member_info(conn: sqlite3.Connection, hashes: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(hashes), _CHUNK):
        part = hashes[start : start + _CHUNK]
        marks = ",".join("?" * len(part))
        for r in conn.execute(
            "SELECT c.content_hash, c.phash, c.size, c.media_kind, c.width, c.height,"
            " m.width AS m_width, m.height AS m_height, m.orientation, t.sizes"
            " FROM content AS c LEFT JOIN media AS m USING (content_hash)"
            " LEFT JOIN thumbnails AS t USING (content_hash)"
            f" WHERE c.content_hash IN ({marks})",
            part,
        ):
            width, height = rows.upright(
                (r["width"], r["height"]), (r["m_width"], r["m_height"]), r["orientation"]
            )
            thumbs = rows.thumbnail_urls(r["content_hash"], r["sizes"])
            out[r["content_hash"]] = {
                "phash": str(r["phash"]).lower(), "size": r["size"],
                "media_kind": r["media_kind"], "width": width, "height": height,
                "thumbnail": next(iter(thumbs.values()), None),
            }  # fmt: skip
    return out


def _near_after(cursor: str, max_distance: int, window: float | None) -> tuple[int, str]:
    data = decode_cursor(cursor)
    count, first = data.get("n"), data.get("h")
    if (
        data.get("k") != "near"
        or type(count) is not int
        or not isinstance(first, str)
        or not HASH_RE.fullmatch(first)
    ):
        raise bad_parameter("cursor", "not a near-duplicates cursor handed out by this API")
    if data.get("d") != max_distance or data.get("w") != window:
        raise bad_parameter(
            "cursor",
            f"it was made for max_distance={data.get('d')!r}, window={data.get('w')!r}",
        )
    return count, first


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
        after = _after(cursor) if cursor is not None else None
        found = await db.read(
            ctx.settings.readmodel_dir, lambda c: _groups(c, library, after, limit + 1), []
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
        after = _near_after(cursor, d, window) if cursor is not None else None
        found = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: _near_groups(c, library, d, window, after, limit + 1),
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
