"""Re-derivation after a deriver's version changed (:mod:`eventsvc.derive.versions`).

A backfill consumer reads every HashComputed up to the stream's position when the
version's backfill began (later ones are the main worker's) and derives again the
contents whose facts are of an older version; contents already current cost two direct
reads. The old facts keep serving until the new ones land (the projector replaces a
fact only with a newer version's). Progress is the consumer's, in ``/pipeline``.

- In ``eventsvc up`` the media worker runs it in the background (durable
  ``media-rederive``, ``rederive_concurrency`` handlers: low priority beside the main
  worker) when the log holds HashComputed from before (a new log has nothing to redo).
  It resumes across restarts; a new version starts it over.
- ``eventsvc rederive --stage media [--library L]`` runs one now (durable
  ``rederive-media[-L]``, as the ``reencode`` user) and removes its consumer when done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors

from eventsvc.derive.media import MediaDeriver
from eventsvc.derive.roots import LibraryRoots
from eventsvc.derive.worker import Worker, WorkerStats
from eventsvc.errors import ConfigError
from eventsvc.events import Event, HashComputed, subject_token
from eventsvc.log import ConsumerSpec, EventLog

__all__ = [
    "REDERIVE_STAGES",
    "MediaWorker",
    "RederiveHandler",
    "RederiveStats",
    "RederiveWorker",
    "background_durable",
    "make_rederive_worker",
    "rederive",
]

log = logging.getLogger(__name__)

REDERIVE_STAGES = ("media",)
"""Stages that can re-derive (CLIP per model: ``eventsvc reencode``)."""

_DESC = re.compile(r"v(\d+) up to seq (\d+)")


def background_durable(stage: str) -> str:
    """The durable of ``up``'s background re-derivation of ``stage``."""
    return f"{stage}-rederive"


@dataclass
class RederiveStats(WorkerStats):
    rederived: int = 0
    current: int = 0
    """Contents whose facts were of this version already (skipped)."""
    other_library: int = 0
    later: int = 0
    """HashComputed after the backfill's end (the main worker's)."""


class RederiveHandler:
    """HashComputed (up to ``upto``, of ``library`` when given) -> the media facts of
    this version, for contents whose facts are older."""

    def __init__(
        self, deriver: MediaDeriver, upto: int, stats: RederiveStats, library: str | None = None
    ) -> None:
        self.deriver = deriver
        self.upto = upto
        self.stats = stats
        self.library = library

    async def __call__(self, event: Event, seq: int) -> list[Event]:
        if seq > self.upto:
            self.stats.later += 1
            return []
        if not isinstance(event, HashComputed):
            return []
        if self.library is not None and event.library_id != self.library:
            self.stats.other_library += 1
            return []
        if not any(await self.deriver.needs(event.content_hash)):
            self.stats.current += 1
            return []
        out = await self.deriver(event, seq)
        self.stats.rederived += 1
        return out


class RederiveWorker(Worker):
    stats: RederiveStats


async def _upto(event_log: EventLog, durable: str, version: int) -> tuple[int, bool]:
    """(where this version's backfill ends, whether it starts now): kept in its
    consumer's description (resumed across restarts), else the stream's last sequence."""
    try:
        ci = await event_log.js.consumer_info(event_log.stream, durable)
    except (nats.js.errors.NotFoundError, nats.errors.Error, TimeoutError):
        ci = None
    m = _DESC.search((ci.config.description or "") if ci and ci.config else "")
    if m and int(m.group(1)) == version:
        return int(m.group(2)), False
    if ci is not None:  # another version's backfill: start over from the first message
        # (an update in place would keep its position: JetStream updates a description)
        await event_log.js.delete_consumer(event_log.stream, durable)
    return await event_log.last_seq(), True


async def _any_hashed(event_log: EventLog) -> bool:
    """Whether the stream holds a HashComputed at all (a new log has nothing to redo)."""
    subject = f"{event_log.prefix}.content.*.HashComputed"
    try:
        await event_log.js.get_msg(event_log.stream, seq=1, subject=subject, next=True)
    except nats.js.errors.NotFoundError:
        return False
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return True  # cannot tell: look through them
    return True


