"""`eventsvc …`: the main job (`up`) and each component on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from eventsvc.errors import ConfigError, EventsvcError
from eventsvc.library_ids import (
    event_types,
    library_filter,
    log_library_ids,
    read_model_library_ids,
)
from eventsvc.settings import Library, Settings, load_libraries

__all__ = ["main"]

log = logging.getLogger("eventsvc")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for flag, key in (
        ("data_dir", "data_dir"),
        ("port", "api_port"),
        ("host", "api_host"),
        ("nats_url", "nats_url"),
        ("config", "libraries_file"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "no_watch", False):
        overrides["watch"] = False
    if getattr(args, "insecure_no_auth", False):
        overrides["api_allow_unauthenticated"] = True
    return Settings(**overrides)


UP_LIBRARIES = "libraries.toml"
"""What ``up`` was given, kept (0600) in its data dir for the other commands on that dir."""


def _libraries(
    args: argparse.Namespace, settings: Settings, log_ids: Mapping[str, str] | None = None
) -> tuple[list[Library], list[str]]:
    """PATH arguments and/or ``--config``; else the libraries the last ``eventsvc up`` on
    this data dir was given (configuration its owner wrote, never roots from the log).

    A library given without an id keeps the one this data dir knows for its root (the
    kept libraries, then ``log_ids``: root -> id from the log, then the read model), so
    ids never change under an existing log; only a new root gets an id from its name."""
    paths = getattr(args, "paths", None) or []
    kept = settings.data_dir / UP_LIBRARIES
    if not paths and settings.libraries_file is None:
        if kept.is_file():
            return load_libraries([], kept)
    known = {**read_model_library_ids(settings), **(log_ids or {})}
    if kept.is_file():
        try:
            known.update({str(lib.root): lib.id for lib in load_libraries([], kept)[0]})
        except ConfigError as exc:
            log.warning("ignoring the kept libraries: %s", exc)
    return load_libraries(paths, settings.libraries_file, known=known)


def _keep_libraries(settings: Settings, libraries: list[Library], excludes: list[str]) -> None:
    """Write what ``up`` serves to ``<data dir>/libraries.toml`` (TOML strings as JSON's)."""
    lines = [f"exclude = {json.dumps(excludes)}", ""]
    for lib in libraries:
        lines += [
            "[[library]]",
            f"id = {json.dumps(lib.id)}",
            f"name = {json.dumps(lib.name)}",
            f"root = {json.dumps(str(lib.root))}",
            f"enabled = {'true' if lib.enabled else 'false'}",
            f"exclude = {json.dumps(list(lib.exclude))}",
            "",
        ]
    target = settings.data_dir / UP_LIBRARIES
    try:
        text = "\n".join(lines)
        text.encode()  # a root that is not valid UTF-8 cannot be written: keep none
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(target)
    except (OSError, UnicodeError) as exc:
        log.warning("cannot keep the libraries in %s: %s", target, exc)


def _setup_logging(level: str) -> None:
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=True)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, handlers=[handler], force=True)
    logging.getLogger("nats").setLevel(logging.WARNING)


