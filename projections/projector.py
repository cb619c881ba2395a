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
from typing import NoReturn

from eventsvc.core.errors import DecodeError, LogClosed, LogError, ReadModelError, out_of_space
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
from eventsvc.core.memory import release_free_memory
from projections import files, libraries, people, readmodel, tags
from projections.applier import BatchApplier, open_applier

__all__ = ["Projector", "apply", "apply_batch", "finish_load", "rebuild"]

log = logging.getLogger(__name__)


Applier = Callable[[sqlite3.Connection, int, Event], None]
APPLIERS: dict[type[Event], Applier] = {
    **files.APPLIERS,  # type: ignore[dict-item]
    **people.APPLIERS,  # type: ignore[dict-item]
    **tags.APPLIERS,  # type: ignore[dict-item]
    **libraries.APPLIERS,  # type: ignore[dict-item]
}


_FACT_KEYS: dict[type[Event], Callable[[Event], str]] = {
    ClipEncoded: lambda e: f"{e.content_hash}:{e.model_version}",  # type: ignore[attr-defined]
    FacesDetected: lambda e: f"{e.content_hash}:{e.model}",  # type: ignore[attr-defined]
    ExifExtracted: lambda e: e.content_hash,  # type: ignore[attr-defined]
    ThumbnailReady: lambda e: e.content_hash,  # type: ignore[attr-defined]
    PlaylistReady: lambda e: e.content_hash,  # type: ignore[attr-defined]
}
"""The read model's key of each once-only fact (other types are not versioned facts)."""


def _version_gate(conn: sqlite3.Connection, event: Event, key: str) -> bool:
    """Whether a versioned fact may be applied: never over a newer deriver's fact.
    ``fact_versions`` holds versions above 1 only (a fact without a row is version 1),
    so logs from before deriver versions rebuild to the same rows plus nothing. A
    rebuild's writer (:class:`readmodel.BulkConnection`) keeps the table in memory too."""
    version = event.fact_version
    fact: str = event.type  # type: ignore[attr-defined]
    cache = conn.fact_versions if isinstance(conn, readmodel.BulkConnection) else None
    if cache is not None:
        have = cache.get((fact, key), 1)
    else:
        row = conn.execute(
            "SELECT version FROM fact_versions WHERE fact = ? AND key = ?", (fact, key)
        ).fetchone()
        have = int(row[0]) if row else 1
    if version < have:
        return False  # an older deriver's fact arriving late: the newer one stays
    if version > 1 and version != have:
        conn.execute(
            "INSERT OR REPLACE INTO fact_versions (fact, key, version) VALUES (?, ?, ?)",
            (fact, key, version),
        )
        if cache is not None:
            cache[(fact, key)] = version
        if isinstance(event, FacesDetected) and version > have:
            people.replace_faces(conn, event)
    return True


def apply(conn: sqlite3.Connection, seq: int, event: Event) -> None:
    """Apply one event. Types this read model does not project are skipped; a once-only
    fact of an older deriver version than the one applied is too."""
    cls = type(event)
    fn = APPLIERS.get(cls)
    if fn is None:
        return
    keyfn = _FACT_KEYS.get(cls)
    if keyfn is not None and not _version_gate(conn, event, keyfn(event)):
        return
    fn(conn, seq, event)


def finish_load(conn: sqlite3.Connection) -> None:
    """What a rebuild's appliers left to the end of the load (see
    :class:`readmodel.BulkConnection`): the date-taken waterfall over the table."""
    files.resolve_all_dates(conn)


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
        # SQLite rolls back by itself on some errors (a full disk): a ROLLBACK then
        # fails with "no transaction is active" and would hide the real error.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return n


@dataclass
class ProjectorProgress:
    path: Path | None = None
    last_seq: int = 0
    applied: int = 0
    paused: str | None = None
    """Why it waits (the disk holding the read model is full); None while it works."""
    paused_since: float | None = None


ROOM_RECHECK = 5.0
TRIM_AFTER = 10_000
"""Events applied in one catch-up after which the projector, once idle, hands the freed
heap back (:func:`eventsvc.core.memory.release_free_memory`)."""
"""Seconds between tries while the read model's disk is full."""


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
                burst = 0
                async for batch in self.event_log.read(
                    start_seq=start, follow=True, batch=self.batch
                ):
                    if batch:
                        self.status.applied += await asyncio.to_thread(apply_batch, conn, batch)
                        self.status.last_seq = batch[-1].seq
                        burst += len(batch)
                        self._resume()
                    elif burst >= TRIM_AFTER:  # caught up after a backlog: idle from here
                        burst = 0
                        await asyncio.to_thread(release_free_memory)
                    if stop.is_set() or readmodel.current_path(self.directory) != path:
                        break
            except sqlite3.Error as exc:
                if out_of_space(exc) is None:
                    raise
                self._pause(f"read model {path.name}: {exc}")
                with contextlib.suppress(TimeoutError):  # the batch was rolled back
                    await asyncio.wait_for(stop.wait(), ROOM_RECHECK)
            except LogClosed:
                raise
            except LogError as exc:  # an outage (no quorum, no server): wait, read again
                log.warning("projector: reading the stream failed (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            finally:
                conn.close()

    def _pause(self, why: str) -> None:
        if self.status.paused is None:
            self.status.paused_since = time.time()
            log.error("projector: paused, retrying by itself: %s", why)
        self.status.paused = why

    def _resume(self) -> None:
        if self.status.paused is not None:
            log.warning("projector: resumed (%s)", self.status.paused)
            self.status.paused = self.status.paused_since = None


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


def _failed_rebuild(path: Path, exc: BaseException) -> BaseException:
    """One clear error for a rebuild that could not write its generation (the real
    cause, e.g. "database or disk is full"); other errors (the log's) pass as they are."""
    if isinstance(exc, sqlite3.Error | OSError):
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return ReadModelError(
            f"rebuild failed writing {path.name}: {why}; it was removed and the read model "
            "in use is unchanged"
        )
    if isinstance(exc, ReadModelError):
        return ReadModelError(f"{exc}; the unfinished {path.name} was removed")
    return exc


def _reraise(path: Path, exc: BaseException) -> NoReturn:
    failed = _failed_rebuild(path, exc)
    if failed is exc:
        raise exc
    raise failed from exc


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
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReadModelError(f"cannot make the read model directory {directory}: {exc}") from exc
    path = readmodel.new_generation(directory)
    try:
        applier = open_applier(
            path, await event_log.last_seq(), apply_batch, finish=finish_load, process=process
        )
    except BaseException as exc:
        readmodel.discard_generation(path)
        _reraise(path, exc)
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
    except BaseException as exc:
        await applier.abort()
        readmodel.discard_generation(path)  # no partial generation left behind
        _reraise(path, exc)
    try:
        readmodel.swap(directory, path)
    except OSError as exc:
        readmodel.discard_generation(path)
        _reraise(path, exc)
    with contextlib.suppress(OSError):
        readmodel.prune_generations(directory, keep=2)
    return path, seq
