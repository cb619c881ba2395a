"""The projector: applies events to the read model, checkpointed in the same transaction.

``apply(conn, seq, event)`` is a pure function of the event and the rows; replaying the
log from sequence 1 into an empty generation gives the same rows as applying it live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eventsvc.core.errors import DecodeError
from eventsvc.core.events import (
    ClipEncoded,
    Event,
    ExifExtracted,
    FacesDetected,
    PlaylistReady,
    ThumbnailReady,
    decode,
)
from eventsvc.core.log import EventLog, RawEvent
from projections import files, libraries, people, readmodel, tags
from projections.applier import BatchApplier, open_applier

__all__ = ["Projector", "apply", "apply_batch", "rebuild"]

log = logging.getLogger(__name__)


Applier = Callable[[sqlite3.Connection, int, Event], None]
APPLIERS: dict[type[Event], Applier] = {
    **files.APPLIERS,  # type: ignore[dict-item]
    **people.APPLIERS,  # type: ignore[dict-item]
    **tags.APPLIERS,  # type: ignore[dict-item]
    **libraries.APPLIERS,  # type: ignore[dict-item]
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
            people.replace_faces(conn, event)
    return True


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
    applier = open_applier(path, await event_log.last_seq(), apply_batch, process=process)
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
