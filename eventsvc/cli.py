"""`eventsvc …`: the main job (`up`) and each component on its own."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from eventsvc.cli_run import cmd_api, cmd_project, cmd_rebuild, cmd_scan, cmd_up, cmd_worker
from eventsvc.cli_support import settings_for, setup_logging
from eventsvc.cli_tools import (
    cmd_events,
    cmd_inference,
    cmd_nats_context,
    cmd_rederive,
    cmd_reencode,
    cmd_search,
    cmd_setup,
    cmd_status,
)
from eventsvc.core.errors import EventsvcError
from eventsvc.core.settings import Settings

__all__ = ["build_parser", "main"]

log = logging.getLogger("eventsvc")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data directory (EVENTSVC_DATA_DIR)")
    p.add_argument("--nats-url", help="use this NATS server instead of the embedded one")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (EVENTSVC_LOG_LEVEL)")
    p.add_argument(
        "--log-format", choices=("text", "json"), default=None,
        help="text lines, or JSON lines for log shippers (EVENTSVC_LOG_FORMAT)",
    )  # fmt: skip


def _libs(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="library roots")
    p.add_argument("--config", type=Path, help="libraries TOML file (EVENTSVC_LIBRARIES_FILE)")


def _insecure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--insecure-no-auth", action="store_true",
        help="allow an API without any token on a non-loopback --host "
        "(EVENTSVC_API_ALLOW_UNAUTHENTICATED)",
    )  # fmt: skip


def _catalog_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalog", action="store_true",
        help="print every subject and event type with one example each (markdown) and exit",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="with --catalog: as JSON")


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

    status = sub.add_parser("status", help="lag per consumer, library health, failures")
    _common(status)
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--watch", nargs="?", type=float, const=2.0, default=None, metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )  # fmt: skip
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
    rederive.add_argument(
        "--stage", required=True, choices=["media", "faces", "playlist"], help="the deriver"
    )
    rederive.add_argument("--library", help="only this library (id or name)")
    rederive.add_argument(
        "--concurrency", type=int, default=None,
        help="parallel jobs (default: the stage's EVENTSVC_<STAGE>_CONCURRENCY)",
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
    _catalog_args(events)
    events.set_defaults(func=cmd_events)
    return parser


def _private(settings: Settings) -> None:
    """What we write is ours alone: new files 0600, directories 0700 (umask), and the data
    directory (and a video root outside it) 0700 even when an older version made it."""
    os.umask(0o077)
    for d in {settings.data_dir, settings.videos_dir}:
        try:
            if stat.S_IMODE(d.stat().st_mode) & 0o077:
                d.chmod(0o700)
        except FileNotFoundError:
            pass  # not made yet: made private (umask) when it is
        except OSError as exc:
            log.warning("cannot make %s private (chmod 700): %s", d, exc)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_for(args)
    except Exception as exc:
        print(f"eventsvc: bad settings: {exc}", file=sys.stderr)
        return 2
    try:
        setup_logging(
            args.log_level or settings.log_level,
            args.log_format or settings.log_format,
            settings.log_levels,
        )
    except EventsvcError as exc:
        print(f"eventsvc: bad settings: {exc}", file=sys.stderr)
        return 2
    _private(settings)
    if settings.otlp_endpoint:  # the optional extra: imported only when configured
        from eventsvc.core import tracing

        tracing.configure(settings.otlp_endpoint, f"eventsvc-{args.command}")
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
