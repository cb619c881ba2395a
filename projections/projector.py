"""The projector: applies events to the read model, checkpointed in the same transaction.

``apply(conn, seq, event)`` is a pure function of the event and the rows; replaying the
log from sequence 1 into an empty generation gives the same rows as applying it live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eventsvc.core.errors import DecodeError
from eventsvc.core.events import (
    ClipEncoded,
    DerivationFailed,
    Event,
    ExifExtracted,
    FacesDetected,
    FileMissing,
    FileSeen,
    HashComputed,
    LibraryOnline,
    LibraryStale,
    NotDuplicate,
    PlaylistReady,
    PlaylistRemoved,
    ThumbnailReady,
    decode,
    face_id,
)
from eventsvc.core.log import EventLog, RawEvent
from eventsvc.media.dates import date_from_filename
from projections import people, readmodel
from projections.applier import BatchApplier, open_applier

__all__ = ["Projector", "apply", "apply_batch", "rebuild"]

log = logging.getLogger(__name__)


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
    conn.execute(
        """INSERT INTO content (content_hash, size, media_kind, phash, dhash, width, height,
                                decode_error, first_seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (content_hash) DO UPDATE SET
              decode_error = CASE WHEN content.phash IS NULL AND excluded.phash IS NOT NULL
                                  THEN NULL ELSE content.decode_error END,
              phash = coalesce(content.phash, excluded.phash),
              dhash = coalesce(content.dhash, excluded.dhash),
              width = coalesce(content.width, excluded.width),
              height = coalesce(content.height, excluded.height)""",
        (
            e.content_hash,
            e.size,
            e.media_kind,
            e.phash,
            e.dhash,
            e.width,
            e.height,
            e.decode_error,
            seq,
        ),
    )
    # Only the version of the file that was hashed gets the hash.
    conn.execute(
        """UPDATE files SET content_hash = ?, hash_seq = ?
           WHERE file_id = ? AND size = ? AND mtime_ns = ?""",
        (e.content_hash, seq, e.file_id, e.size, e.mtime_ns),
    )
    _resolve_dates(conn, "file_id = ?", (e.file_id,))


def _failed(conn: sqlite3.Connection, seq: int, e: DerivationFailed) -> None:
    conn.execute(
        """INSERT OR REPLACE INTO failures (seq, stage, reason, permanent, input_subject,
               deliveries, file_id, content_hash, library_id, occurred_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            seq,
            e.stage,
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


_MEDIA_COLUMNS = (
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
    values = [e.fields.get(c) for c in _MEDIA_COLUMNS]
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


Applier = Callable[[sqlite3.Connection, int, Event], None]
APPLIERS: dict[type[Event], Applier] = {
    FileSeen: _file_seen,  # type: ignore[dict-item]
    FileMissing: _file_missing,  # type: ignore[dict-item]
    LibraryStale: _library,  # type: ignore[dict-item]
    LibraryOnline: _library,  # type: ignore[dict-item]
    HashComputed: _hash_computed,  # type: ignore[dict-item]
    DerivationFailed: _failed,  # type: ignore[dict-item]
    ExifExtracted: _exif,  # type: ignore[dict-item]
    ThumbnailReady: _thumbnail,  # type: ignore[dict-item]
    NotDuplicate: _not_duplicate,  # type: ignore[dict-item]
    ClipEncoded: _clip,  # type: ignore[dict-item]
    **people.APPLIERS,  # type: ignore[dict-item]
    PlaylistReady: _playlist,  # type: ignore[dict-item]
    PlaylistRemoved: _playlist_removed,  # type: ignore[dict-item]
}


def _fact_key(event: Event) -> str | None:
    """The read model's key of a once-only fact (None: not a versioned fact)."""
    if isinstance(event, ClipEncoded):
        return f"{event.content_hash}:{event.model_version}"
    if isinstance(event, FacesDetected):
        return f"{event.content_hash}:{event.model}"
    if isinstance(event, ExifExtracted | ThumbnailReady | PlaylistReady):
        return event.content_hash
    return None


def _version_gate(conn: sqlite3.Connection, event: Event, key: str) -> bool:
    """Whether a versioned fact may be applied: never over a newer deriver's fact.
    ``fact_versions`` holds versions above 1 only (a fact without a row is version 1),
    so logs from before deriver versions rebuild to the same rows plus nothing."""
    version = event.fact_version
    row = conn.execute(
        "SELECT version FROM fact_versions WHERE fact = ? AND key = ?",
        (event.type, key),  # type: ignore[attr-defined]
    ).fetchone()
    have = int(row[0]) if row else 1
    if version < have:
        return False  # an older deriver's fact arriving late: the newer one stays
    if version > 1 and version != have:
        conn.execute(
            "INSERT OR REPLACE INTO fact_versions (fact, key, version) VALUES (?, ?, ?)",
            (event.type, key, version),  # type: ignore[attr-defined]
        )
        if isinstance(event, FacesDetected) and version > have:
            _replace_faces(conn, event)
    return True


def _replace_faces(conn: sqlite3.Connection, e: FacesDetected) -> None:
    """A newer face deriver's result replaces the older scan: the count, the faces it no
    longer finds, and the geometry of those it finds at the same index (their ids, and so
    any person they belong to, stay)."""
    conn.execute(
        "DELETE FROM face_scans WHERE content_hash = ? AND model = ?", (e.content_hash, e.model)
    )
    conn.execute(
        "DELETE FROM faces WHERE content_hash = ? AND model = ? AND idx >= ?",
        (e.content_hash, e.model, len(e.faces)),
    )
    for i, f in enumerate(e.faces):
        left, top, right, bottom = f.box
        conn.execute(
            "UPDATE faces SET box = ?, area = ?, score = ?, landmarks = ? WHERE face_id = ?",
            (
                json.dumps(list(f.box)),
                max(right - left, 0.0) * max(bottom - top, 0.0),
                f.score,
                json.dumps([list(p) for p in f.landmarks]),
                face_id(e.content_hash, e.model, i),
            ),
        )


def apply(conn: sqlite3.Connection, seq: int, event: Event) -> None:
    """Apply one event. Types this read model does not project are skipped; a once-only
    fact of an older deriver version than the one applied is too."""
    fn = APPLIERS.get(type(event))
    if fn is None:
        return
    key = _fact_key(event)
    if key is not None and not _version_gate(conn, event, key):
        return
    fn(conn, seq, event)


def apply_batch(conn: sqlite3.Connection, batch: Sequence[RawEvent]) -> int:
    """Apply a batch and move the checkpoint, in one transaction. Returns events applied.

    Events at or below the checkpoint (redeliveries) are skipped; bytes that do not
    decode are skipped with a warning (a deriver records them as DerivationFailed).
    """
    if not batch:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        last = readmodel.checkpoint(conn)
        n = 0
        for raw in batch:
            if raw.seq <= last:
                continue
            try:
                event = decode(raw.data, raw.headers)
            except DecodeError as exc:
                log.warning("projector: skipping seq %d on %s: %s", raw.seq, raw.subject, exc)
            else:
                apply(conn, raw.seq, event)
                n += 1
            last = raw.seq
        conn.execute("UPDATE checkpoint SET last_seq = ? WHERE id = 1", (last,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return n


@dataclass
class ProjectorProgress:
    path: Path | None = None
    last_seq: int = 0
    applied: int = 0


class Projector:
    """The live projector: follows the stream from the checkpoint, moves to new generations."""

    def __init__(self, event_log: EventLog, directory: Path, *, batch: int = 2000) -> None:
        self.event_log = event_log
        self.directory = Path(directory)
        self.batch = batch
        self.status = ProjectorProgress()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            path = readmodel.ensure_current(self.directory)
            try:
                conn = readmodel.open_writer(path)
            except readmodel.SchemaOutdated as exc:
                log.warning("projector: %s; rebuilding from the log", exc)
                await rebuild(self.event_log, self.directory)
                continue
            self.status.path = path
            try:
                start = readmodel.checkpoint(conn) + 1
                self.status.last_seq = start - 1
                log.info("projector: %s from seq %d", path.name, start)
                async for batch in self.event_log.read(
                    start_seq=start, follow=True, batch=self.batch
                ):
                    if batch:
                        self.status.applied += await asyncio.to_thread(apply_batch, conn, batch)
                        self.status.last_seq = batch[-1].seq
                    if stop.is_set() or readmodel.current_path(self.directory) != path:
                        break
            finally:
                conn.close()


async def _replay(
    event_log: EventLog,
    applier: BatchApplier,
    seq: int,
    target: int,
    batch: int,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Apply (seq, target] with reading and applying overlapped: the next chunk is
    fetched on the loop while the applier works on the current one."""
    chunks: asyncio.Queue[Sequence[RawEvent] | None] = asyncio.Queue(maxsize=4)

    async def reader() -> None:
        try:
            async for chunk in event_log.read(start_seq=seq + 1, stop_at=target, batch=batch):
                if chunk:
                    await chunks.put(chunk)
        except Exception:
            await chunks.put(None)  # the applier is still draining: this completes
            raise
        await chunks.put(None)

    task = asyncio.create_task(reader(), name="rebuild-reader")
    try:
        while (chunk := await chunks.get()) is not None:
            applied = await applier.submit(chunk)
            seq = chunk[-1].seq
            if progress:
                progress(applied, target)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # re-raises a read error
    return seq


async def rebuild(
    event_log: EventLog,
    directory: Path,
    *,
    batch: int = 5000,
    progress: Callable[[int, int], None] | None = None,
    process: bool | None = None,
) -> tuple[Path, int]:
    """Replay the whole log into a new generation and swap it in. Returns (path, last_seq).

    The API keeps serving the old generation until the swap; a live projector moves to
    the new one when it sees the pointer change. ``process``: apply in a child process
    (default: when the log is long, see :mod:`projections.applier`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = readmodel.new_generation(directory)
    applier = open_applier(path, await event_log.last_seq(), process=process)
    try:
        seq = 0
        while True:  # catch up, then once more for what arrived meanwhile
            target = await event_log.last_seq()
            if target <= seq:
                break
            t0 = time.monotonic()
            seq = await _replay(event_log, applier, seq, target, batch, progress)
            log.info("rebuild: replayed to %d in %.1fs", seq, time.monotonic() - t0)
            if target == seq and await event_log.last_seq() == seq:
                break
        t0 = time.monotonic()
        await applier.finish()
        log.info("rebuild: applied, indexes built in %.1fs", time.monotonic() - t0)
    except BaseException:
        await applier.abort()
        raise
    readmodel.swap(directory, path)
    with contextlib.suppress(OSError):
        readmodel.prune_generations(directory, keep=2)
    return path, seq
