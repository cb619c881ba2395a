"""The long-running commands: `up` (everything in one process) and each component."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from eventsvc.cli_support import (
    keep_libraries,
    libraries_for,
    settings_for,
    until_signalled,
)
from eventsvc.core.errors import EventsvcError
from eventsvc.core.library_ids import (
    log_library_ids,
)

__all__ = ["cmd_api", "cmd_project", "cmd_rebuild", "cmd_scan", "cmd_up", "cmd_worker"]

log = logging.getLogger("eventsvc")


async def cmd_up(args: argparse.Namespace) -> int:
    from eventsvc.components import (
        FACTORIES,
        ApiServer,
        SandboxDecoder,
        make_worker,
        nats_access,
    )
    from eventsvc.inference.models import ConfiguredClip
    from eventsvc.scanner import Scanner
    from eventsvc.server_watch import ServerWatchdog
    from eventsvc.supervise import Health
    from projections.app import create_app
    from projections.projector import Projector

    settings = settings_for(args)
    libraries, extra = libraries_for(args, settings)
    if not libraries:
        raise EventsvcError("no libraries: give PATH arguments or --config FILE")
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
        scanner = Scanner(scanner_log, libraries, settings, extra_excludes=extra)
        workers = [
            await make_worker(n, await nats.connect(n), settings, libraries)
            for n in settings.workers
        ]
        projector = Projector(
            await nats.connect("projector"), settings.readmodel_dir, batch=settings.projector_batch
        )

        api_log = await nats.connect("api")
        health = Health()
        for name, component in (
            ("scanner", scanner),
            *((w.name, w) for w in workers),
            ("projector", projector),
        ):
            health.watch(name, component.event_log)
        health.watch("api", api_log)
        for w in workers:
            health.probe(w.name, lambda w=w: _paused(w.stats))
        health.probe("projector", lambda: _paused(projector.status))
        runners = [scanner.run, *(w.run for w in workers), projector.run]
        if nats.server is not None:  # our own server: restarted when it needs it
            watchdog = ServerWatchdog(
                nats.server, scanner_log, publishers=[c.event_log for c in (scanner, *workers)]
            )
            health.probe("nats-server", lambda: watchdog.trouble)
            runners.append(watchdog.run)

        def extra_status() -> dict[str, Any]:
            return {
                "health": health.state(),
                "scanner": {k: vars(r) for k, r in scanner.reports.items()},
                "workers": {w.name: vars(w.stats) for w in workers},
                "projector": vars(projector.status) | {"path": str(projector.status.path)},
            }

        app = create_app(
            settings,
            event_log=api_log,
            extra_status=extra_status,
            libraries=libraries,
            clip=ConfiguredClip(settings),
            originals=SandboxDecoder(settings),
        )
        runners.append(ApiServer(app, settings.api_host, settings.api_port).run)
        log.info(
            "eventsvc up: %d libraries, API on http://%s:%d, data in %s",
            len(libraries),
            settings.api_host,
            settings.api_port,
            settings.data_dir,
        )
        await until_signalled(runners, health=health)
    return 0


def _paused(stats: Any) -> tuple[str, float] | None:
    why = getattr(stats, "paused", None)
    return (why, getattr(stats, "paused_since", None) or 0.0) if why else None


async def cmd_scan(args: argparse.Namespace) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

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
            await until_signalled([scanner.run])
        return 0
    async with open_log(settings, role="scanner") as event_log:
        libraries, extra = libraries_for(args, settings, await log_library_ids(event_log))
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed} published"),
            TimeElapsedColumn(),
            disable=not sys.stderr.isatty(),
            transient=True,
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(lib_id: str, n: int) -> None:
                if lib_id not in tasks:
                    tasks[lib_id] = bar.add_task(f"scanning {lib_id}", total=None)
                bar.update(tasks[lib_id], completed=n)

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
        worker = await make_worker(args.name, event_log, settings, libraries)
        await until_signalled([worker.run])
    return 0


async def cmd_project(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from projections.projector import Projector

    settings = settings_for(args)
    async with open_log(settings, role="projector") as event_log:
        projector = Projector(event_log, settings.readmodel_dir, batch=settings.projector_batch)
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
        app = create_app(
            settings, event_log=event_log, libraries=libraries,
            clip=ConfiguredClip(settings), originals=SandboxDecoder(settings),
        )  # fmt: skip
        await until_signalled([ApiServer(app, settings.api_host, settings.api_port).run])
    return 0


async def cmd_rebuild(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from eventsvc.components import open_log
    from projections.projector import rebuild

    settings = settings_for(args)
    async with open_log(settings, role="projector") as event_log:
        with Progress(disable=not sys.stderr.isatty(), transient=True) as bar:
            task = bar.add_task("replaying", total=None)
            path, seq = await rebuild(
                event_log,
                settings.readmodel_dir,
                progress=lambda s, t: bar.update(task, completed=s, total=t),
                process={"auto": None, "process": True, "thread": False}[args.applier],
            )
    print(json.dumps({"generation": path.name, "last_seq": seq}))
    return 0
