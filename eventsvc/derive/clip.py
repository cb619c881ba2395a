"""The clip worker: HashComputed (images) -> ClipEncoded, once per (content, model).

Handlers decode one image each (small, Pillow draft mode; RAW through its embedded
preview, HEIC through pillow-heif) and hand it to a :class:`Batcher`, which encodes
batches of up to ``clip_batch`` images, waiting at most ``clip_batch_window`` seconds
for a batch to fill, with at most ``clip_concurrency`` batches in flight.

When there is no model (offline, no local files) or the inference host is away, the
worker pauses (:mod:`eventsvc.derive.hold`): it says why (log, ``stats.model_error``,
the status bucket), holds what it had fetched without spending deliveries, and looks
again with back-off up to ``clip_recheck_interval`` seconds, so model files dropped in place or a
host coming back start it without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from eventsvc.core.errors import BadInput, ModelUnavailable, PermanentError
from eventsvc.core.events import ClipEncoded, Event, HashComputed, subject_token
from eventsvc.core.log import ConsumerSpec, EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.derive.hold import InferenceStats, InferenceWorker
from eventsvc.derive.versions import CLIP_VERSION
from eventsvc.inference.protocol import ClipBackend, ModelInfo
from eventsvc.media.load import load_hashed
from eventsvc.media.sandbox import DecodeSandbox

__all__ = [
    "Batcher",
    "ClipDeriver",
    "ClipStats",
    "ClipWorker",
    "make_clip_worker",
    "reencode",
]

log = logging.getLogger(__name__)

DECODE_EDGE = 448
"""Images are decoded with their longest edge at least this (2x ViT-B/32's 224)."""


@dataclass
class ClipStats(InferenceStats):
    batches: int = 0
    encoded: int = 0
    skipped: int = 0
    """Contents already encoded for this model (another location, a redelivery)."""


class Batcher:
    """Collects single images into batches for one back-end."""

    def __init__(
        self, backend: ClipBackend, *, size: int, window: float, concurrency: int,
        stats: ClipStats | None = None,
    ) -> None:  # fmt: skip
        self.backend = backend
        self.size = max(1, size)
        self.window = max(0.0, window)
        self.sem = asyncio.Semaphore(max(1, concurrency))
        self.stats = stats
        self._queue: asyncio.Queue[tuple[Image.Image, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def encode(self, img: Image.Image) -> np.ndarray:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="clip-batcher")
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((img, fut))
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = loop.time() + self.window
            while len(batch) < self.size:
                left = deadline - loop.time()
                try:
                    batch.append(
                        self._queue.get_nowait()
                        if left <= 0
                        else await asyncio.wait_for(self._queue.get(), left)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
            await self.sem.acquire()
            t = asyncio.create_task(self._run(batch))
            self._running.add(t)
            t.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Image.Image, asyncio.Future[np.ndarray]]]) -> None:
        try:
            while batch:
                try:
                    vectors = await self.backend.encode_images([img for img, _ in batch])
                except BadInput as exc:
                    if exc.index is None or not 0 <= exc.index < len(batch) or len(batch) == 1:
                        raise
                    _, fut = batch.pop(exc.index)  # fail that one; the rest go again
                    if not fut.done():
                        fut.set_exception(exc)
                    continue
                if self.stats is not None:
                    self.stats.batches += 1
                for (_, fut), vec in zip(batch, vectors, strict=True):
                    if not fut.done():
                        fut.set_result(vec)
                return
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        finally:
            self.sem.release()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


class ClipDeriver:
    """The handler: one HashComputed -> at most one ClipEncoded."""

    def __init__(
        self, roots: LibraryRoots, event_log: EventLog, backend: ClipBackend, batcher: Batcher,
        stats: ClipStats,
    ) -> None:  # fmt: skip
        self.roots = roots
        self.event_log = event_log
        self.backend = backend
        self.batcher = batcher
        self.stats = stats
        self.model: ModelInfo | None = None
        self.sandbox: DecodeSandbox | None = None
        """Where images are decoded (None: in this process, unbounded: tests only)."""
        self._inflight: dict[str, asyncio.Future[None]] = {}

    async def __call__(self, event: Event, seq: int) -> list[Event]:
        if not isinstance(event, HashComputed) or event.media_kind != "image":
            return []
        model = self.model
        if model is None:
            raise ModelUnavailable("the CLIP model is not loaded yet")
        p, h = self.event_log.prefix, event.content_hash
        subject = f"{p}.content.{h}.ClipEncoded.{subject_token(model.version)}"
        while (other := self._inflight.get(h)) is not None:  # same content elsewhere, now
            await asyncio.wait({other})
            if other.exception() is None:
                self.stats.skipped += 1
                return []
        # Registered before any await: a copy of this content fetched in the same batch
        # waits for this one instead of encoding it twice.
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[h] = mine
        try:
            if (await self.event_log.last_fact(subject))[1] >= CLIP_VERSION:
                self.stats.skipped += 1
                mine.set_result(None)
                return []  # this content was encoded from another location, or before
            out = await self._encode(event, seq, model)
        except BaseException as exc:
            mine.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            raise
        else:
            mine.set_result(None)
            return out
        finally:
            if mine.done():
                mine.exception()  # retrieved: no "exception was never retrieved" warnings
            if self._inflight.get(h) is mine:
                del self._inflight[h]

    async def _encode(self, event: HashComputed, seq: int, model: ModelInfo) -> list[Event]:
        self.roots.root(event.library_id)  # not configured here: fail before a thread hop
        img = await asyncio.to_thread(self._decode, event)
        try:
            vec = await self.batcher.encode(img)
        except BadInput as exc:
            raise PermanentError(f"CLIP cannot encode {event.content_hash[:12]}: {exc}") from exc
        self.stats.encoded += 1
        return [
            ClipEncoded(
                content_hash=event.content_hash,
                model_version=model.version,
                dim=int(vec.shape[0]),
                vector=[float(x) for x in vec],
                causation=seq,
                deriver_version=CLIP_VERSION,
            )
        ]

    def _decode(self, event: HashComputed) -> Image.Image:
        return load_hashed(
            "clip", self.roots, event, DECODE_EDGE, purpose="CLIP", sandbox=self.sandbox
        )


