"""The one-shot commands: status, search, events, backfills, inference, NATS set-up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsvc.cli_progress import ProgressBar, backfill_progress
from eventsvc.cli_support import libraries_for, settings_for, until_signalled
from eventsvc.core.errors import ConfigError, EventsvcError
from eventsvc.core.library_ids import (
    event_types,
    library_filter,
    log_library_ids,
)
from eventsvc.core.settings import Library, Settings

if TYPE_CHECKING:
    from eventsvc.core.log import EventLog
    from eventsvc.core.settings import Settings
    from projections.status import PipelineState

__all__ = [
    "cmd_events",
    "cmd_inference",
    "cmd_nats_context",
    "cmd_rederive",
    "cmd_reencode",
    "cmd_search",
    "cmd_setup",
    "cmd_status",
]

log = logging.getLogger("eventsvc")


def _status_out(state: PipelineState) -> dict[str, Any]:
    """`eventsvc status --json`: the status service's state (``/pipeline`` serialises the
    same state)."""
    from projections.status import since_text

    st = state.stream
    stream: dict[str, Any] = {"name": st.name if st else None, "last_seq": None}
    if st is not None:
        stream |= {"exists": st.exists, "last_seq": st.last_seq, "messages": st.messages,
                   "bytes": st.bytes, "replicas": st.replicas}  # fmt: skip
        if st.differs:
            stream["differs"] = list(st.differs)
    if state.stream_error:
        stream["error"] = state.stream_error
    out: dict[str, Any] = {
        "nats": {"connected": state.connected, "since": since_text(state.connected_since)},
        "stream": stream,
        "consumers": [
            {
                "name": c.name,
                "pending": c.pending,
                "ack_pending": c.ack_pending,
                "redelivered": c.redelivered,
                "last_delivered": c.last_delivered,
            }
            for c in state.consumers
        ],
    }
    if state.consumers_error:
        out["consumers_error"] = state.consumers_error
    return out


RECENT_FAILURES = 10
"""`eventsvc status`: the newest failures shown (and per stage, its last reason)."""


def _failures(conn: sqlite3.Connection) -> dict[str, Any]:
    """The read model's recorded failures: per stage (count, permanent, last reason)
    and the newest ones."""
    by_stage: dict[str, Any] = {}
    for r in conn.execute(
        "SELECT f.stage, count(*) AS failed, sum(f.permanent) AS permanent, "
        "(SELECT reason FROM failures l WHERE l.stage = f.stage ORDER BY seq DESC LIMIT 1) "
        "AS last_reason, max(f.occurred_at) AS last_at "
        "FROM failures f GROUP BY f.stage ORDER BY f.stage"
    ):
        by_stage[r["stage"]] = {
            "failed": r["failed"], "permanent": r["permanent"] or 0,
            "last_reason": r["last_reason"], "last_at": r["last_at"],
        }  # fmt: skip
    recent = [
        {**dict(r), "permanent": bool(r["permanent"])}
        for r in conn.execute(
            "SELECT seq, stage, reason, permanent, library_id, input_subject, occurred_at "
            "FROM failures ORDER BY seq DESC LIMIT ?",
            (RECENT_FAILURES,),
        )
    ]
    total = sum(s["failed"] for s in by_stage.values())
    return {"total": total, "by_stage": by_stage, "recent": recent}


async def _status(settings: Settings, event_log: EventLog) -> tuple[dict[str, Any], int]:
    from projections import readmodel
    from projections.status import pipeline_state, read_position

    # the checkpoint before the stream: the stream only grows, so lag >= 0
    position = await read_position(settings.readmodel_dir)
    state = await pipeline_state(event_log, position)
    out = _status_out(state)
    out["nats"] |= _nats_endpoints(settings)
    out["stream"]["name"] = settings.stream
    workers = {}
    for name in settings.workers:
        found = await event_log.get_status(f"worker.{name}")
        if found is not None:
            workers[name] = found
    if workers:
        out["workers"] = workers
    path = readmodel.current_path(settings.readmodel_dir)
    if position[0] is not None and path is not None and path.exists():
        p = state.projector
        out["projector"] = {"generation": p.generation, "checkpoint": p.checkpoint, "lag": p.lag}
        conn = readmodel.open_reader(path)
        try:
            out["libraries"] = [
                dict(r)
                for r in conn.execute(
                    "SELECT l.library_id, l.name, l.state, l.reason, "
                    "(SELECT count(*) FROM files f WHERE f.library_id = l.library_id) AS files "
                    "FROM libraries l ORDER BY l.name"
                )
            ]
            out["failures"] = _failures(conn)
        finally:
            conn.close()
    return out, 1 if state.stream is None else 0


def _nats_endpoints(settings: Settings) -> dict[str, str | None]:
    """`eventsvc status`: where NATS is (and the embedded server's monitoring endpoint)."""
    if settings.nats_url is not None:
        return {"url": settings.nats_url, "monitor": None}
    found: dict[str, str | None] = {}
    for key, name in (("url", "nats.url"), ("monitor", "nats.monitor.url")):
        try:
            found[key] = (settings.nats_store_dir / name).read_text().strip() or None
        except OSError:
            found[key] = None
    return found


def _nats_line(nats: dict[str, Any]) -> str:
    monitor = f", monitoring {nats['monitor']}" if nats.get("monitor") else ""
    return f"nats {nats.get('url') or '?'}{monitor}"


async def cmd_status(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log

    settings = settings_for(args)
    as_json = args.json or not sys.stdout.isatty()
    async with open_log(settings, role="inspect", reader=True) as event_log:
        if args.watch is None:
            out, rc = await _status(settings, event_log)
            if as_json:
                print(json.dumps(out, indent=2))
            else:
                from rich.console import Console

                Console().print(_status_view(out))
            return rc
        return await _watch(settings, event_log, max(0.2, args.watch), as_json)


async def _watch(settings: Settings, event_log: EventLog, every: float, as_json: bool) -> int:
    """`status --watch`: refreshed every ``every`` seconds until SIGINT/SIGTERM (JSON: one
    compact object per line and refresh)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    live: Any = None
    if not as_json:
        from rich.live import Live

        live = Live(auto_refresh=False, redirect_stderr=False)
        live.start()
    try:
        while not stop.is_set():
            out, _ = await _status(settings, event_log)
            out["at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
            if live is not None:
                live.update(_status_view(out), refresh=True)
            else:
                print(json.dumps(out), flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        if live is not None:
            live.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    return 0


def _status_view(out: dict[str, Any]) -> Any:
    """`eventsvc status` on a terminal (rich renderables)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    parts.append(Text(_nats_line(out["nats"])))
    st = out["stream"]
    if out.get("at"):
        parts.append(Text(f"eventsvc status at {out['at']} (Ctrl-C stops)", style="dim"))
    if st.get("exists", True) and st["last_seq"] is not None:
        parts.append(f"stream {st['name']}: last seq {st['last_seq']}")
    if st.get("error"):
        parts.append(Text(st["error"], style="red"))
    if st.get("differs"):
        parts.append(Text(
            f"stream {st['name']} differs from this version's configuration "
            f"({', '.join(st['differs'])}); `eventsvc setup` updates it", style="yellow",
        ))  # fmt: skip
    if "projector" in out:
        p = out["projector"]
        parts.append(f"projector {p['generation']}: checkpoint {p['checkpoint']}, lag {p['lag']}")
    t = Table("consumer", "pending", "ack pending", "redelivered")
    for c in out["consumers"]:
        t.add_row(c["name"], str(c["pending"]), str(c["ack_pending"]), str(c["redelivered"]))
    parts.append(t)
    if out.get("consumers_error"):
        parts.append(Text(out["consumers_error"], style="red"))
    lt = Table("library", "id", "state", "files", "reason")
    for lib in out.get("libraries", []):
        lt.add_row(
            lib["name"], lib["library_id"], lib["state"], str(lib["files"]), lib["reason"] or ""
        )
    parts.append(lt)
    failures = out.get("failures")
    if failures and failures["total"]:
        ft = Table("stage", "failed", "permanent", "last reason", "at", title="failures")
        for stage, f in failures["by_stage"].items():
            ft.add_row(stage, str(f["failed"]), str(f["permanent"]), f["last_reason"] or "",
                       f["last_at"] or "")  # fmt: skip
        parts.append(ft)
        rt = Table("seq", "stage", "library", "reason", title="newest failures")
        for f in failures["recent"]:
            rt.add_row(str(f["seq"]), f["stage"], f["library_id"] or "", f["reason"])
        parts.append(rt)
    elif failures is not None:
        parts.append("failures: none")
    for name, w in out.get("workers", {}).items():
        if w.get("model_error"):
            held = f", {w['held']} held" if w.get("held") else ""
            parts.append(Text(f"{name}: paused{held}: {w['model_error']}", style="red"))
        elif w.get("model"):
            parts.append(f"{name}: model {w['model']}")
    return Group(*parts)


async def cmd_search(args: argparse.Namespace) -> int:
    from eventsvc.inference.models import ConfiguredClip
    from projections.api.search import search_text

    settings = settings_for(args)
    page = await search_text(
        settings, args.query, clip=ConfiguredClip(settings), limit=args.limit,
        threshold=args.threshold,
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
    from eventsvc.components import clip_spec, open_log
    from eventsvc.core.roots import LibraryRoots
    from eventsvc.derive.clip import reencode

    settings = settings_for(args)
    libraries, _ = libraries_for(args, settings)
    async with open_log(settings, role="reencode") as event_log:
        libraries, _ = libraries_for(args, settings, await log_library_ids(event_log))
        roots = LibraryRoots(libraries, follow_symlinks=settings.follow_symlinks)
        await roots.refresh(event_log)
        with ProgressBar() as bar:
            result = await reencode(
                event_log, settings, roots, args.model, follow=args.follow,
                progress=backfill_progress(f"reencode {args.model}", bar),
                spec_for=lambda durable: clip_spec(settings, durable),
            )  # fmt: skip
    print(json.dumps(result))
    return 0 if result.get("model_error") is None else 4


def _configured_library(wanted: str | None, libraries: list[Library]) -> str | None:
    """The id of a configured library given by id or name (case-insensitive name)."""
    if wanted is None or wanted in {lib.id for lib in libraries}:
        return wanted
    named = [lib.id for lib in libraries if lib.name.casefold() == wanted.casefold()]
    if len(named) == 1:
        return named[0]
    known = ", ".join(f"{lib.id} ({lib.name})" for lib in libraries) or "none"
    raise EventsvcError(f"unknown library {wanted!r}; configured: {known}")


async def cmd_rederive(args: argparse.Namespace) -> int:
    """Re-derive a stage's facts made by an older deriver version (issue 13)."""
    from eventsvc.components import open_log
    from eventsvc.core.roots import LibraryRoots
    from eventsvc.derive.rederive import rederive

    settings = settings_for(args)
    async with open_log(settings, role="reencode") as event_log:
        libraries, _ = libraries_for(args, settings, await log_library_ids(event_log))
        library = _configured_library(args.library, libraries)
        roots = LibraryRoots(libraries, follow_symlinks=settings.follow_symlinks)
        await roots.refresh(event_log)
        with ProgressBar() as bar:
            result = await rederive(
                event_log, settings, roots, args.stage, library=library,
                concurrency=args.concurrency or getattr(settings, f"{args.stage}_concurrency"),
                progress=backfill_progress(f"rederive {args.stage}", bar),
            )  # fmt: skip
    print(json.dumps(result))
    return 0 if not result.get("failed") and result.get("model_error") is None else 4


async def cmd_inference(args: argparse.Namespace) -> int:
    from eventsvc.components import ApiServer
    from eventsvc.inference.dlib_faces import DlibFaceBackend, DlibSettings
    from eventsvc.inference.models import LazyOnnxClip
    from eventsvc.inference.service import create_inference_app

    settings = settings_for(args)
    clip = LazyOnnxClip(settings, args.model)
    # dlib loads lazily: without it /v1/faces/detect answers 503 model_unavailable
    faces = DlibFaceBackend(DlibSettings.from_settings(settings))
    app = create_inference_app(settings, clip=clip, faces=faces)
    log.info("eventsvc inference on http://%s:%d", args.host, args.port)
    await until_signalled([ApiServer(app, args.host, args.port).run])
    return 0


def _print_catalog(args: argparse.Namespace) -> int:
    """`eventsvc events --catalog [--json]`: from the declarations, no NATS needed."""
    from eventsvc.cli_catalog import catalog_json, catalog_markdown

    prefix = settings_for(args).subject_prefix
    sys.stdout.write(catalog_json(prefix) if args.json else catalog_markdown(prefix))
    return 0


async def cmd_events(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from eventsvc.core.errors import DecodeError
    from eventsvc.core.events import decode

    if args.catalog:
        return _print_catalog(args)
    settings = settings_for(args)
    types = event_types(args.type or [])
    if isinstance(types, str):
        print(f"eventsvc events: {types}", file=sys.stderr)
        return 2
    p = settings.subject_prefix
    filters = (
        [f for t in types for f in (f"{p}.*.*.{t}", f"{p}.*.*.{t}.*")] if types else [f"{p}.>"]
    )
    async with open_log(settings, role="inspect", reader=True) as event_log:
        libraries: set[str] | None = None
        if args.library:
            try:
                log_ids = await log_library_ids(event_log)
                configured = libraries_for(args, settings, log_ids)[0]
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

    settings = settings_for(args)
    async with nats_access(settings) as nats:
        await nats.setup(force=True)
        event_log = await nats.connect("admin")
        print(json.dumps({"stream": settings.stream, "last_seq": await event_log.last_seq()}))
    return 0


async def cmd_nats_context(args: argparse.Namespace) -> int:
    from eventsvc.components import nats_access
    from eventsvc.core.natsauth import nats_context, private_dir, write_private

    settings = settings_for(args)
    async with nats_access(settings) as nats:
        await nats.setup(update=False)
        creds = nats.credentials("inspect")
        if creds is None:
            raise EventsvcError("this NATS has no users (no authorization): nothing to write")
        await nats.connect("inspect")  # the credentials work
        url = nats.url
        started = nats.started_server
        monitor = None if started else nats.monitor_url
    if started:
        print(f"note: no eventsvc runs on {settings.data_dir}: {url} answers only while "
              "one does (start `eventsvc up`, then run this again)", file=sys.stderr)  # fmt: skip
    elif settings.nats_url is None and not url.endswith(f":{settings.nats_port}"):
        print(f"note: the embedded server's port {settings.nats_port} was in use, it runs "
              f"on {url} now: run this again after restarting `eventsvc up`",
              file=sys.stderr)  # fmt: skip
    ctx = nats_context(url, creds)
    directory = args.dir or Path.home() / ".config" / "nats" / "context"
    path = private_dir(Path(directory)) / f"{args.name}.json"
    write_private(path, json.dumps(ctx, indent=2) + "\n")
    print(f"wrote {path} (mode 0600): user {creds.user!r}, read-only, {url}")
    for line in _inspect_commands(args.name, settings.stream, settings.subject_prefix, monitor):
        print(line)
    print(f"or without a context: nats -s {url} --user {creds.user} "
          f"--password '{creds.password}' --inbox-prefix {creds.inbox_prefix} "
          f"stream view {settings.stream}")  # fmt: skip
    return 0


def _inspect_commands(name: str, stream: str, prefix: str, monitor: str | None) -> list[str]:
    """What to run with the context `eventsvc nats-context` wrote (issue 14)."""
    c = f"nats --context {name}"
    lines = [
        "inspect the pipeline:",
        f"  {c} stream info {stream}                # messages, bytes, first/last sequence",
        f"  {c} stream view {stream}                # every event, oldest first",
        f"  {c} consumer report {stream}        # per worker: pending, ack pending, redeliveries",
        f"  {c} stream view {stream} --subject '{prefix}.*.*.DerivationFailed'   # failures",
        f"  {c} stream view {stream} --subject '{prefix}.file.*.FileSeen'        # one type",
        f"  {c} stream view {stream} --subject '{prefix}.content.HASH.>'         # one content",
        f"  {c} sub --stream {stream} '{prefix}.>'  # follow new events (--new)",
        "  eventsvc events --catalog                       # every subject and event type",
    ]
    if monitor:
        lines.append(f"monitoring: {monitor}/varz  {monitor}/jsz?consumers=true")
    return lines


# ---------------------------------------------------------------- parser
