"""Building the components from settings: the log connection, workers, projector, API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import uvicorn

from eventsvc.core.errors import ConfigError, LogError
from eventsvc.core.events import FileSeen, HashComputed
from eventsvc.core.library_config import LibraryCatalog
from eventsvc.core.log import ConsumerSpec, EventLog
from eventsvc.core.natsauth import (
    AuthStore,
    Credentials,
    credentials_for,
    private_dir,
)
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.settings import Library, Settings
from eventsvc.derive.hashing import Hasher
from eventsvc.derive.media import MediaDeriver
from eventsvc.derive.worker import Worker
from eventsvc.inference.models import face_backend
from eventsvc.server import EmbeddedNats, wait_for_port

if TYPE_CHECKING:
    from PIL import Image

    from eventsvc.media.sandbox import DecodeSandbox

__all__ = [
    "FACTORIES",
    "WORKERS",
    "ApiServer",
    "NatsAccess",
    "SandboxDecoder",
    "clip_spec",
    "faces_spec",
    "hasher_spec",
    "make_worker",
    "media_spec",
    "nats_access",
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
    from eventsvc.derive.rederive import MediaWorker
    from eventsvc.media.sandbox import shared_sandbox

    box = shared_sandbox(settings, prestart=settings.media_concurrency)
    deriver = MediaDeriver(roots, settings.thumbs_dir, event_log, box)
    worker = MediaWorker(
        "media",
        event_log,
        media_spec(settings),
        deriver,
        concurrency=settings.media_concurrency,
        batch=max(settings.media_concurrency * 4, 8),
        accepts=(HashComputed,),
    )
    await _with_background(worker, event_log, settings, roots, "media", deriver)
    return worker


async def _with_background(
    worker: Any, event_log: EventLog, settings: Settings, roots: LibraryRoots, stage: str,
    deriver: Any,
) -> None:  # fmt: skip
    """Beside ``worker``, when the settings ask for it, the re-derivation of the contents
    its stage derived with an older version (issue 13), with the same deriver."""
    from eventsvc.derive.rederive import background_durable, make_rederive_worker

    if settings.rederive_background:
        worker.background = await make_rederive_worker(
            event_log, settings, roots, stage, durable=background_durable(stage),
            deriver=deriver, background=True,
        )  # fmt: skip


async def _hasher_worker(event_log: EventLog, settings: Settings, roots: LibraryRoots) -> Worker:
    hasher = Hasher(roots, threads=settings.hash_concurrency)
    batched = settings.hash_batch > 1
    return Worker(
        "hasher",
        event_log,
        hasher_spec(settings),
        hasher,
        concurrency=settings.hash_concurrency,
        batch=settings.hash_batch if batched else max(settings.hash_concurrency * 4, 8),
        accepts=(FileSeen,),
        many=hasher.many if batched else None,
    )


async def _clip_worker(event_log: EventLog, settings: Settings, roots: LibraryRoots) -> Worker:
    from eventsvc.derive.clip import make_clip_worker

    return make_clip_worker(event_log, settings, roots, clip_spec(settings))


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
    worker = FacesWorker(
        event_log,
        spec,
        deriver,
        concurrency=settings.faces_concurrency,
        recheck_interval=settings.faces_recheck_interval,
    )
    await _with_background(worker, event_log, settings, roots, "faces", deriver)
    return worker


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
        import importlib.util

        if importlib.util.find_spec("av") is None:  # found, not imported: ~20 MiB (issue 18)
            raise ImportError("No module named 'av'")
        from eventsvc.video.ffmpeg import ffmpeg_exe

        exe = ffmpeg_exe()
    except Exception as exc:  # ImportError, or imageio-ffmpeg without its binary
        why = f"no ffmpeg/PyAV ({exc}); install eventsvc[video] for HLS playlists"
        return PlaylistWorker(
            event_log, playlist_spec(settings), None, settings, roots, disabled=why
        )
    from eventsvc.media.sandbox import shared_sandbox

    deriver = PlaylistDeriver(roots, event_log, settings, exe, sandbox=shared_sandbox(settings))
    worker = PlaylistWorker(event_log, playlist_spec(settings), deriver, settings, roots)
    await _with_background(worker, event_log, settings, roots, "playlist", deriver)
    return worker


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
    name: str, event_log: EventLog, settings: Settings, libraries: list[Library],
    catalog: LibraryCatalog | None = None,
) -> Worker:  # fmt: skip
    factory = FACTORIES.get(name)
    if factory is None:
        raise ConfigError(f"unknown worker {name!r}; known: {', '.join(WORKERS)}")
    roots = LibraryRoots(libraries, follow_symlinks=settings.follow_symlinks, catalog=catalog)
    if not libraries and catalog is None and name != "people":
        log.warning(
            "worker %s: no libraries configured on this host: every file it is asked to read "
            "fails with 'library X is not configured on this host' (give --config FILE or "
            "EVENTSVC_LIBRARIES_FILE; roots are never taken from the log)", name,
        )  # fmt: skip
    await roots.refresh(event_log)
    return await factory(event_log, settings, roots)


class NatsAccess:
    """Where NATS is and how each component logs in: one user (and connection) per
    component, so a bug or a compromise in one cannot publish another's facts.

    Credentials, first found: ``nats_user``/``nats_password`` (every connection of the
    process as that user), ``nats_creds_dir/<role>.json`` (a user per role), the
    embedded server's generated ``<data_dir>/nats/auth/<role>.json``; else none (a
    server without authorization)."""

    def __init__(self, settings: Settings, url: str, store: AuthStore | None) -> None:
        self.settings = settings
        self.url = url
        self.store = store
        self.logs: list[EventLog] = []
        self.started_server = False
        self.server: EmbeddedNats | None = None
        """The embedded server this access started (``up`` watches it)."""
        """Whether this access started the embedded server (it stops with it)."""
        self.monitor_url: str | None = None
        """The embedded server's HTTP monitoring endpoint (``/varz``, ``/jsz``), if any."""

    @property
    def authenticated(self) -> bool:
        s = self.settings
        return bool(s.nats_user or s.nats_creds_dir or self.store)

    def credentials(self, role: str) -> Credentials | None:
        return credentials_for(self.settings, role, self.store)

    def _may_manage(self) -> bool:
        """Whether setup can run as a user allowed to manage streams (or try to)."""
        s = self.settings
        if s.nats_user:
            return False  # one user for everything: a component's, unless `eventsvc setup`
        if not self.authenticated:
            return True
        if s.nats_creds_dir is not None:
            return (s.nats_creds_dir / "admin.json").exists()
        return True

    async def connect(
        self,
        role: str,
        *,
        connect_timeout: float = 5.0,
        manage: bool = False,
        update: bool = True,
        require_stream: bool = True,
    ) -> EventLog:
        """A connection as ``role``'s user; closed with this access. It checks that the
        stream exists (unless not ``require_stream``: a reader reports a missing one);
        only with ``manage`` (``setup``, as the admin) it creates the stream, and
        updates its configuration with ``update`` too."""
        creds = self.credentials(role)
        s = self.settings
        event_log = await EventLog.connect(
            self.url,
            stream=s.stream,
            prefix=s.subject_prefix,
            name=f"eventsvc-{role}",
            credentials=creds,
            connect_timeout=connect_timeout,
            reconnect_wait=s.nats_reconnect_wait,
        )
        self.logs.append(event_log)
        event_log.replicas = s.stream_replicas
        try:
            if manage or require_stream:
                await event_log.ensure_stream(manage=manage, update=manage and update)
        except BaseException:
            await self.release(event_log)
            raise
        return event_log

    async def release(self, event_log: EventLog) -> None:
        with contextlib.suppress(ValueError):
            self.logs.remove(event_log)
        await event_log.close()

    async def setup(self, *, force: bool = False, update: bool = True) -> None:
        """As the admin: create the stream and the status bucket (components may write
        their status keys but not create buckets), and with ``update`` (`eventsvc up`,
        `eventsvc setup`) bring the stream's configuration up to date. Skipped where no
        admin credentials are known, unless ``force`` (`eventsvc setup`)."""
        if not (force or self._may_manage()):
            return  # components check that the stream is there
        admin = await self.connect("admin", manage=True, update=update)
        try:
            if self.authenticated:
                try:
                    await admin.ensure_status_bucket()
                except LogError as exc:
                    log.warning("%s; scan and worker status will not be kept", exc)
        finally:
            await self.release(admin)

    async def close(self) -> None:
        """Every connection at once (each close is bounded: EventLog.CLOSE_TIMEOUT)."""
        await asyncio.gather(*(self.release(lg) for lg in list(self.logs)))


