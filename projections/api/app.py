"""``create_app``: the Litestar application for the read side."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.template import TemplateConfig

from eventsvc.core.errors import ConfigError, LogUnavailable
from eventsvc.core.inference import ClipBackends
from eventsvc.core.library_config import LibraryCatalog
from eventsvc.core.log import EventLog
from eventsvc.core.logs import litestar_logging
from eventsvc.core.metrics import ProcessMetrics
from eventsvc.core.natsauth import credentials_for
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.settings import Library, Settings, load_libraries
from projections.api.auth import PUBLIC, Access, access_guard
from projections.api.context import ApiContext, provide_context
from projections.api.crops import OriginalDecoder
from projections.api.docs import fix_allow, openapi_config, static_router
from projections.api.duplicates import DuplicatesController
from projections.api.errors import EXCEPTION_HANDLERS
from projections.api.health import HealthController
from projections.api.libraries import LibrariesController
from projections.api.login import AuthController
from projections.api.memories import MemoriesController
from projections.api.metrics import ApiMetrics, metrics_endpoint, request_timer
from projections.api.people import FacesController, PeopleController
from projections.api.photos import PhotosController
from projections.api.pipeline import PipelineController
from projections.api.search import SearchController
from projections.api.tags import TagsController
from projections.api.tokens import check_bind, load_tokens
from projections.api.videos import VideosController

__all__ = ["create_api"]

log = logging.getLogger(__name__)


async def _connect(ctx: ApiContext, url: str) -> None:
    """Connect in the background: nats-py keeps retrying an unreachable server."""
    s = ctx.settings
    try:
        creds = credentials_for(s, "api")  # as the api user when NATS has users
        ctx.event_log = await EventLog.connect(
            url, stream=s.stream, prefix=s.subject_prefix, credentials=creds
        )
    except (LogUnavailable, ConfigError) as exc:
        log.warning("api: %s; /pipeline reports it", exc)
        ctx.nats_error = str(exc)
    else:
        ctx.owns_log = True
        ctx.nats_error = None
        log.info("api: connected to NATS at %s", url)


def _lifespan(ctx: ApiContext, connect_wait: float) -> Callable[[Litestar], Any]:
    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        url = ctx.settings.nats_url
        task: asyncio.Task[None] | None = None
        if ctx.event_log is None and url:
            ctx.nats_error = f"not connected to NATS at {url} yet"
            task = asyncio.create_task(_connect(ctx, url), name="api-nats-connect")
            try:
                await asyncio.wait_for(asyncio.shield(task), connect_wait)
            except TimeoutError:
                log.warning("api: NATS at %s not reachable yet; still trying", url)
        try:
            yield
        finally:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if ctx.owns_log and ctx.event_log is not None:
                await ctx.event_log.close()
                ctx.event_log = None
                ctx.owns_log = False

    return lifespan


def create_api(
    settings: Settings,
    *,
    pages: Sequence[Any] = (),
    template_config: TemplateConfig | None = None,
    event_log: EventLog | None = None,
    extra_status: Callable[[], dict[str, Any]] | None = None,
    nats_connect_wait: float = 2.0,
    libraries: list[Library] | None = None,
    clip: ClipBackends | None = None,
    originals: OriginalDecoder | None = None,
    metrics: ProcessMetrics | None = None,
    catalog: LibraryCatalog | None = None,
) -> Litestar:
    """The read API (plus ``pages``: route handlers mounted beside it, rendered with
    ``template_config``; :func:`projections.app.create_app` passes the web app's).
    Pass ``event_log`` to share a connection (it is then not closed here); otherwise
    ``settings.nats_url`` is connected on startup when set. Startup waits at most
    ``nats_connect_wait`` seconds for NATS, then keeps trying behind.
    Originals and face crops are read only under ``libraries`` (default: those of
    ``settings.libraries_file``), never under a root the log names. ``clip``: the CLIP
    back-ends text search encodes queries with, as the composition builds them
    (:class:`eventsvc.inference.models.ConfiguredClip`); None: search answers 503.
    ``originals``: decodes an original for a face crop of a photo without a thumbnail
    (:class:`eventsvc.components.SandboxDecoder`); None: such a crop answers 404.
    ``metrics``: the process's registry ``GET /metrics`` serves (``up``: the one its
    workers, scanner and projector count in); None: one of this app's own.
    ``catalog``: the library configuration fold the composition keeps current; libraries
    it adds are served from their roots too, removed ones no more (issue 16).
    """
    tokens = load_tokens(settings)  # a bad tokens file or an open API off loopback: ConfigError
    check_bind(settings, tokens)
    access = Access(settings, tokens)
    if libraries is None:
        libraries = (
            load_libraries([], settings.libraries_file)[0] if settings.libraries_file else []
        )
    ctx = ApiContext(
        settings=settings,
        event_log=event_log,
        extra_status=extra_status,
        nats_error=None if event_log or settings.nats_url else "no NATS URL configured",
        roots=LibraryRoots(libraries, follow_symlinks=settings.follow_symlinks, catalog=catalog),
    )
    api_metrics = ApiMetrics(metrics)
    return Litestar(
        logging_config=litestar_logging(),
        route_handlers=[
            HealthController,
            AuthController,
            LibrariesController,
            SearchController,
            PhotosController,
            DuplicatesController,
            PipelineController,
            PeopleController,
            FacesController,
            VideosController,
            TagsController,
            MemoriesController,
            metrics_endpoint,
            static_router(PUBLIC),
            *pages,
        ],
        before_send=[fix_allow],
        middleware=[request_timer(api_metrics)],
        dependencies={"ctx": Provide(provide_context, sync_to_thread=False)},
        guards=[access_guard(access)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[_lifespan(ctx, nats_connect_wait)],
        state=State(
            {
                "ctx": ctx,
                "access": access,
                "clip": clip,
                "originals": originals,
                "metrics": api_metrics,
            }
        ),
        openapi_config=openapi_config(),
        template_config=template_config,
    )
