"""Re-derivation after a deriver's version changed (:mod:`eventsvc.derive.versions`),
one mechanism for every stage in ``REDERIVE_STAGES`` (media, faces, playlist).

A backfill consumer reads every HashComputed up to the stream's position when the
version's backfill began (later ones are the main worker's) and derives again the
contents whose facts are of an older version; contents already current cost two direct
reads. The old facts keep serving until the new ones land (the projector replaces a
fact only with a newer version's). Progress is the consumer's, in ``/pipeline``.

- In ``eventsvc up`` the stage's worker runs it in the background (durable
  ``<stage>-rederive``, ``rederive_concurrency`` handlers: low priority beside the main
  worker) when the log holds facts of the stage from before (a new log, or one the stage
  never ran on, has nothing to redo: its main worker derives every content).
  It resumes across restarts; a new version starts it over.
- ``eventsvc rederive --stage STAGE [--library L]`` runs one now (durable
  ``rederive-STAGE[-L]``, as the ``reencode`` user) and removes its consumer when done.

A stage's deriver has a ``version`` and ``stale(event)``: whether the content has no
fact of that version (faces: for the current model, which the worker finds as the main
faces worker does; the re-derivation pauses and holds while there is none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from eventsvc.core.errors import ConfigError, LogError
from eventsvc.core.events import Event, HashComputed, subject_token
from eventsvc.core.log import ConsumerSpec, EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.derive.hold import InferenceStats, InferenceWorker
from eventsvc.derive.versions import STAGE_FACTS
from eventsvc.derive.worker import WithBackground, Worker, WorkerStats

__all__ = [
    "REDERIVE_STAGES",
    "InferenceRederiveStats",
    "InferenceRederiveWorker",
    "MediaWorker",
    "Rederivable",
    "RederiveHandler",
    "RederiveStats",
    "RederiveWorker",
    "background_durable",
    "make_rederive_worker",
    "rederive",
]

log = logging.getLogger(__name__)

REDERIVE_STAGES = ("media", "faces", "playlist")
"""Stages that can re-derive (CLIP per model: ``eventsvc reencode``)."""


class Rederivable(Protocol):
    """What the re-derivation needs of a stage's deriver (its handler)."""

    version: int
    """The version its facts carry now."""

    async def stale(self, event: HashComputed) -> bool:
        """Whether ``event``'s content still needs this version's facts."""
        ...

    async def __call__(self, event: Event, seq: int) -> list[Event]: ...


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


@dataclass
class InferenceRederiveStats(RederiveStats, InferenceStats):
    """A re-derivation that needs a model (faces): also why it is paused."""


class RederiveHandler:
    """HashComputed (up to ``upto``, of ``library`` when given) -> the stage's facts of
    this version, for contents whose facts are older. For a deriver with a model (faces)
    it stands in for it towards an InferenceWorker (``backend``, ``model``)."""

    def __init__(
        self, deriver: Rederivable, upto: int, stats: RederiveStats, library: str | None = None
    ) -> None:
        self.deriver = deriver
        self.upto = upto
        self.stats = stats
        self.library = library

    @property
    def backend(self) -> Any:
        return getattr(self.deriver, "backend", None)

    @property
    def model(self) -> Any:
        return getattr(self.deriver, "model", None)

    @model.setter
    def model(self, info: Any) -> None:
        self.deriver.model = info  # type: ignore[attr-defined]

    async def __call__(self, event: Event, seq: int) -> list[Event]:
        if seq > self.upto:
            self.stats.later += 1
            return []
        if not isinstance(event, HashComputed):
            return []
        if self.library is not None and event.library_id != self.library:
            self.stats.other_library += 1
            return []
        if not await self.deriver.stale(event):
            self.stats.current += 1
            return []
        out = await self.deriver(event, seq)
        self.stats.rederived += 1
        return out


class RederiveWorker(Worker):
    stats: RederiveStats


class InferenceRederiveWorker(InferenceWorker):
    """The re-derivation of a stage with a model: pauses and holds while there is none.
    ``owns_backend``: closes the back-end when it stops (not one shared with ``up``'s
    main worker)."""

    stats: InferenceRederiveStats
    owns_backend = True

    async def _close(self) -> None:
        if self.owns_backend:
            await super()._close()


async def _upto(event_log: EventLog, durable: str, version: int) -> tuple[int, bool]:
    """(where this version's backfill ends, whether it starts now): kept in its
    consumer's description (resumed across restarts), else the stream's last sequence."""
    try:
        ci = await event_log.consumer_stats(durable)
    except LogError:
        ci = None
    m = _DESC.search(ci.description if ci else "")
    if m and int(m.group(1)) == version:
        return int(m.group(2)), False
    if ci is not None:  # another version's backfill: start over from the first message
        # (an update in place would keep its position: JetStream updates a description)
        await event_log.delete_consumer(durable)
    return await event_log.last_seq(), True


_PER_MODEL = ("FacesDetected", "ClipEncoded")
"""Facts with a model token after their type in their subject."""


async def _derived_before(event_log: EventLog, stage: str) -> bool:
    """Whether the stream holds a fact of ``stage`` at all: a new log, or one this stage
    never ran on, has nothing to redo (its main worker derives every content now)."""
    for fact in STAGE_FACTS[stage]:
        subject = f"{event_log.prefix}.content.*.{fact}" + (".*" if fact in _PER_MODEL else "")
        try:
            if await event_log.holds_any(subject):
                return True
        except LogError:
            return True  # cannot tell: look through them
    return False