@asynccontextmanager
async def nats_access(
    settings: Settings, *, embedded: bool | None = None
) -> AsyncIterator[NatsAccess]:
    """``settings.nats_url``; else the embedded server of the data dir, started here
    unless another eventsvc runs it (``embedded=True``: always start it)."""
    server: EmbeddedNats | None = None
    try:
        private_dir(settings.data_dir)  # 0700: read model, derived files, NATS store
        if settings.nats_url is None:
            private_dir(settings.nats_store_dir)
    except OSError as exc:
        raise ConfigError(
            f"cannot use the data dir {settings.data_dir}: {exc.strerror} (its NATS "
            "server and credentials belong to the data dir's owner)"
        ) from exc
    if settings.nats_url is not None:
        access = NatsAccess(settings, settings.nats_url, None)
    else:
        server = EmbeddedNats(
            settings.nats_store_dir,
            auth=True,
            stream=settings.stream,
            prefix=settings.subject_prefix,
            port=settings.nats_port or None,
            monitor_port=settings.nats_monitor_port or None,
            monitor_host=settings.nats_monitor_host,
            memory_limit=settings.nats_memory_limit,
            gogc=settings.nats_gogc,
        )
        url = _running_url(server) if embedded is not True else None
        if url is not None:
            server = None
        else:
            url = server.start()  # on this thread: the server's life is tied to it
            log.info(
                "embedded nats-server at %s (monitoring %s, store %s)",
                url, server.monitor_url or "off", settings.nats_store_dir,
            )  # fmt: skip
        access = NatsAccess(settings, url, AuthStore(settings.nats_store_dir / "auth"))
        access.started_server = server is not None
        access.monitor_url = _monitor_url(settings)
        access.server = server
    try:
        yield access
    finally:
        await access.close()
        if server is not None:
            await asyncio.to_thread(server.stop)


