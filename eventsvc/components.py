"""Building the components from settings: the log connection, workers, projector, API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from eventsvc.derive.hashing import Hasher
from eventsvc.derive.media import MediaDeriver
from eventsvc.derive.roots import LibraryRoots
from eventsvc.derive.worker import Worker
from eventsvc.errors import ConfigError, LogUnavailable
from eventsvc.events import Event, FileSeen, HashComputed
from eventsvc.log import ConsumerSpec, EventLog
from eventsvc.server import EmbeddedNats
from eventsvc.settings import Library, Settings

__all__ = [
    "FACTORIES",
    "WORKERS",
    "ApiServer",
    "clip_spec",
    "face_backend",
    "faces_spec",
    "hasher_spec",
    "make_worker",
    "media_spec",
    "open_log",
    "playlist_spec",
]

log = logging.getLogger(__name__)


def _spec(settings: Settings, durable: str, subject: str, description: str) -> ConsumerSpec:
    return ConsumerSpec(
        durable=durable,
        filter_subjects=(f"{settings.subject_prefix}.{subject}",),
        max_deliver=settings.max_deliver,
        ack_wait=settings.ack_wait,
        backoff=tuple(settings.backoff),
        max_ack_pending=settings.max_in_flight,
        description=description,
    )


def hasher_spec(settings: Settings) -> ConsumerSpec:
    return _spec(settings, "hasher", "file.*.FileSeen", "FileSeen -> HashComputed")


def media_spec(settings: Settings) -> ConsumerSpec:
    return _spec(
        settings,
        "media",
        "content.*.HashComputed",
        "HashComputed -> ExifExtracted + ThumbnailReady (once per content)",
    )


def clip_spec(settings: Settings, durable: str = "clip") -> ConsumerSpec:
    return _spec(
        settings, durable, "content.*.HashComputed", "HashComputed -> ClipEncoded (per model)"
    )


WorkerFactory = Callable[[EventLog, Settings, LibraryRoots], Awaitable[Worker]]


async def _media_worker(event_log: EventLog, settings: Settings, roots: LibraryRoots) -> Worker:
    from eventsvc.media.sandbox import shared_sandbox

    box = shared_sandbox(settings, prestart=settings.media_concurrency)
    deriver = MediaDeriver(roots, settings.thumbs_dir, event_log, box)
    return Worker(
        "media",
        event_log,
        media_spec(settings),
        deriver,
        concurrency=settings.media_concurrency,
        batch=max(settings.media_concurrency * 4, 8),
        accepts=(HashComputed,),
    )


async def _hasher_worker(event_log: EventLog, settings: Settings, roots: LibraryRoots) -> Worker:
    hasher = Hasher(roots)

    async def handle(event: Event, seq: int) -> list[Event]:
        if isinstance(event, FileSeen) and roots(event.library_id) is None:
            await roots.refresh(event_log)
        return await hasher(event, seq)

    return Worker(
        "hasher",
        event_log,
        hasher_spec(settings),
        handle,
        concurrency=settings.hash_concurrency,
        batch=max(settings.hash_concurrency * 4, 8),
        accepts=(FileSeen,),
    )


async def _clip_worker(event_log: EventLog, settings: Settings, roots: LibraryRoots) -> Worker:
    from eventsvc.derive.clip import make_clip_worker

    return make_clip_worker(event_log, settings, roots, clip_spec(settings))


def face_backend(settings: Settings) -> Any:
    """The configured face back-end: an inference service, else dlib in-process."""
    if settings.faces_inference_url:
        from eventsvc.inference.faces_http import HttpFaceBackend

        return HttpFaceBackend(settings.faces_inference_url)
    from eventsvc.inference.dlib_faces import DlibFaceBackend, DlibSettings

    return DlibFaceBackend(DlibSettings.from_settings(settings))


def faces_spec(settings: Settings) -> ConsumerSpec:
    return _spec(
        settings,
        "faces",
        "content.*.HashComputed",
        "HashComputed (images) -> FacesDetected (once per content and model)",
    )


async def _faces_worker(event_log: EventLog, settings: Settings, roots: LibraryRoots) -> Worker:
    from eventsvc.derive.faces import FacesDeriver, FacesWorker

    spec = faces_spec(settings)
    from eventsvc.media.sandbox import shared_sandbox

    box = shared_sandbox(settings, prestart=settings.faces_concurrency)
    deriver = FacesDeriver(roots, event_log, face_backend(settings), settings.faces_max_edge, box)
    return FacesWorker(
        event_log,
        spec,
        deriver,
        concurrency=settings.faces_concurrency,
        recheck_interval=settings.faces_recheck_interval,
    )


async def _people_worker(event_log: EventLog, settings: Settings, roots: LibraryRoots) -> Worker:
    from eventsvc.derive.people import Clusterer, PeopleWorker, people_spec

    base = _spec(settings, "people", "content.*.FacesDetected.*", "")
    clusterer = Clusterer(settings.people_threshold, settings.people_min_samples)
    return PeopleWorker(event_log, people_spec(settings.subject_prefix, base), clusterer)


def playlist_spec(settings: Settings) -> ConsumerSpec:
    return _spec(
        settings,
        "playlist",
        "content.*.HashComputed",
        "HashComputed (videos) -> PlaylistReady (HLS, poster, preview; once per content)",
    )


async def _playlist_worker(event_log: EventLog, settings: Settings, roots: LibraryRoots) -> Worker:
    from eventsvc.derive.playlist import PlaylistDeriver, PlaylistWorker

    try:
        import av  # noqa: F401

        from eventsvc.video.ffmpeg import ffmpeg_exe

        exe = ffmpeg_exe()
    except Exception as exc:  # ImportError, or imageio-ffmpeg without its binary
        why = f"no ffmpeg/PyAV ({exc}); install eventsvc[video] for HLS playlists"
        return PlaylistWorker(
            event_log, playlist_spec(settings), None, settings, roots, disabled=why
        )
    deriver = PlaylistDeriver(roots, event_log, settings, exe)
    return PlaylistWorker(event_log, playlist_spec(settings), deriver, settings, roots)


FACTORIES: dict[str, WorkerFactory] = {
    "hasher": _hasher_worker,
    "media": _media_worker,
    "clip": _clip_worker,
    "faces": _faces_worker,
    "people": _people_worker,
    "playlist": _playlist_worker,
}
"""Every worker ``eventsvc up`` runs, by name. A factory imports its optional
dependencies itself, so a missing extra only affects its own worker."""

WORKERS = tuple(FACTORIES)


async def make_worker(
    name: str, event_log: EventLog, settings: Settings, libraries: list[Library]
) -> Worker:
    factory = FACTORIES.get(name)
    if factory is None:
        raise ConfigError(f"unknown worker {name!r}; known: {', '.join(WORKERS)}")
    roots = LibraryRoots(libraries)
    await roots.refresh(event_log)
    return await factory(event_log, settings, roots)


@asynccontextmanager
async def open_log(settings: Settings, *, embedded: bool | None = None) -> AsyncIterator[EventLog]:
    """Connect to ``settings.nats_url``; else to the embedded server of the data dir,
    starting it when no other eventsvc runs one there."""
    server: EmbeddedNats | None = None
    url = settings.nats_url
    if url is None:
        server = EmbeddedNats(settings.nats_store_dir)
        if embedded is not True and server.url_file.exists():
            url = server.url_file.read_text().strip()
            try:
                event_log = await EventLog.connect(
                    url, stream=settings.stream, prefix=settings.subject_prefix, connect_timeout=2
                )
            except LogUnavailable:
                url = None
            else:
                server = None
                try:
                    await event_log.ensure_stream()
                    yield event_log
                finally:
                    await event_log.close()
                return
        url = server.start()  # on this thread: the server's life is tied to it (PDEATHSIG)
        log.info("embedded nats-server at %s (store %s)", url, settings.nats_store_dir)
    try:
        event_log = await EventLog.connect(
            url, stream=settings.stream, prefix=settings.subject_prefix
        )
        event_log.replicas = settings.stream_replicas
        try:
            await event_log.ensure_stream()
            yield event_log
        finally:
            await event_log.close()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def,override]
        yield  # the runtime owns the signals


class ApiServer:
    def __init__(self, app: Any, host: str, port: int) -> None:
        cfg = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = _Server(cfg)

    async def run(self, stop: asyncio.Event) -> None:
        task = asyncio.create_task(self._serve())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        self.server.should_exit = True
        stopper.cancel()
        await task

    async def _serve(self) -> None:
        cfg = self.server.config
        try:
            await self.server.serve()
        except SystemExit as exc:  # uvicorn exits when it cannot bind
            raise ConfigError(
                f"the API could not listen on {cfg.host}:{cfg.port} (port in use?)"
            ) from exc
        if not self.server.started:
            raise ConfigError(f"the API could not listen on {cfg.host}:{cfg.port} (port in use?)")