async def _until_signalled(
    runners: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]],
) -> None:
    """Run components until SIGINT/SIGTERM or until one of them fails."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(r(stop)) for r in runners]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    error: BaseException | None = None
    for t in done:
        if t is not waiter and t.exception() is not None:
            error = t.exception()
    await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    if error is not None:
        raise error


# ---------------------------------------------------------------- commands


async def cmd_up(args: argparse.Namespace) -> int:
    from eventsvc.components import FACTORIES, ApiServer, make_worker, nats_access
    from eventsvc.scanner import Scanner
    from projections.api import create_app
    from projections.projector import Projector

    settings = _settings(args)
    libraries, extra = _libraries(args, settings)
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
        libraries, extra = _libraries(args, settings, await log_library_ids(scanner_log))
        _keep_libraries(settings, libraries, extra)
        scanner = Scanner(scanner_log, libraries, settings, extra_excludes=extra)
        workers = [
            await make_worker(n, await nats.connect(n), settings, libraries)
            for n in settings.workers
        ]
        projector = Projector(
            await nats.connect("projector"), settings.readmodel_dir, batch=settings.projector_batch
        )

        def extra_status() -> dict[str, Any]:
            return {
                "scanner": {k: vars(r) for k, r in scanner.reports.items()},
                "workers": {w.name: vars(w.stats) for w in workers},
                "projector": vars(projector.status) | {"path": str(projector.status.path)},
            }

        app = create_app(
            settings,
            event_log=await nats.connect("api"),
            extra_status=extra_status,
            libraries=libraries,
        )
        api = ApiServer(app, settings.api_host, settings.api_port)
        log.info(
            "eventsvc up: %d libraries, API on http://%s:%d, data in %s",
            len(libraries),
            settings.api_host,
            settings.api_port,
            settings.data_dir,
        )
        await _until_signalled([scanner.run, *(w.run for w in workers), projector.run, api.run])
    return 0


async def cmd_scan(args: argparse.Namespace) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from eventsvc.components import open_log
    from eventsvc.scanner import Scanner

    settings = _settings(args)
    libraries, extra = _libraries(args, settings)
    if not libraries:
        raise EventsvcError("no libraries: give PATH arguments or --config FILE")
    if args.loop:
        async with open_log(settings, role="scanner") as event_log:
            libraries, extra = _libraries(args, settings, await log_library_ids(event_log))
            scanner = Scanner(event_log, libraries, settings, extra_excludes=extra)
            await _until_signalled([scanner.run])
        return 0
    async with open_log(settings, role="scanner") as event_log:
        libraries, extra = _libraries(args, settings, await log_library_ids(event_log))
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

    settings = _settings(args)
    libraries, _ = _libraries(args, settings)
    if args.name not in FACTORIES:
        raise EventsvcError(f"unknown worker {args.name!r}; known: {', '.join(FACTORIES)}")
    async with open_log(settings, role=args.name) as event_log:
        # the ids the scanner uses: a root the log knows keeps its id there too
        libraries, _ = _libraries(args, settings, await log_library_ids(event_log))
        worker = await make_worker(args.name, event_log, settings, libraries)
        await _until_signalled([worker.run])
    return 0


async def cmd_project(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from projections.projector import Projector

    settings = _settings(args)
    async with open_log(settings, role="projector") as event_log:
        projector = Projector(event_log, settings.readmodel_dir, batch=settings.projector_batch)
        await _until_signalled([projector.run])
    return 0


async def cmd_api(args: argparse.Namespace) -> int:
    from eventsvc.components import ApiServer, open_log
    from projections.api import create_app

    settings = _settings(args)
    libraries, _ = _libraries(args, settings)  # originals are served from these roots only
    async with open_log(settings, role="api") as event_log:
        libraries, _ = _libraries(args, settings, await log_library_ids(event_log))
        app = create_app(settings, event_log=event_log, libraries=libraries)
        await _until_signalled([ApiServer(app, settings.api_host, settings.api_port).run])
    return 0


async def cmd_rebuild(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from eventsvc.components import open_log
    from projections.projector import rebuild

    settings = _settings(args)
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


async def cmd_status(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from projections import readmodel

    settings = _settings(args)
    out: dict[str, Any] = {}
    async with open_log(settings, role="inspect") as event_log:
        last = await event_log.last_seq()
        out["stream"] = {"name": settings.stream, "last_seq": last}
        out["consumers"] = [
            {
                "name": ci.name,
                "pending": ci.num_pending,
                "ack_pending": ci.num_ack_pending,
                "redelivered": ci.num_redelivered,
            }
            for ci in await event_log.js.consumers_info(settings.stream)
            if ci.config.durable_name
        ]
        workers = {}
        for name in settings.workers:
            found = await event_log.get_status(f"worker.{name}")
            if found is not None:
                workers[name] = found
        if workers:
            out["workers"] = workers
        path = readmodel.current_path(settings.readmodel_dir)
        if path is not None and path.exists():
            conn = readmodel.open_reader(path)
            cp = readmodel.checkpoint(conn)
            out["projector"] = {"generation": path.name, "checkpoint": cp, "lag": last - cp}
            out["libraries"] = [
                dict(r)
                for r in conn.execute(
                    "SELECT l.library_id, l.name, l.state, l.reason, "
                    "(SELECT count(*) FROM files f WHERE f.library_id = l.library_id) AS files "
                    "FROM libraries l ORDER BY l.name"
                )
            ]
            conn.close()
    if args.json or not sys.stdout.isatty():
        print(json.dumps(out, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(f"stream {settings.stream}: last seq {out['stream']['last_seq']}")
        if "projector" in out:
            p = out["projector"]
            console.print(
                f"projector {p['generation']}: checkpoint {p['checkpoint']}, lag {p['lag']}"
            )
        t = Table("consumer", "pending", "ack pending", "redelivered")
        for c in out["consumers"]:
            t.add_row(c["name"], str(c["pending"]), str(c["ack_pending"]), str(c["redelivered"]))
        console.print(t)
        lt = Table("library", "id", "state", "files", "reason")
        for lib in out.get("libraries", []):
            lt.add_row(
                lib["name"], lib["library_id"], lib["state"], str(lib["files"]), lib["reason"] or ""
            )
        console.print(lt)
        for name, w in out.get("workers", {}).items():
            if w.get("model_error"):
                held = f", {w['held']} held" if w.get("held") else ""
                console.print(f"[red]{name}: paused{held}: {w['model_error']}[/red]")
            elif w.get("model"):
                console.print(f"{name}: model {w['model']}")
    return 0


async def cmd_search(args: argparse.Namespace) -> int:
    from projections.api.search import search_text

    settings = _settings(args)
    page = await search_text(
        settings, args.query, limit=args.limit, threshold=args.threshold,
        model_version=args.model_version,
    )  # fmt: skip
    if args.json or not sys.stdout.isatty():
        for hit in page.items:
            print(json.dumps({"score": hit.score, "content_hash": hit.content_hash,
                              "library_id": hit.library_id, "path": hit.path}))  # fmt: skip
    else:
        for hit in page.items:
            print(f"{hit.score:6.3f}  {hit.library_id}:{hit.path}  {hit.content_hash[:12]}")
        print(f"({len(page.items)} hits, model {page.model_version})", file=sys.stderr)
    return 0


async def cmd_reencode(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from eventsvc.derive.clip import reencode
    from eventsvc.derive.roots import LibraryRoots

    settings = _settings(args)
    libraries, _ = _libraries(args, settings)
    async with open_log(settings, role="reencode") as event_log:
        libraries, _ = _libraries(args, settings, await log_library_ids(event_log))
        roots = LibraryRoots(libraries, follow_symlinks=settings.follow_symlinks)
        await roots.refresh(event_log)
        last: dict[str, Any] = {}

        def progress(state: dict[str, Any]) -> None:
            if state != last:
                last.clear()
                last.update(state)
                print(json.dumps(state), file=sys.stderr, flush=True)

        result = await reencode(
            event_log, settings, roots, args.model, follow=args.follow, progress=progress
        )
    print(json.dumps(result))
    return 0 if result.get("model_error") is None else 4


async def cmd_rederive(args: argparse.Namespace) -> int:
    """Re-derive a stage's facts made by an older deriver version (issue 13)."""
    from eventsvc.components import open_log
    from eventsvc.derive.rederive import rederive
    from eventsvc.derive.roots import LibraryRoots

    settings = _settings(args)
    libraries, _ = _libraries(args, settings)
    library = args.library
    if library is not None:
        by_name = {lib.name: lib.id for lib in libraries}
        if library not in {lib.id for lib in libraries} and library in by_name:
            library = by_name[library]
        elif library not in {lib.id for lib in libraries}:
            known = ", ".join(f"{lib.id} ({lib.name})" for lib in libraries) or "none"
            raise EventsvcError(f"unknown library {args.library!r}; configured: {known}")
    async with open_log(settings, role="reencode") as event_log:
        roots = LibraryRoots(libraries, follow_symlinks=settings.follow_symlinks)
        await roots.refresh(event_log)
        last: dict[str, Any] = {}

        def progress(state: dict[str, Any]) -> None:
            if state != last:
                last.clear()
                last.update(state)
                print(json.dumps(state), file=sys.stderr, flush=True)

        result = await rederive(
            event_log, settings, roots, args.stage, library=library,
            concurrency=args.concurrency or settings.media_concurrency, progress=progress,
        )  # fmt: skip
    print(json.dumps(result))
    return 0 if not result.get("failed") else 4