async def make_rederive_worker(
    event_log: EventLog,
    settings: object,
    roots: LibraryRoots,
    stage: str,
    *,
    durable: str,
    library: str | None = None,
    deriver: MediaDeriver | None = None,
    concurrency: int | None = None,
    background: bool = False,
) -> RederiveWorker | None:
    """The re-derivation worker of ``stage`` on ``durable``. ``background`` (``up``):
    None when a new log has nothing to redo (no consumer is made)."""
    from eventsvc.settings import Settings

    assert isinstance(settings, Settings)
    if stage not in REDERIVE_STAGES:
        raise ConfigError(
            f"cannot re-derive stage {stage!r}; known: {', '.join(REDERIVE_STAGES)} "
            "(CLIP vectors for another model: `eventsvc reencode --model M`)"
        )
    if deriver is None:
        from eventsvc.media.sandbox import shared_sandbox

        box = shared_sandbox(settings, prestart=1)
        deriver = MediaDeriver(roots, settings.thumbs_dir, event_log, box)
    version = deriver.version
    upto, fresh = await _upto(event_log, durable, version)
    if background and fresh and not await _any_hashed(event_log):
        return None  # nothing was derived before this version: nothing to redo
    n = max(1, concurrency or settings.rederive_concurrency)
    spec = ConsumerSpec(
        durable=durable,
        filter_subjects=(f"{event_log.prefix}.content.*.HashComputed",),
        max_deliver=settings.max_deliver,
        ack_wait=settings.ack_wait,
        backoff=tuple(settings.backoff),
        max_ack_pending=max(n * 4, 8),
        description=f"rederive {stage} to v{version} up to seq {upto}",
    )
    stats = RederiveStats()
    worker = RederiveWorker(
        durable,
        event_log,
        spec,
        RederiveHandler(deriver, upto, stats, library),
        concurrency=n,
        batch=max(n * 2, 4),
        accepts=(HashComputed,),
    )
    worker.stats = stats
    return worker


async def rederive(
    event_log: EventLog,
    settings: object,
    roots: LibraryRoots,
    stage: str,
    *,
    library: str | None = None,
    concurrency: int | None = None,
    deriver: MediaDeriver | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    keep_consumer: bool = False,
) -> dict[str, Any]:
    """Re-derive ``stage`` now for every content hashed so far (of ``library``), on its
    own consumer; returns when caught up, with counts."""
    durable = f"rederive-{stage}" + (f"-{subject_token(library)[:100]}" if library else "")
    worker = await make_rederive_worker(
        event_log, settings, roots, stage, durable=durable, library=library,
        deriver=deriver, concurrency=concurrency,
    )  # fmt: skip
    assert worker is not None
    handler = worker.handler
    assert isinstance(handler, RederiveHandler)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    def state(pending: int, in_flight: int) -> dict[str, Any]:
        s = worker.stats
        return {
            "stage": stage,
            "version": handler.deriver.version,
            "library": library,
            "up_to_seq": handler.upto,
            "pending": pending,
            "in_flight": in_flight,
            "rederived": s.rederived,
            "current": s.current,
            "other_library": s.other_library,
            "failed": s.failed,
        }

    result = state(0, 0)
    try:
        while not task.done():
            await asyncio.sleep(0.3)
            try:
                ci = await event_log.js.consumer_info(event_log.stream, durable)
            except (nats.js.errors.NotFoundError, nats.errors.Error, TimeoutError):
                continue  # not created yet
            result = state(ci.num_pending or 0, ci.num_ack_pending or 0)
            if progress is not None:
                progress(result)
            # every message up to the end of the backfill was delivered and acked
            if (ci.delivered.stream_seq or 0) >= handler.upto or ci.num_pending == 0:
                if ci.num_ack_pending == 0:
                    break
    finally:
        stop.set()
        await task
        if not keep_consumer:
            with contextlib.suppress(Exception):
                await event_log.js.delete_consumer(event_log.stream, durable)
    return result | {"pending": 0, "in_flight": 0, **_counts(worker.stats)}


def _counts(s: RederiveStats) -> dict[str, int]:
    return {
        "rederived": s.rederived,
        "current": s.current,
        "other_library": s.other_library,
        "failed": s.failed,
    }


class MediaWorker(Worker):
    """The media worker of ``up``: the main consumer, and beside it (when the settings
    ask for it) the background re-derivation at low concurrency."""

    background: RederiveWorker | None = None

    async def run(self, stop: asyncio.Event) -> None:
        if self.background is None:
            await super().run(stop)
            return
        await asyncio.gather(super().run(stop), self._background(self.background, stop))

    async def _background(self, worker: RederiveWorker, stop: asyncio.Event) -> None:
        """The re-derivation never takes the main worker down with it."""
        try:
            await worker.run(stop)
        except Exception:
            log.exception("%s: background re-derivation stopped", worker.name)
