"""The long-running commands: `up` (everything in one process) and each component."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from eventsvc.cli_progress import ProgressBar
from eventsvc.cli_support import (
    keep_libraries,
    libraries_for,
    settings_for,
    until_signalled,
)
from eventsvc.core.errors import EventsvcError
from eventsvc.core.library_config import (
    CatalogFollower,
    LibraryCatalog,
    load_catalog,
    reconcile,
)
from eventsvc.core.library_ids import (
    log_library_ids,
)
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library, Settings

if TYPE_CHECKING:
    from eventsvc.components import ApiServer
    from eventsvc.core.settings import Settings

__all__ = ["cmd_api", "cmd_project", "cmd_rebuild", "cmd_scan", "cmd_up", "cmd_worker"]

log = logging.getLogger("eventsvc")


@contextlib.contextmanager
def metrics_served(settings: Any) -> Iterator[Any]:
    """This process's metrics, served on ``settings.metrics_port`` (if set) meanwhile."""
    from eventsvc.core.metrics import ProcessMetrics, serve

    metrics = ProcessMetrics()
    server = serve(metrics, settings.metrics_host, settings.metrics_port)
    try:
        yield metrics
    finally:
        if server is not None:
            server.close()


async def reconcile_libraries(
    event_log: EventLog, settings: Settings, libraries: list[Library], *, given: bool = True
) -> LibraryCatalog:
    """Publish what the TOML file / CLI roots say that the log does not yet (issue 16):
    LibraryAdded for a library it lacks, LibraryUpdated for a changed name, excludes or
    enabled flag, nothing when it already says the same. Returns the catalog after.
    Libraries not ``given`` (those the last ``up`` kept in the data dir) are reconciled
    only into a log without any configuration yet (the first start after upgrading):
    after that the log is the configuration, changes made through the API included."""
    catalog = await load_catalog(event_log, settings.data_dir)
    if not given and (catalog.seq or catalog.last_removed or catalog.refused):
        return catalog
    events = reconcile(libraries, catalog)
    for ev in events:
        await event_log.publish(ev)
        log.info("library configuration: %s %s", ev.type, ev.key)  # type: ignore[attr-defined]
    return await load_catalog(event_log, settings.data_dir) if events else catalog


async def cmd_up(args: argparse.Namespace) -> int:
    from eventsvc.components import (
        FACTORIES,
        ApiServer,
        SandboxDecoder,
        make_worker,
        nats_access,
    )
    from eventsvc.core.metrics import ProcessMetrics
    from eventsvc.inference.models import ConfiguredClip
    from eventsvc.scanner import Scanner
    from projections.app import create_app
    from projections.projector import Projector

    settings = settings_for(args)
    libraries, extra = libraries_for(args, settings)
    if not libraries:  # libraries may be in the log already, or be added through the API
        log.warning(
            "eventsvc up: no libraries given (PATH or --config); serving those the log "
            "configures; add one with POST /libraries"
        )
    unknown = [n for n in settings.workers if n not in FACTORIES]
    if unknown:
        raise EventsvcError(f"unknown workers {unknown}; known: {', '.join(FACTORIES)}")
    if settings.nats_user:
        log.warning(
            "every component connects as NATS user %r: it needs every component's "
            "permissions; EVENTSVC_NATS_CREDS_DIR gives each its own user",
            settings.nats_user,
        )
    async with nats_access(settings, embedded=settings.nats_url is None) as nats:
        await nats.setup()
        # one connection (and NATS user) per component: each may publish its own facts only
        scanner_log = await nats.connect("scanner")
        # a root the log already knows keeps its id (the read model may lag or be gone)
        libraries, extra = libraries_for(args, settings, await log_library_ids(scanner_log))
        keep_libraries(settings, libraries, extra)
        api_log = await nats.connect("api")
        # the TOML file / CLI roots become library configuration events (none when the
        # log already says the same); from then on the log's configuration is followed
        given = bool(getattr(args, "paths", None)) or settings.libraries_file is not None
        catalog = await reconcile_libraries(api_log, settings, libraries, given=given)
        scanner = Scanner(
            scanner_log, catalog.enabled(), settings, extra_excludes=extra,
            catalog=CatalogFollower(scanner_log, catalog),
        )  # fmt: skip
        workers = [
            await make_worker(n, await nats.connect(n), settings, libraries, catalog=catalog)
            for n in settings.workers
        ]
        projector = Projector(
            await nats.connect("projector"), settings.readmodel_dir, batch=settings.projector_batch
        )
        metrics = ProcessMetrics()  # all of up's, on the API's GET /metrics
        metrics.add_scanner(scanner)
        for w in workers:
            metrics.add_worker(w)
        metrics.add_projector(projector)

        def extra_status() -> dict[str, Any]:
            return {
                "scanner": {k: vars(r) for k, r in scanner.reports.items()},
                "workers": {w.name: vars(w.stats) for w in workers},
                "projector": vars(projector.status) | {"path": str(projector.status.path)},
            }

        app = create_app(
            settings,
            event_log=api_log,
            extra_status=extra_status,
            libraries=libraries,
            catalog=catalog,
            clip=ConfiguredClip(settings),
            originals=SandboxDecoder(settings),
            metrics=metrics,
        )
        api = ApiServer(app, settings.api_host, settings.api_port)
        log.info(
            "eventsvc up: %d libraries, API on http://%s:%d, data in %s",
            len(catalog.libraries),
            settings.api_host,
            settings.api_port,
            settings.data_dir,
        )
        announce = _announce_when_listening(api, settings, nats.url, nats.monitor_url)
        await until_signalled(
            [scanner.run, *(w.run for w in workers), projector.run, api.run, announce]
        )
    return 0