async def cmd_inference(args: argparse.Namespace) -> int:
    from eventsvc.components import ApiServer
    from eventsvc.inference.dlib_faces import DlibFaceBackend, DlibSettings
    from eventsvc.inference.models import LazyOnnxClip
    from eventsvc.inference.service import create_inference_app

    settings = _settings(args)
    clip = LazyOnnxClip(settings, args.model)
    # dlib loads lazily: without it /v1/faces/detect answers 503 model_unavailable
    faces = DlibFaceBackend(DlibSettings.from_settings(settings))
    app = create_inference_app(settings, clip=clip, faces=faces)
    log.info("eventsvc inference on http://%s:%d", args.host, args.port)
    await _until_signalled([ApiServer(app, args.host, args.port).run])
    return 0


async def cmd_events(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from eventsvc.errors import DecodeError
    from eventsvc.events import decode

    settings = _settings(args)
    types = event_types(args.type or [])
    if isinstance(types, str):
        print(f"eventsvc events: {types}", file=sys.stderr)
        return 2
    p = settings.subject_prefix
    filters = (
        [f for t in types for f in (f"{p}.*.*.{t}", f"{p}.*.*.{t}.*")] if types else [f"{p}.>"]
    )
    async with open_log(settings, role="inspect") as event_log:
        libraries: set[str] | None = None
        if args.library:
            try:
                log_ids = await log_library_ids(event_log)
                configured = _libraries(args, settings, log_ids)[0]
            except ConfigError as exc:
                log.warning("the configured libraries are left out: %s", exc)
                configured = []
            found = await library_filter(args.library, configured, event_log)
            if isinstance(found, str):
                print(f"eventsvc events: {found}", file=sys.stderr)
                return 2
            libraries = found
        async for batch in event_log.read(filters, start_seq=args.since, follow=args.follow):
            for raw in batch:
                try:
                    body = json.loads(decode(raw.data, raw.headers).model_dump_json())
                except DecodeError as exc:
                    body = {"error": str(exc), "raw": raw.data[:200].decode(errors="replace")}
                if libraries is not None and body.get("library_id") not in libraries:
                    continue
                print(json.dumps({"seq": raw.seq, "subject": raw.subject, **body}), flush=True)
    return 0


async def cmd_setup(args: argparse.Namespace) -> int:
    from eventsvc.components import nats_access

    settings = _settings(args)
    async with nats_access(settings) as nats:
        await nats.setup(force=True)
        event_log = await nats.connect("admin")
        print(json.dumps({"stream": settings.stream, "last_seq": await event_log.last_seq()}))
    return 0


async def cmd_nats_context(args: argparse.Namespace) -> int:
    from eventsvc.components import nats_access
    from eventsvc.natsauth import nats_context, private_dir, write_private

    settings = _settings(args)
    async with nats_access(settings) as nats:
        await nats.setup()
        creds = nats.credentials("inspect")
        if creds is None:
            raise EventsvcError("this NATS has no users (no authorization): nothing to write")
        await nats.connect("inspect")  # the credentials work
        url = nats.url
        started = nats.started_server
    if started:
        print(f"note: no eventsvc runs on {settings.data_dir}: {url} answers only while "
              "one does (start `eventsvc up`, then run this again)", file=sys.stderr)  # fmt: skip
    elif settings.nats_url is None:
        print("note: the embedded server's port changes with each start: run this again "
              "after restarting `eventsvc up`", file=sys.stderr)  # fmt: skip
    ctx = nats_context(url, creds)
    directory = args.dir or Path.home() / ".config" / "nats" / "context"
    path = private_dir(Path(directory)) / f"{args.name}.json"
    write_private(path, json.dumps(ctx, indent=2) + "\n")
    print(f"wrote {path} (mode 0600): user {creds.user!r}, read-only")
    print(f"  nats --context {args.name} stream info {settings.stream}")
    print(f"  nats --context {args.name} stream view {settings.stream}")
    print(f"  nats --context {args.name} consumer ls {settings.stream}")
    print(f"or without a context: nats -s {url} --user {creds.user} "
          f"--password '{creds.password}' --inbox-prefix {creds.inbox_prefix} "
          f"stream view {settings.stream}")  # fmt: skip
    return 0


# ---------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data directory (EVENTSVC_DATA_DIR)")
    p.add_argument("--nats-url", help="use this NATS server instead of the embedded one")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (EVENTSVC_LOG_LEVEL)")


def _libs(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="library roots")
    p.add_argument("--config", type=Path, help="libraries TOML file (EVENTSVC_LIBRARIES_FILE)")


def _insecure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--insecure-no-auth", action="store_true",
        help="allow an API without any token on a non-loopback --host "
        "(EVENTSVC_API_ALLOW_UNAUTHENTICATED)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventsvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run everything: NATS, scanner, workers, projector, API")
    _libs(up)
    _common(up)
    up.add_argument("--port", type=int, help="API port (EVENTSVC_API_PORT)")
    up.add_argument("--host", help="API bind address (default 127.0.0.1)")
    _insecure(up)
    up.add_argument("--no-watch", action="store_true", help="no file-system notifications")
    up.set_defaults(func=cmd_up)

    scan = sub.add_parser("scan", help="one scan pass of the libraries")
    _libs(scan)
    _common(scan)
    scan.add_argument("--quick", action="store_true", help="no missing-file detection")
    scan.add_argument(
        "--loop", action="store_true", help="keep scanning on the intervals (+ watch)"
    )
    scan.add_argument("--no-watch", action="store_true", help="no file-system notifications")
    scan.add_argument(
        "--accept-missing",
        action="store_true",
        help="record mass deletions instead of treating the library as stale",
    )
    scan.set_defaults(func=cmd_scan)

    worker = sub.add_parser("worker", help="run one deriver")
    worker.add_argument("name", help="a worker name (see `eventsvc up --help`): hasher, media, …")
    _libs(worker)
    _common(worker)
    worker.set_defaults(func=cmd_worker)

    project = sub.add_parser("project", help="run the projector (SQLite read model)")
    _common(project)
    project.set_defaults(func=cmd_project)

    api = sub.add_parser("api", help="serve the HTTP API")
    _libs(api)
    _common(api)
    api.add_argument("--port", type=int)
    api.add_argument("--host")
    _insecure(api)
    api.set_defaults(func=cmd_api)

    rebuild = sub.add_parser("rebuild", help="replay the log into a new read model and swap it in")
    _common(rebuild)
    rebuild.add_argument(
        "--applier", choices=("auto", "process", "thread"), default="auto",
        help="decode and write in a separate process (auto: for logs of 100k events or "
        "more), or in a thread of this one",
    )  # fmt: skip
    rebuild.set_defaults(func=cmd_rebuild)

    status = sub.add_parser("status", help="lag per consumer, library health")
    _common(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    search = sub.add_parser("search", help="search photos by words (CLIP) and print the hits")
    search.add_argument("query", help='e.g. "a dog on a beach"')
    _common(search)
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--threshold", type=float, default=0.2)
    search.add_argument("--model-version", help="rank with this model's vectors")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)

    reencode = sub.add_parser(
        "reencode", help="backfill CLIP vectors with another model while search keeps serving"
    )
    reencode.add_argument("--model", required=True, help="hub id or local model directory")
    reencode.add_argument("--follow", action="store_true", help="keep encoding new photos")
    _libs(reencode)
    _common(reencode)
    reencode.set_defaults(func=cmd_reencode)

    rederive = sub.add_parser(
        "rederive",
        help="derive again the facts an older deriver version made (old facts keep serving)",
    )
    rederive.add_argument("--stage", required=True, choices=["media"], help="the deriver")
    rederive.add_argument("--library", help="only this library (id or name)")
    rederive.add_argument(
        "--concurrency", type=int, default=None,
        help="parallel jobs (default: EVENTSVC_MEDIA_CONCURRENCY)",
    )  # fmt: skip
    _libs(rederive)
    _common(rederive)
    rederive.set_defaults(func=cmd_rederive)

    inference = sub.add_parser(
        "inference", help="serve CLIP and face inference over HTTP (GPU host)"
    )
    _common(inference)
    inference.add_argument("--host", default="127.0.0.1")
    inference.add_argument("--port", type=int, default=8471)
    inference.add_argument("--model", help="hub id or model directory (default: clip_model)")
    inference.set_defaults(func=cmd_inference)

    setup = sub.add_parser("setup", help="create or update the stream (NATS admin user)")
    _common(setup)
    setup.set_defaults(func=cmd_setup)

    ctx = sub.add_parser(
        "nats-context", help="write a `nats` CLI context for the read-only inspect user"
    )
    _common(ctx)
    ctx.add_argument("--name", default="eventsvc", help="context name (default eventsvc)")
    ctx.add_argument("--dir", type=Path, help="context directory (default ~/.config/nats/context)")
    ctx.set_defaults(func=cmd_nats_context)

    events = sub.add_parser("events", help="print events as JSON lines")
    _common(events)
    events.add_argument(
        "--type", action="append", help="event type, e.g. FileSeen (repeatable; unknown: exit 2)"
    )
    events.add_argument(
        "--library",
        action="append",
        help="library id or name (repeatable; case-insensitive name; unknown: exit 2)",
    )
    events.add_argument("--since", type=int, default=1, help="first stream sequence")
    events.add_argument("--follow", "-f", action="store_true")
    events.set_defaults(func=cmd_events)
    return parser


def _private(settings: Settings) -> None:
    """What we write is ours alone: new files 0600, directories 0700 (umask), and the data
    directory (and a video root outside it) 0700 even when an older version made it."""
    os.umask(0o077)
    for d in {settings.data_dir, settings.videos_dir}:
        with contextlib.suppress(FileNotFoundError):
            try:
                if stat.S_IMODE(d.stat().st_mode) & 0o077:
                    d.chmod(0o700)
            except OSError as exc:
                log.warning("cannot make %s private (chmod 700): %s", d, exc)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except Exception as exc:
        print(f"eventsvc: bad settings: {exc}", file=sys.stderr)
        return 2
    _setup_logging(args.log_level or settings.log_level)
    _private(settings)
    func: Callable[[argparse.Namespace], Awaitable[int]] = args.func
    try:
        return asyncio.run(func(args))  # type: ignore[arg-type]
    except EventsvcError as exc:
        print(f"eventsvc: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
