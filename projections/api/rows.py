"""Read-model rows to response structs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from projections.api.schemas import Exif, Gps, Location, Photo

__all__ = [
    "LOCATION_COLUMNS",
    "MEDIA_COLUMNS",
    "PHOTO_COLUMNS",
    "PHOTO_JOINS",
    "THUMBNAIL_SIZES",
    "exif",
    "iso_from_ns",
    "location",
    "person_tags",
    "photo",
    "thumbnail_url",
    "thumbnail_urls",
    "upright",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOCATION_COLUMNS = (
    "file_id, library_id, path, size, mtime_ns, media_kind, content_hash, date_taken, date_source"
)
PHOTO_COLUMNS = (
    "f.file_id, f.library_id, f.path, f.size, f.mtime_ns, f.media_kind, f.content_hash,"
    " f.date_taken, f.date_source, c.width AS c_width, c.height AS c_height,"
    " m.width AS m_width, m.height AS m_height, m.orientation, m.make, m.model,"
    " m.gps_lat, m.gps_lon, m.gps_alt, t.sizes AS thumb_sizes"
)
PHOTO_JOINS = (
    " LEFT JOIN content AS c ON c.content_hash = f.content_hash"
    " LEFT JOIN media AS m ON m.content_hash = f.content_hash"
    " LEFT JOIN thumbnails AS t ON t.content_hash = f.content_hash"
)
MEDIA_COLUMNS = (
    "media_kind", "make", "model", "lens", "width", "height", "orientation", "gps_lat",
    "gps_lon", "gps_alt", "focal_length", "f_number", "exposure_time", "iso", "date_original",
    "date_digitized", "utc_offset", "duration", "video_codec", "audio_codec", "rotation",
    "creation_time", "date_taken", "date_source", "warnings",
)  # fmt: skip
THUMBNAIL_SIZES = ("small", "large")
"""The sizes the thumbnail endpoint serves, smallest first."""


def iso_from_ns(ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC (microsecond precision)."""
    secs, rem = divmod(ns, 1_000_000_000)
    return (_EPOCH + timedelta(seconds=secs, microseconds=rem // 1000)).isoformat()


def thumbnail_url(content_hash: str, size: str) -> str:
    return f"/photos/{content_hash}/thumbnail?size={size}"


def thumbnail_urls(content_hash: str | None, sizes_json: str | None) -> dict[str, str]:
    """Size name -> URL path, for the sizes a ThumbnailReady recorded that we serve."""
    if content_hash is None or not sizes_json:
        return {}
    try:
        sizes = json.loads(sizes_json)
    except ValueError:
        return {}
    if not isinstance(sizes, dict):
        return {}
    return {s: thumbnail_url(content_hash, s) for s in THUMBNAIL_SIZES if s in sizes}


def upright(
    decoded: tuple[int | None, int | None],
    stored: tuple[int | None, int | None],
    orientation: int | None,
) -> tuple[int | None, int | None]:
    """Display size (after orientation): the decoded image's full upright size, else the
    header's stored size turned by its orientation. A decoded size that is a reduced
    copy of the header's (recorded by media derivers before issue 13 from a draft decode)
    gives way to the header's."""
    w, h = stored
    if orientation is not None and 5 <= orientation <= 8:
        w, h = h, w
    dw, dh = decoded
    if dw is None or dh is None:
        return w, h
    if w and h and w > dw and h > dh and abs(w * dh - h * dw) <= max(w, h):
        return w, h  # same shape, larger: the decode was reduced
    return dw, dh


def location(row: sqlite3.Row) -> Location:
    return Location(
        file_id=row["file_id"], library=row["library_id"], path=row["path"], size=row["size"],
        mtime_ns=row["mtime_ns"], mtime=iso_from_ns(row["mtime_ns"]),
        date_taken=row["date_taken"], date_source=row["date_source"],
    )  # fmt: skip


def person_tags(conn: sqlite3.Connection, hashes: Iterable[str | None]) -> dict[str, list[str]]:
    """content_hash -> its tags, in one query for all of ``hashes``: the names of the
    named, not hidden people with a face not rejected in it (``faces.person_id`` already
    holds the merge target) and the user's tags (``user_tags``, issue 16), sorted
    case-insensitively, each once (a person's spelling wins over a user tag's)."""
    wanted = sorted({x for x in hashes if x})
    if not wanted:
        return {}
    marks = ",".join("?" * len(wanted))
    names: dict[str, dict[str, str]] = {}
    for content_hash, name in conn.execute(
        "SELECT DISTINCT fc.content_hash, p.name FROM faces AS fc"
        " JOIN people AS p ON p.person_id = fc.person_id"
        f" WHERE fc.content_hash IN ({marks}) AND fc.rejected = 0"
        " AND p.hidden = 0 AND p.name IS NOT NULL"
        f" UNION ALL SELECT content_hash, name FROM user_tags WHERE content_hash IN ({marks})",
        [*wanted, *wanted],
    ):
        names.setdefault(content_hash, {}).setdefault(name.casefold(), name)
    return {h: sorted(n.values(), key=lambda x: (x.casefold(), x)) for h, n in names.items()}


def photo(row: sqlite3.Row, tags: list[str]) -> Photo:
    """A row selected with PHOTO_COLUMNS ... PHOTO_JOINS, with its content's tags."""
    width, height = upright(
        (row["c_width"], row["c_height"]), (row["m_width"], row["m_height"]), row["orientation"]
    )
    gps = None
    if row["gps_lat"] is not None and row["gps_lon"] is not None:
        gps = Gps(lat=row["gps_lat"], lon=row["gps_lon"], alt=row["gps_alt"])
    thumbs = thumbnail_urls(row["content_hash"], row["thumb_sizes"])
    return Photo(
        file_id=row["file_id"], library=row["library_id"], path=row["path"], size=row["size"],
        mtime_ns=row["mtime_ns"], mtime=iso_from_ns(row["mtime_ns"]),
        media_kind=row["media_kind"], content_hash=row["content_hash"],
        date_taken=row["date_taken"], date_source=row["date_source"], width=width,
        height=height, make=row["make"], model=row["model"], gps=gps,
        thumbnail=next(iter(thumbs.values()), None), tags=tags,
    )  # fmt: skip


def exif(row: sqlite3.Row | None) -> Exif | None:
    """The media row (selected with MEDIA_COLUMNS) as Exif."""
    if row is None:
        return None
    values: dict[str, Any] = {c: row[c] for c in MEDIA_COLUMNS}
    try:
        warnings = json.loads(values["warnings"]) if values["warnings"] else []
    except ValueError:
        warnings = [values["warnings"]]
    values["warnings"] = [str(w) for w in warnings] if isinstance(warnings, list) else []
    return Exif(**values)