def _monitor_url(settings: Settings) -> str | None:
    """The monitoring URL the embedded server of the data dir wrote (it runs)."""
    try:
        return (settings.nats_store_dir / "nats.monitor.url").read_text().strip() or None
    except OSError:
        return None


def _running_url(server: EmbeddedNats) -> str | None:
    """The URL of the embedded server another eventsvc runs on this store, if it listens."""
    try:
        url = server.url_file.read_text().strip()
        host, port = url.rsplit("//", 1)[-1].rsplit(":", 1)
        return url if wait_for_port(host, int(port), 1.0) else None
    except (OSError, ValueError):
        return None


@asynccontextmanager
async def open_log(
    settings: Settings,
    *,
    role: str = "admin",
    embedded: bool | None = None,
    reader: bool = False,
) -> AsyncIterator[EventLog]:
    """One connection as ``role``'s user (see ``NatsAccess``), after the admin made sure
    the stream exists (never changing an existing stream's configuration: only `up`
    and `setup` do); the embedded server is started when nobody runs it. A ``reader``
    (`status`, `events`) changes nothing: it does not even create a missing stream."""
    async with nats_access(settings, embedded=embedded) as access:
        if not reader:
            await access.setup(update=False)
        yield await access.connect(role, require_stream=not reader)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def,override]
        yield  # the runtime owns the signals


class SandboxDecoder:
    """The read side's :class:`projections.api.crops.OriginalDecoder` (face crops of a
    photo without a thumbnail yet): the original decoded in the decode sandbox of
    ``settings`` (or the ``sandbox`` given), never in the API process."""

    def __init__(
        self, settings: Settings | None = None, *, sandbox: DecodeSandbox | None = None
    ) -> None:
        if settings is None and sandbox is None:
            raise ValueError("give settings or a sandbox")
        self.settings = settings
        self.sandbox = sandbox

    def __call__(self, fd: int, max_edge: int, *, raw: bool) -> Image.Image:
        from eventsvc.media.load import load_upright
        from eventsvc.media.sandbox import shared_sandbox

        box = self.sandbox if self.sandbox is not None else shared_sandbox(self.settings)
        return load_upright("faces", fd, max_edge, raw=raw, sandbox=box)


class ApiServer:
    def __init__(self, app: Any, host: str, port: int) -> None:
        # log_config=None, log_level=None: uvicorn keeps the process's logging (core.logs)
        cfg = uvicorn.Config(
            app, host=host, port=port, log_config=None, log_level=None, lifespan="on"
        )
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
