"""Read-model rows to response structs."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from projections.api.schemas import Location, Photo

__all__ = ["LOCATION_COLUMNS", "iso_from_ns", "location", "photo"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOCATION_COLUMNS = "file_id, library_id, path, size, mtime_ns, media_kind, content_hash"


def iso_from_ns(ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC (microsecond precision)."""
    secs, rem = divmod(ns, 1_000_000_000)
    return (_EPOCH + timedelta(seconds=secs, microseconds=rem // 1000)).isoformat()


def location(row: sqlite3.Row) -> Location:
    return Location(
        file_id=row["file_id"], library=row["library_id"], path=row["path"], size=row["size"],
        mtime_ns=row["mtime_ns"], mtime=iso_from_ns(row["mtime_ns"]),
    )  # fmt: skip


def photo(row: sqlite3.Row) -> Photo:
    return Photo(
        file_id=row["file_id"], library=row["library_id"], path=row["path"], size=row["size"],
        mtime_ns=row["mtime_ns"], mtime=iso_from_ns(row["mtime_ns"]),
        media_kind=row["media_kind"], content_hash=row["content_hash"],
    )  # fmt: skip
