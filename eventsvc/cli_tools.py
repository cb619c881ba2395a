"""The one-shot commands: status, search, events, backfills, inference, NATS set-up."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsvc.cli_support import libraries_for, settings_for, until_signalled
from eventsvc.core.errors import ConfigError, EventsvcError
from eventsvc.core.library_ids import (
    event_types,
    library_filter,
    log_library_ids,
)
from eventsvc.core.settings import Library

if TYPE_CHECKING:
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
        if st.cluster is not None:  # issue 17 item 4: the replicas, quorum and since when
            c = st.cluster
            stream["cluster"] = {"replicas": c.replicas, "online": c.online, "quorum": c.quorum,
                                 "leader": c.leader, "offline": list(c.offline)}  # fmt: skip
            if not c.quorum:
                stream["cluster"] |= {"error": c.problem, "lost_since": since_text(c.lost_since)}
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
    out["health"] = state.health
    if state.problems:
        out["problems"] = state.problems
    return out


async def cmd_status(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from projections import readmodel
    from projections.status import pipeline_state, read_position

    settings = settings_for(args)
    async with open_log(settings, role="inspect", reader=True) as event_log:
        # the checkpoint before the stream: the stream only grows, so lag >= 0
        position = await read_position(settings.readmodel_dir)
        state = await pipeline_state(event_log, position)
        out = _status_out(state)
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
        finally:
            conn.close()
    if args.json or not sys.stdout.isatty():
        print(json.dumps(out, indent=2))
    else:
        _print_status(out)
    return 1 if state.stream is None else 0


def _print_status(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    st = out["stream"]
    if st.get("exists", True) and st["last_seq"] is not None:
        console.print(f"stream {st['name']}: last seq {st['last_seq']}")
    if st.get("error"):
        console.print(f"[red]{st['error']}[/red]")
    for problem in out.get("problems", []):
        if problem != st.get("error"):
            console.print(f"[red]{problem}[/red]")
    if st.get("differs"):
        console.print(
            f"[yellow]stream {st['name']} differs from this version's configuration "
            f"({', '.join(st['differs'])}); `eventsvc setup` updates it[/yellow]"
        )
    if "projector" in out:
        p = out["projector"]
        console.print(f"projector {p['generation']}: checkpoint {p['checkpoint']}, lag {p['lag']}")
    t = Table("consumer", "pending", "ack pending", "redelivered")
    for c in out["consumers"]:
        t.add_row(c["name"], str(c["pending"]), str(c["ack_pending"]), str(c["redelivered"]))
    console.print(t)
    if out.get("consumers_error"):
        console.print(f"[red]{out['consumers_error']}[/red]")
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


def _stderr_progress() -> Callable[[dict[str, Any]], None]:
    """A backfill's progress as JSON lines on stderr, each state once."""
    last: dict[str, Any] = {}

    def progress(state: dict[str, Any]) -> None:
        if state != last:
            last.clear()
            last.update(state)
            print(json.dumps(state), file=sys.stderr, flush=True)

    return progress


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
        progress = _stderr_progress()
        result = await reencode(
            event_log, settings, roots, args.model, follow=args.follow, progress=progress,
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
        progress = _stderr_progress()
        result = await rederive(
            event_log, settings, roots, args.stage, library=library,
            concurrency=args.concurrency or getattr(settings, f"{args.stage}_concurrency"),
            progress=progress,
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


async def cmd_events(args: argparse.Namespace) -> int:
    from eventsvc.components import open_log
    from eventsvc.core.errors import DecodeError
    from eventsvc.core.events import decode

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
