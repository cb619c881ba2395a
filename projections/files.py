"""Appliers for library files and what is derived from their content: locations,
library states, content hashes, the date-taken waterfall, media facts (EXIF, container),
thumbnails, CLIP vectors, playlists, not-duplicate decisions and derivation failures.

Each applier is a pure function of the event and the rows (replay gives the same rows);
``APPLIERS`` maps event types to them; :mod:`projections.projector` merges it with
:mod:`projections.people`'s.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np

from eventsvc.core.dates import date_from_filename
from eventsvc.core.events import (
    ClipEncoded,
    DerivationFailed,
    Event,
    ExifExtracted,
    FileMissing,
    FileSeen,
    HashComputed,
    LibraryOnline,
    LibraryStale,
    NotDuplicate,
    PlaylistReady,
    PlaylistRemoved,
    ThumbnailReady,
)

__all__ = ["APPLIERS", "resolve_all_dates"]


def _iso(event: Event) -> str:
    return event.occurred_at.isoformat()


def _file_seen(conn: sqlite3.Connection, seq: int, e: FileSeen) -> None:
    # The date-taken waterfall (see _DATES_SQL) is folded into the upsert: a new location
    # has no content hash yet; a known one keeps its hash (and so its media date) only
    # when size and mtime are unchanged.
    name_date = date_from_filename(e.path)
    conn.execute(
        """INSERT INTO files (file_id, library_id, path, raw_path, size, mtime_ns, media_kind,
                              seen_seq, seen_at, content_hash, hash_seq, name_date,
                              date_taken, date_source)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, ?10,
                   coalesce(?10, strftime('%Y-%m-%dT%H:%M:%SZ', ?6 / 1000000000, 'unixepoch')),
                   CASE WHEN ?10 IS NOT NULL THEN 'filename' ELSE 'filesystem' END)
           ON CONFLICT (file_id) DO UPDATE SET
              path = excluded.path, raw_path = excluded.raw_path,
              seen_seq = excluded.seen_seq, seen_at = excluded.seen_at,
              media_kind = excluded.media_kind,
              content_hash = CASE WHEN files.size = excluded.size
                                   AND files.mtime_ns = excluded.mtime_ns
                                  THEN files.content_hash END,
              hash_seq = CASE WHEN files.size = excluded.size
                               AND files.mtime_ns = excluded.mtime_ns
                              THEN files.hash_seq END,
              size = excluded.size, mtime_ns = excluded.mtime_ns,
              name_date = excluded.name_date,
              (date_taken, date_source) = (
                SELECT coalesce(m.date_taken, excluded.name_date,
                                strftime('%Y-%m-%dT%H:%M:%SZ',
                                         excluded.mtime_ns / 1000000000, 'unixepoch')),
                       CASE WHEN m.date_taken IS NOT NULL THEN m.date_source
                            WHEN excluded.name_date IS NOT NULL THEN 'filename'
                            ELSE 'filesystem' END
                FROM (SELECT 1) LEFT JOIN media m
                  ON m.content_hash = CASE WHEN files.size = excluded.size
                                            AND files.mtime_ns = excluded.mtime_ns
                                           THEN files.content_hash END)""",
        (
            e.file_id,
            e.library_id,
            e.path,
            e.raw_path,
            e.size,
            e.mtime_ns,
            e.media_kind,
            seq,
            _iso(e),
            name_date.isoformat() if name_date else None,
        ),
    )


def _file_missing(conn: sqlite3.Connection, seq: int, e: FileMissing) -> None:
    conn.execute("DELETE FROM files WHERE file_id = ?", (e.file_id,))


def _library(conn: sqlite3.Connection, seq: int, e: LibraryStale | LibraryOnline) -> None:
    state = "stale" if isinstance(e, LibraryStale) else "online"
    reason = e.reason if isinstance(e, LibraryStale) else None
    conn.execute(
        """INSERT INTO libraries (library_id, name, root, state, reason, state_since, state_seq)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (library_id) DO UPDATE SET name = excluded.name, root = excluded.root,
              state = excluded.state, reason = excluded.reason,
              state_since = excluded.state_since, state_seq = excluded.state_seq""",
        (e.library_id, e.name, e.root, state, reason, _iso(e), seq),
    )


def _hash_computed(conn: sqlite3.Connection, seq: int, e: HashComputed) -> None:
    # Content identity only: perceptual hashes and dimensions come from ThumbnailReady
    # (the media deriver's decode), a failed decode from its DerivationFailed.
    conn.execute(
        """INSERT INTO content (content_hash, size, media_kind, first_seq) VALUES (?, ?, ?, ?)
           ON CONFLICT (content_hash) DO NOTHING""",
        (e.content_hash, e.size, e.media_kind, seq),
    )
    # Only the version of the file that was hashed gets the hash.
    conn.execute(
        """UPDATE files SET content_hash = ?, hash_seq = ?
           WHERE file_id = ? AND size = ? AND mtime_ns = ?""",
        (e.content_hash, seq, e.file_id, e.size, e.mtime_ns),
    )
    if not getattr(conn, "deferred_dates", False):
        _resolve_dates(conn, "file_id = ?", (e.file_id,))


def _failed(conn: sqlite3.Connection, seq: int, e: DerivationFailed) -> None:
    conn.execute(
        """INSERT OR REPLACE INTO failures (seq, stage, operation, reason, permanent,
               input_subject, deliveries, file_id, content_hash, library_id, occurred_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            seq,
            e.stage,
            e.operation,
            e.reason[:2000],
            int(e.permanent),
            e.input_subject,
            e.deliveries,
            e.file_id,
            e.content_hash,
            e.library_id,
            _iso(e),
        ),
    )


