"""The read side's queries about photos: the /photos listing (filtered, sorted, keyset
paged), one content's detail, and whether a content is known. The API's photo routes
(:mod:`projections.api.photos`) and the web pages use these."""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

from eventsvc.core.ids import HASH_RE
from projections.api import geo, rows
from projections.api.errors import bad_parameter
from projections.api.filters import Query
from projections.api.paging import decode_cursor, encode_cursor
from projections.api.schemas import Photo, PhotoDetail, PhotoPerson

__all__ = [
    "Sort",
    "after_cursor",
    "check_hash",
    "is_known",
    "list_rows",
    "photo_detail",
    "photo_page",
]

Sort = Literal["path", "-path", "mtime", "-mtime", "taken", "-taken"]
_COLUMN = {"path": "path", "mtime": "mtime_ns", "taken": "date_taken"}
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "path": (str,), "mtime": (int,), "taken": (str, type(None)),
}  # fmt: skip


def check_hash(content_hash: str, name: str = "content_hash") -> str:
    if not HASH_RE.fullmatch(content_hash):
        raise bad_parameter(name, "must be 64 lowercase hex characters")
    return content_hash


def after_cursor(cursor: str, sort: Sort) -> tuple[Any, str]:
    data = decode_cursor(cursor)
    key, file_id = data.get("k"), data.get("id")
    if data.get("s") != sort:
        raise bad_parameter("cursor", f"it was made for sort={data.get('s')!r}, not {sort!r}")
    if type(key) not in _KEY_TYPES[sort.lstrip("-")] or not isinstance(file_id, str):
        raise bad_parameter("cursor", "not a cursor handed out by this API")
    return key, file_id


def _select(q: Query, extra: list[str], extra_params: list[Any], order: str,
            limit: int) -> tuple[str, list[Any]]:  # fmt: skip
    where = q.where + extra
    sql = (
        f"SELECT {rows.PHOTO_COLUMNS} FROM files AS f{rows.PHOTO_JOINS}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {order} LIMIT ?"
    )
    return sql, [*q.params, *extra_params, limit]


def list_rows(
    conn: sqlite3.Connection, q: Query, sort: Sort, after: tuple[Any, str] | None, limit: int
) -> list[sqlite3.Row]:
    """Up to ``limit`` rows in ``sort`` order after the cursor position ``after``."""
    if q.near is not None:
        conn.create_function("haversine_km", 4, geo.haversine_km, deterministic=True)
    desc = sort.startswith("-")
    direction, cmp = ("DESC", "<") if desc else ("ASC", ">")
    col = "f." + _COLUMN[sort.lstrip("-")]
    if sort.lstrip("-") != "taken":
        extra, extra_params = [], []
        if after is not None:
            extra, extra_params = [f"({col}, f.file_id) {cmp} (?, ?)"], list(after)
        sql, params = _select(
            q, extra, extra_params, f"{col} {direction}, f.file_id {direction}", limit
        )
        return conn.execute(sql, params).fetchall()
    # By date taken, rows without one last: two index-ordered passes over files_by_taken.
    found: list[sqlite3.Row] = []
    if after is None or after[0] is not None:
        extra = ["f.date_taken IS NOT NULL"]
        extra_params: list[Any] = []
        if after is not None:
            extra.append(f"(f.date_taken, f.file_id) {cmp} (?, ?)")
            extra_params = list(after)
        sql, params = _select(
            q, extra, extra_params, f"f.date_taken {direction}, f.file_id {direction}", limit
        )
        found = conn.execute(sql, params).fetchall()
    if len(found) < limit:
        extra = ["f.date_taken IS NULL"]
        extra_params = []
        if after is not None and after[0] is None:
            extra.append(f"f.file_id {cmp} ?")
            extra_params = [after[1]]
        sql, params = _select(q, extra, extra_params, f"f.file_id {direction}", limit - len(found))
        found += conn.execute(sql, params).fetchall()
    return found


def photo_page(
    conn: sqlite3.Connection, q: Query, sort: Sort, after: tuple[Any, str] | None, limit: int
) -> tuple[list[Photo], str | None]:
    """One page of ``GET /photos``: up to ``limit`` photos after ``after``, and the
    cursor of the next page (None: this is the last)."""
    found = list_rows(conn, q, sort, after, limit + 1)
    tags = rows.person_tags(conn, (r["content_hash"] for r in found[:limit]))
    items = [rows.photo(r, tags.get(r["content_hash"], [])) for r in found[:limit]]
    nxt = None
    if len(found) > limit:
        last = found[limit - 1]
        key = last[_COLUMN[sort.lstrip("-")]]
        nxt = encode_cursor({"s": sort, "k": key, "id": last["file_id"]})
    return items, nxt


# ------------------------------------------------------------------ one content


def photo_detail(content_hash: str, conn: sqlite3.Connection) -> PhotoDetail | None:
    # Perceptual hashes and dimensions are the media deriver's (ThumbnailReady); while
    # there are none, its latest thumbnail failure says why.
    content = conn.execute(
        "SELECT c.size, c.media_kind, c.phash, c.dhash, c.width, c.height,"
        " CASE WHEN c.phash IS NULL THEN (SELECT f.reason FROM failures AS f"
        "  WHERE f.stage = 'media' AND f.operation = 'thumbnail'"
        "  AND f.content_hash = c.content_hash"
        "  ORDER BY f.seq DESC LIMIT 1) END AS decode_error"
        " FROM content AS c WHERE c.content_hash = ?",
        (content_hash,),
    ).fetchone()
    locs = conn.execute(
        f"SELECT {rows.LOCATION_COLUMNS} FROM files WHERE content_hash = ?"
        " ORDER BY library_id, path, file_id",
        (content_hash,),
    ).fetchall()
    if content is None and not locs:
        return None
    meta: dict[str, Any] = (
        dict(content)
        if content is not None
        else {"size": locs[0]["size"], "media_kind": locs[0]["media_kind"], "phash": None,
              "dhash": None, "width": None, "height": None, "decode_error": None}
    )  # fmt: skip
    media = conn.execute(
        f"SELECT {', '.join(rows.MEDIA_COLUMNS)} FROM media WHERE content_hash = ?",
        (content_hash,),
    ).fetchone()
    thumbs = conn.execute(
        "SELECT sizes FROM thumbnails WHERE content_hash = ?", (content_hash,)
    ).fetchone()
    people = conn.execute(
        "SELECT fc.person_id, p.name, fc.face_id FROM faces AS fc"
        " JOIN people AS p ON p.person_id = fc.person_id"
        " WHERE fc.content_hash = ? AND fc.rejected = 0 AND p.hidden = 0 ORDER BY fc.face_id",
        (content_hash,),
    ).fetchall()
    if media is not None:  # the same display size as /photos
        meta["width"], meta["height"] = rows.upright(
            (meta["width"], meta["height"]), (media["width"], media["height"]),
            media["orientation"],
        )  # fmt: skip
    return PhotoDetail(
        content_hash=content_hash,
        **meta,
        locations=[rows.location(r) for r in locs],
        exif=rows.exif(media),
        thumbnails=rows.thumbnail_urls(content_hash, thumbs["sizes"] if thumbs else None),
        tags=rows.person_tags(conn, [content_hash]).get(content_hash, []),
        people=[PhotoPerson(**dict(r)) for r in people],
    )


def is_known(conn: sqlite3.Connection, content_hash: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM content WHERE content_hash = ?", (content_hash,)).fetchone()
        or conn.execute("SELECT 1 FROM files WHERE content_hash = ?", (content_hash,)).fetchone()
    ) is not None