class ClipWorker(InferenceWorker):
    """An InferenceWorker (pauses and holds while the model is unavailable)."""

    stats: ClipStats

    def __init__(
        self, name: str, event_log: EventLog, spec: ConsumerSpec, deriver: ClipDeriver,
        *, concurrency: int, batch: int, recheck: float = 60.0,
    ) -> None:  # fmt: skip
        super().__init__(
            name, event_log, spec, deriver, concurrency=concurrency, batch=batch,
            recheck=recheck, label="CLIP",
        )  # fmt: skip
        self.deriver: ClipDeriver = deriver

    async def _close(self) -> None:
        await self.deriver.batcher.aclose()
        await super()._close()


def make_clip_worker(
    event_log: EventLog, settings: object, roots: LibraryRoots, spec: ConsumerSpec,
    *, model: str | None = None, backend: ClipBackend | None = None,
) -> ClipWorker:  # fmt: skip
    """The clip worker for the configured model (``model=None``) or another one, on the
    configured back-end or ``backend``."""
    from eventsvc.core.settings import Settings
    from eventsvc.inference.models import clip_backend
    from eventsvc.media.sandbox import shared_sandbox

    assert isinstance(settings, Settings)
    backend = backend or clip_backend(settings, model)
    stats = ClipStats()
    batcher = Batcher(
        backend, size=settings.clip_batch, window=settings.clip_batch_window,
        concurrency=settings.clip_concurrency, stats=stats,
    )  # fmt: skip
    deriver = ClipDeriver(roots, event_log, backend, batcher, stats)
    deriver.sandbox = shared_sandbox(settings, prestart=os.cpu_count() or 1)
    in_flight = max(1, settings.clip_batch) * max(1, settings.clip_concurrency)
    return ClipWorker(
        spec.durable, event_log, spec, deriver, concurrency=in_flight,
        batch=in_flight * 2, recheck=settings.clip_recheck_interval,
    )  # fmt: skip


async def reencode(
    event_log: EventLog, settings: object, roots: LibraryRoots, model: str, *,
    follow: bool = False, stop: asyncio.Event | None = None,
    progress: Callable[[dict[str, object]], None] | None = None,
) -> dict[str, object]:  # fmt: skip
    """Backfill ClipEncoded for ``model`` over every image content in the log, on its
    own durable consumer (``clip-<model token>``) beside the main clip worker, which
    keeps serving meanwhile. Returns when caught up (unless ``follow``)."""
    from eventsvc.components import clip_spec
    from eventsvc.core.settings import Settings
    from eventsvc.inference.models import clip_backend, remember_model

    assert isinstance(settings, Settings)
    probe = clip_backend(settings, model)
    try:
        info = await probe.info()
    finally:
        await probe.aclose()
    remember_model(settings, model)
    name = "clip-" + subject_token(info.version)[:120]
    worker = make_clip_worker(event_log, settings, roots, clip_spec(settings, name), model=model)
    stop = stop or asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        while not task.done():
            await asyncio.sleep(0.5)
            try:
                ci = await event_log.js.consumer_info(event_log.stream, name)
            except Exception:  # not created yet
                continue
            state = {
                "worker": name,
                "model_version": info.version,
                "pending": ci.num_pending,
                "in_flight": ci.num_ack_pending,
                "encoded": worker.stats.encoded,
                "skipped": worker.stats.skipped,
                "failed": worker.stats.failed,
            }
            if progress is not None:
                progress(state)
            if not follow and ci.num_pending == 0 and ci.num_ack_pending == 0:
                break
            if worker.stats.model_error is not None:
                break  # the model went away: say so rather than wait forever
    finally:
        stop.set()
        await task
    return {
        "worker": name,
        "model_version": info.version,
        "encoded": worker.stats.encoded,
        "skipped": worker.stats.skipped,
        "failed": worker.stats.failed,
        "model_error": worker.stats.model_error,
    }