def _deriver(event_log: EventLog, settings: Any, roots: LibraryRoots, stage: str) -> Rederivable:
    """A deriver of ``stage`` of its own (``eventsvc rederive``), as ``up`` makes it."""
    from eventsvc.media.sandbox import shared_sandbox

    box = shared_sandbox(settings, prestart=1)
    if stage == "faces":
        from eventsvc.derive.faces import FacesDeriver
        from eventsvc.inference.models import face_backend

        backend = face_backend(settings)
        return FacesDeriver(roots, event_log, backend, settings.faces_max_edge, box)
    if stage == "playlist":
        from eventsvc.derive.playlist import PlaylistDeriver
        from eventsvc.video.ffmpeg import ffmpeg_exe

        try:
            exe = ffmpeg_exe()
        except Exception as exc:  # imageio-ffmpeg without its binary
            raise ConfigError(f"cannot re-derive playlists without ffmpeg: {exc}") from exc
        return PlaylistDeriver(roots, event_log, settings, exe, sandbox=box)
    from eventsvc.derive.media import MediaDeriver

    return MediaDeriver(roots, settings.thumbs_dir, event_log, box)


async def make_rederive_worker(
    event_log: EventLog,
    settings: object,
    roots: LibraryRoots,
    stage: str,
    *,
    durable: str,
    library: str | None = None,
    deriver: Rederivable | None = None,
    concurrency: int | None = None,
    background: bool = False,
) -> Worker | None:
    """The re-derivation worker of ``stage`` on ``durable`` (a RederiveWorker, or for a
    stage with a model an InferenceRederiveWorker). ``deriver``: the main worker's (in
    ``up``; its back-end is shared), else one of its own. ``background`` (``up``): None
    when a new log has nothing to redo (no consumer is made)."""
    from eventsvc.core.settings import Settings

    assert isinstance(settings, Settings)
    if stage not in REDERIVE_STAGES:
        raise ConfigError(
            f"cannot re-derive stage {stage!r}; known: {', '.join(REDERIVE_STAGES)} "
            "(CLIP vectors for another model: `eventsvc reencode --model M`)"
        )
    own = deriver is None
    if deriver is None:
        deriver = _deriver(event_log, settings, roots, stage)
    version = deriver.version
    upto, fresh = await _upto(event_log, durable, version)
    if background and fresh and not await _derived_before(event_log, stage):
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
    if hasattr(deriver, "backend"):  # a model: pause and hold while there is none
        istats = InferenceRederiveStats()
        inference = InferenceRederiveWorker(
            durable, event_log, spec, RederiveHandler(deriver, upto, istats, library),  # type: ignore[arg-type]
            concurrency=n, batch=max(n * 2, 4), recheck=settings.faces_recheck_interval,
            label="face",
        )  # fmt: skip
        inference.owns_backend = own
        return inference
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
    deriver: Rederivable | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    keep_consumer: bool = False,
) -> dict[str, Any]:
    """Re-derive ``stage`` now for every content hashed so far (of ``library``), on its
    own consumer; returns when caught up, with counts (or, for faces, when there is no
    face model: ``model_error`` says why, ``pending`` what is left)."""
    durable = f"rederive-{stage}" + (f"-{subject_token(library)[:100]}" if library else "")
    worker = await make_rederive_worker(
        event_log, settings, roots, stage, durable=durable, library=library,
        deriver=deriver, concurrency=concurrency,
    )  # fmt: skip
    assert worker is not None
    handler = worker.handler
    assert isinstance(handler, RederiveHandler)
    stats = handler.stats
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    def state(pending: int, in_flight: int) -> dict[str, Any]:
        out = {
            "stage": stage,
            "version": handler.deriver.version,
            "library": library,
            "up_to_seq": handler.upto,
            "pending": pending,
            "in_flight": in_flight,
            **_counts(stats),
        }
        if isinstance(stats, InferenceStats):
            out["model"] = stats.model
            out["model_error"] = stats.model_error
        return out

    result = state(0, 0)
    done = False
    try:
        while not task.done():
            await asyncio.sleep(0.3)
            if isinstance(stats, InferenceStats) and stats.model_error is not None:
                break  # no face model: say so rather than wait forever
            try:
                ci = await event_log.consumer_stats(durable)
            except LogError:
                ci = None
            if ci is None:
                continue  # not created yet
            result = state(ci.pending, ci.ack_pending)
            if progress is not None:
                progress(result)
            # every message up to the end of the backfill was delivered and acked
            if ci.last_delivered >= handler.upto or ci.pending == 0:
                if ci.ack_pending == 0:
                    done = True
                    break
    finally:
        stop.set()
        await task
        if not keep_consumer:
            with contextlib.suppress(Exception):
                await event_log.delete_consumer(durable)
    if done:
        result |= {"pending": 0, "in_flight": 0}
    return result | state(result["pending"], result["in_flight"])


def _counts(s: RederiveStats) -> dict[str, int]:
    return {
        "rederived": s.rederived,
        "current": s.current,
        "other_library": s.other_library,
        "failed": s.failed,
    }


class MediaWorker(WithBackground, Worker):
    """The media worker of ``up``: the main consumer, and beside it (when the settings
    ask for it) the background re-derivation at low concurrency."""