def _browse_url(host: str, port: int) -> str:
    """The URL to open for an API on ``host:port`` (a wildcard bind: this machine)."""
    if host in {"", "0.0.0.0", "::", "[::]"}:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _announce_when_listening(
    api: ApiServer, settings: Settings, nats_url: str, monitor_url: str | None
) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    """`up`'s first line on stdout, once the API listens: the URL to open (issue 14)."""

    async def announce(stop: asyncio.Event) -> None:
        while not api.server.started:
            if stop.is_set():
                return
            await asyncio.sleep(0.05)
        url = _browse_url(settings.api_host, settings.api_port)
        monitor = f", monitoring {monitor_url}" if monitor_url else ""
        print(f"eventsvc is up: open {url}", flush=True)
        print(f"  NATS {nats_url}{monitor} (`eventsvc nats-context` for the nats CLI)", flush=True)
        await stop.wait()

    return announce


async def cmd_scan(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from eventsvc.scanner import Scanner

    settings = settings_for(args)
    libraries, extra = libraries_for(args, settings)
    if not libraries:
        raise EventsvcError("no libraries: give PATH arguments or --config FILE")
    if args.loop:
        async with open_log(settings, role="scanner") as event_log:
            libraries, extra = libraries_for(args, settings, await log_library_ids(event_log))
            scanner = Scanner(event_log, libraries, settings, extra_excludes=extra)
            with metrics_served(settings) as metrics:
                metrics.add_scanner(scanner)
                await until_signalled([scanner.run])
        return 0
    async with open_log(settings, role="scanner") as event_log:
        libraries, extra = libraries_for(args, settings, await log_library_ids(event_log))
        with ProgressBar() as bar:
            tasks: dict[str, int] = {}

            def progress(lib_id: str, n: int) -> None:  # files published (new or changed)
                if lib_id not in tasks:
                    tasks[lib_id] = bar.add(f"scanning {lib_id}: published")
                bar.update(tasks[lib_id], n)

            scanner = Scanner(
                event_log, libraries, settings, extra_excludes=extra, progress=progress
            )
            await scanner.load()
            reports = await scanner.tick(full=not args.quick, accept_missing=args.accept_missing)
            if args.accept_missing:  # no next tick: record every accepted deletion now
                await scanner.drain_all(reports)
    for r in reports:
        print(json.dumps(vars(r)))
    return 0 if all(r.state == "online" for r in reports) else 3


async def cmd_worker(args: argparse.Namespace) -> int:
    from eventsvc.components import FACTORIES, make_worker, open_log

    settings = settings_for(args)
    libraries, _ = libraries_for(args, settings)
    if args.name not in FACTORIES:
        raise EventsvcError(f"unknown worker {args.name!r}; known: {', '.join(FACTORIES)}")
    async with open_log(settings, role=args.name) as event_log:
        # the ids the scanner uses: a root the log knows keeps its id there too
        libraries, _ = libraries_for(args, settings, await log_library_ids(event_log))
        # libraries configured through the API are read here too, removed ones no more
        follower = CatalogFollower(event_log, await load_catalog(event_log, settings.data_dir))
        worker = await make_worker(
            args.name, event_log, settings, libraries, catalog=follower.catalog
        )
        with metrics_served(settings) as metrics:
            metrics.add_worker(worker)
            await until_signalled([worker.run, follower.run])
    return 0


async def cmd_project(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from projections.projector import Projector

    settings = settings_for(args)
    async with open_log(settings, role="projector") as event_log:
        projector = Projector(event_log, settings.readmodel_dir, batch=settings.projector_batch)
        with metrics_served(settings) as metrics:
            metrics.add_projector(projector)
            await until_signalled([projector.run])
    return 0


async def cmd_api(args: argparse.Namespace) -> int:
    from eventsvc.components import ApiServer, SandboxDecoder, open_log
    from eventsvc.inference.models import ConfiguredClip
    from projections.app import create_app

    settings = settings_for(args)
    libraries, _ = libraries_for(args, settings)  # originals are served from these roots only
    async with open_log(settings, role="api") as event_log:
        libraries, _ = libraries_for(args, settings, await log_library_ids(event_log))
        # libraries added through any API are served from their roots too (issue 16)
        follower = CatalogFollower(event_log, await load_catalog(event_log, settings.data_dir))
        app = create_app(
            settings, event_log=event_log, libraries=libraries,
            clip=ConfiguredClip(settings), originals=SandboxDecoder(settings),
            catalog=follower.catalog,
        )  # fmt: skip
        api = ApiServer(app, settings.api_host, settings.api_port)
        await until_signalled([api.run, follower.run])
    return 0


async def cmd_rebuild(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from projections.projector import rebuild

    settings = settings_for(args)
    async with open_log(settings, role="projector") as event_log:
        with ProgressBar() as bar:
            task = bar.add("replaying")
            path, seq = await rebuild(
                event_log,
                settings.readmodel_dir,
                progress=lambda s, t: bar.update(task, s, t),
                process={"auto": None, "process": True, "thread": False}[args.applier],
            )
    print(json.dumps({"generation": path.name, "last_seq": seq}))
    return 0