_DATES_SQL = """
UPDATE files SET (date_taken, date_source) = (
    SELECT coalesce(m.date_taken, files.name_date,
                    strftime('%Y-%m-%dT%H:%M:%SZ', files.mtime_ns / 1000000000, 'unixepoch')),
           CASE WHEN m.date_taken IS NOT NULL THEN m.date_source
                WHEN files.name_date IS NOT NULL THEN 'filename'
                ELSE 'filesystem' END
    FROM (SELECT 1) LEFT JOIN media m ON m.content_hash = files.content_hash)
WHERE """


def _resolve_dates(conn: sqlite3.Connection, where: str, args: tuple[object, ...]) -> None:
    """The date-taken waterfall per location: the content's own date (EXIF, container),
    else a date in the file name, else the file's mtime. Re-run when a source arrives."""
    conn.execute(_DATES_SQL + where, args)


def resolve_all_dates(conn: sqlite3.Connection) -> None:
    """The waterfall once for every location with a content: the end of a rebuild whose
    appliers deferred it (``BulkConnection.deferred_dates``). A location without a
    content hash already has its date: FileSeen sets it, and only a content's media can
    change it."""
    _resolve_dates(conn, "content_hash IS NOT NULL", ())


_MEDIA_COLUMNS: tuple[str, ...] = (
    "make",
    "model",
    "lens",
    "width",
    "height",
    "orientation",
    "gps_lat",
    "gps_lon",
    "gps_alt",
    "focal_length",
    "f_number",
    "exposure_time",
    "iso",
    "date_original",
    "date_digitized",
    "utc_offset",
    "duration",
    "video_codec",
    "audio_codec",
    "rotation",
    "creation_time",
)


def _exif(conn: sqlite3.Connection, seq: int, e: ExifExtracted) -> None:
    values = [getattr(e.fields, c) for c in _MEDIA_COLUMNS]
    cols = ", ".join(_MEDIA_COLUMNS)
    marks = ", ".join("?" for _ in _MEDIA_COLUMNS)
    conn.execute(
        f"""INSERT OR REPLACE INTO media (content_hash, media_kind, {cols}, date_taken,
                                         date_source, warnings, exif_seq)
            VALUES (?, ?, {marks}, ?, ?, ?, ?)""",
        (
            e.content_hash,
            e.media_kind,
            *values,
            e.date_taken,
            e.date_source,
            json.dumps(e.warnings) if e.warnings else None,
            seq,
        ),
    )
    if not getattr(conn, "deferred_dates", False):
        _resolve_dates(conn, "content_hash = ?", (e.content_hash,))


def _thumbnail(conn: sqlite3.Connection, seq: int, e: ThumbnailReady) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO thumbnails (content_hash, sizes, width, height, seq)"
        " VALUES (?, ?, ?, ?, ?)",
        (e.content_hash, json.dumps(e.sizes, sort_keys=True), e.width, e.height, seq),
    )
    if e.phash is not None:  # perceptual hashes from the image deriver's decode
        conn.execute(
            "UPDATE content SET phash = ?, dhash = ?, decode_error = NULL,"
            " width = coalesce(?, width), height = coalesce(?, height) WHERE content_hash = ?",
            (e.phash, e.dhash, e.width, e.height, e.content_hash),
        )


def _not_duplicate(conn: sqlite3.Connection, seq: int, e: NotDuplicate) -> None:
    a, b = sorted((e.a, e.b))
    if e.undo:
        conn.execute("DELETE FROM not_duplicates WHERE a = ? AND b = ?", (a, b))
    else:
        conn.execute(
            "INSERT OR REPLACE INTO not_duplicates (a, b, seq) VALUES (?, ?, ?)", (a, b, seq)
        )


def _clip(conn: sqlite3.Connection, seq: int, e: ClipEncoded) -> None:
    vec = np.asarray(e.vector, dtype="<f4")
    norm = float(np.linalg.norm(vec))
    if norm > 0:
        vec = vec / norm  # unit rows: ranking is a dot product
    conn.execute(
        "INSERT OR REPLACE INTO clip_vectors (model_version, content_hash, dim, vector, seq)"
        " VALUES (?, ?, ?, ?, ?)",
        (e.model_version, e.content_hash, e.dim, vec.astype("<f4").tobytes(), seq),
    )


def _playlist_removed(conn: sqlite3.Connection, seq: int, e: PlaylistRemoved) -> None:
    conn.execute("DELETE FROM playlists WHERE content_hash = ?", (e.content_hash,))


def _playlist(conn: sqlite3.Connection, seq: int, e: PlaylistReady) -> None:
    conn.execute(
        """INSERT OR REPLACE INTO playlists (content_hash, playlist_path, duration, segments,
               codecs, mode, reason, width, height, poster, preview, seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            e.content_hash,
            e.playlist_path,
            e.duration,
            e.segments,
            e.codecs,
            e.mode,
            e.reason or None,
            e.width,
            e.height,
            e.poster,
            e.preview,
            seq,
        ),
    )


APPLIERS = {
    FileSeen: _file_seen,
    FileMissing: _file_missing,
    LibraryStale: _library,
    LibraryOnline: _library,
    HashComputed: _hash_computed,
    DerivationFailed: _failed,
    ExifExtracted: _exif,
    ThumbnailReady: _thumbnail,
    NotDuplicate: _not_duplicate,
    ClipEncoded: _clip,
    PlaylistReady: _playlist,
    PlaylistRemoved: _playlist_removed,
}
