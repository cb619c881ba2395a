"""Where a rebuild's batches are applied: in a thread of this process, or in a process
of its own.

Reading the log, decoding events and applying them are all Python, so in one process
they share one GIL. For a large replay the ``ProcessApplier`` moves decoding and the
SQLite writes to a child process (the generation's one writer) while this process only
reads the log and hands the raw batches over a pipe. Both appliers do the same thing
to the same file: open it for bulk writing, drop the query-only indexes, apply each
batch with its checkpoint in one transaction (the ``apply`` they are given:
:func:`projections.projector.apply_batch`, a module-level function so a spawned child
can import it by name), run the work the appliers deferred to the end of the load (the
``finish`` they are given: :func:`projections.projector.finish_load`, in a transaction
of its own), then build the indexes and switch the journal to WAL.

A child that fails or dies ends the rebuild with a ReadModelError; the generation it
was writing is never made current, so the read model stays as it was.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import sqlite3
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from eventsvc.core.errors import ReadModelError
from eventsvc.core.log import RawEvent
from projections import readmodel

__all__ = [
    "ApplyBatch",
    "BatchApplier",
    "FinishLoad",
    "InlineApplier",
    "ProcessApplier",
    "open_applier",
]

log = logging.getLogger(__name__)

PROCESS_MIN_EVENTS = 100_000
"""Replays at least this long get a process of their own (starting one takes ~1 s)."""

_WINDOW = 3
"""Batches handed to the child and not yet acknowledged."""

CHILD_GC_THRESHOLD = (50_000, 50, 100)
"""The child's ``gc.set_threshold`` (default 700, 10, 10): ~10-20 % less CPU per event."""

_Raw = tuple[int, str, bytes, "dict[str, str] | None"]

ApplyBatch = Callable[[sqlite3.Connection, Sequence[RawEvent]], None]
"""Applies one batch and its checkpoint in one transaction (the projector's)."""

FinishLoad = Callable[[sqlite3.Connection], None]
"""Work an apply deferred to the end of the load (the projector's), run before the
indexes are built."""


class BatchApplier(Protocol):
    async def submit(self, batch: Sequence[RawEvent]) -> int:
        """Hand over a batch; returns the last sequence applied so far."""
        ...

    async def finish(self) -> int:
        """Apply what is pending, build the indexes; returns the last sequence applied."""
        ...

    async def abort(self) -> None:
        """Stop without finishing (the generation is left unfinished, never swapped)."""
        ...


def _prepare(path: Path, finish: FinishLoad | None) -> sqlite3.Connection:
    conn = readmodel.open_writer(path, bulk=True)
    if isinstance(conn, readmodel.BulkConnection):
        conn.deferred_dates = finish is not None  # finish runs what is deferred
    readmodel.drop_deferred_indexes(conn)
    return conn


def _complete(conn: sqlite3.Connection, finish: FinishLoad | None) -> None:
    if finish is not None:
        conn.execute("BEGIN IMMEDIATE")
        finish(conn)
        conn.execute("COMMIT")
    readmodel.create_indexes(conn)
    conn.execute("PRAGMA journal_mode=WAL")


class InlineApplier:
    """Applies in a worker thread of this process (short replays, tests)."""

    def __init__(self, path: Path, apply: ApplyBatch, finish: FinishLoad | None = None) -> None:
        self.conn = _prepare(path, finish)
        self.apply = apply
        self.finish_load = finish
        self.last = 0

    async def submit(self, batch: Sequence[RawEvent]) -> int:
        await asyncio.to_thread(self.apply, self.conn, batch)
        self.last = batch[-1].seq
        return self.last

    async def finish(self) -> int:
        try:
            await asyncio.to_thread(_complete, self.conn, self.finish_load)
        finally:
            self.conn.close()
        return self.last

    async def abort(self) -> None:
        self.conn.close()


def _child(path: str, pipe: Connection, apply_batch: ApplyBatch, finish: FinishLoad | None) -> None:
    """The child's loop: batches in, ``("ok", last_seq)`` out; ``None`` ends it."""
    # A short-lived process whose garbage is freed by reference counting (batches of
    # acyclic rows and events): the cycle collector rarely, and never over the modules.
    gc.freeze()
    gc.set_threshold(*CHILD_GC_THRESHOLD)
    try:
        conn = _prepare(Path(path), finish)
        try:
            last = 0
            while (batch := pipe.recv()) is not None:
                apply_batch(conn, [RawEvent(*raw) for raw in batch])
                last = batch[-1][0]
                pipe.send(("ok", last))
            _complete(conn, finish)
            pipe.send(("done", last))
        finally:
            conn.close()
    except BaseException as exc:  # report it: the parent raises it
        detail = f"{exc!r}\n{traceback.format_exc(limit=8)}"
        try:
            pipe.send(("error", detail))
        except OSError:
            pass
        raise SystemExit(1) from None
    finally:
        pipe.close()


class ProcessApplier:
    """Applies in a child process; at most ``_WINDOW`` batches in flight."""

    def __init__(self, path: Path, apply: ApplyBatch, finish: FinishLoad | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process with threads
        self._pipe, theirs = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(
            target=_child,
            args=(str(path), theirs, apply, finish),
            name="rebuild-applier",
            daemon=True,
        )
        self._proc.start()
        theirs.close()
        self._in_flight = 0
        self.last = 0

    def _reply(self) -> tuple[str, Any]:
        try:
            kind, value = self._pipe.recv()
        except (EOFError, OSError) as exc:
            self._proc.join(5)
            code = self._proc.exitcode
            raise ReadModelError(f"rebuild applier process exited (code {code})") from exc
        if kind == "error":
            raise ReadModelError(f"rebuild applier process failed: {value}")
        return kind, value

    async def _ack(self) -> None:
        _, value = await asyncio.to_thread(self._reply)
        self._in_flight -= 1
        self.last = int(value)

    async def submit(self, batch: Sequence[RawEvent]) -> int:
        raws: list[_Raw] = [(r.seq, r.subject, r.data, r.headers) for r in batch]
        try:
            await asyncio.to_thread(self._pipe.send, raws)
        except OSError as exc:
            raise ReadModelError(f"rebuild applier process is gone: {exc}") from exc
        self._in_flight += 1
        while self._in_flight >= _WINDOW:
            await self._ack()
        return self.last

    async def finish(self) -> int:
        try:
            await asyncio.to_thread(self._pipe.send, None)
            while True:  # the acks still due, then "done"
                kind, value = await asyncio.to_thread(self._reply)
                self.last = int(value)
                if kind == "done":
                    break
            await asyncio.to_thread(self._proc.join, 60)
            return self.last
        finally:
            await self.abort()

    async def abort(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
            await asyncio.to_thread(self._proc.join, 10)
        self._pipe.close()


def open_applier(
    path: Path,
    events: int,
    apply: ApplyBatch,
    *,
    finish: FinishLoad | None = None,
    process: bool | None = None,
) -> BatchApplier:
    """A process applier for ``events`` >= PROCESS_MIN_EVENTS (or as ``process`` says),
    applying each batch with ``apply`` and ending with ``finish`` (both picklable:
    module-level functions)."""
    if process is None:
        process = events >= PROCESS_MIN_EVENTS
    if process:
        log.info("rebuild: applying %d events in a separate process", events)
        return ProcessApplier(path, apply, finish)
    return InlineApplier(path, apply, finish)
