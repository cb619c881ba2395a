"""rebuild: ``projections.projector.rebuild`` against a bare program doing the same work.

Setup (not timed): EVENTS events of a realistic mix (``bench.eventmix``: FileSeen,
HashComputed, ExifExtracted, ThumbnailReady, some FacesDetected, ClipEncoded, tags,
favourites, FileMissing, library states) published, pipelined, into a fresh stream of
an embedded NATS. Then, RUNS times each, alternating the order:

(a) ours: ``rebuild(event_log, fresh_dir)``, wall time and events/s;
(b) bare (the limit): one plain program doing the same work with the bare libraries, in
    one process: a nats-py ordered push consumer over the same stream, ``json.loads`` of
    each body, the rows built from the dicts and ``executemany``'d per table (one
    transaction per 5000 events, with the checkpoint) into a fresh database of the
    read-model schema, with the same index policy as the rebuild: the same pragmas, the
    query-only indexes dropped first and built at the end (timed), WAL switched on at
    the end. Same statement kinds as the projector (upserts, updates, deletes); columns
    the projector derives by a lookup (the date-taken waterfall) are left out: a floor;
(c) raw read (a sub-figure): the ordered consumer alone, counting messages.

Every side's figure is the median of its runs, timed with the garbage collector off.
ratio = ours events/s / bare events/s; goal >= 0.8 (and 1M events in under 40 s).
Also reported: the CPU seconds of each side (ours: this process and the rebuild's
applier process; the nats-server's are neither's) and their ratio.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import resource
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from bench.common import (
    Outcome,
    add_runs,
    base_parser,
    median,
    nats_server,
    quiet_gc,
    rate,
    run_main,
    runs_of,
    say,
    scratch_dir,
    spread,
)
from bench.eventmix import Mix, make_mix
from eventsvc.core.events import encode, face_id, headers_for, tag_key
from eventsvc.core.log import EventLog
from projections import readmodel
from projections.projector import rebuild

__all__ = ["bare", "raw_read", "setup_stream"]

GOAL = ">= 0.8"
GOAL_1M_S = 40.0
TX = 5000

# The projector's statement kinds, without its derived columns.
_FILES = (
    "INSERT INTO files (file_id, library_id, path, raw_path, size, mtime_ns,"
    " media_kind, seen_seq, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (file_id) DO UPDATE SET library_id = excluded.library_id,"
    " path = excluded.path, raw_path = excluded.raw_path, size = excluded.size,"
    " mtime_ns = excluded.mtime_ns, media_kind = excluded.media_kind,"
    " seen_seq = excluded.seen_seq, seen_at = excluded.seen_at"
)
_CONTENT = (
    "INSERT INTO content (content_hash, size, media_kind, first_seq) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (content_hash) DO NOTHING"
)
_HASHES = (
    "UPDATE files SET content_hash = ?, hash_seq = ?"
    " WHERE file_id = ? AND size = ? AND mtime_ns = ?"
)
_MISSING = "DELETE FROM files WHERE file_id = ?"
_LIBRARIES = (
    "INSERT INTO libraries (library_id, name, root, state, reason, state_since,"
    " state_seq) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (library_id) DO UPDATE SET name = excluded.name, root = excluded.root,"
    " state = excluded.state, reason = excluded.reason,"
    " state_since = excluded.state_since, state_seq = excluded.state_seq"
)
_MEDIA_COLUMNS = (
    "make", "model", "lens", "width", "height", "orientation", "gps_lat", "gps_lon",
    "gps_alt", "focal_length", "f_number", "exposure_time", "iso", "date_original",
    "date_digitized", "utc_offset", "duration", "video_codec", "audio_codec", "rotation",
    "creation_time",
)  # fmt: skip
_MEDIA = (
    f"INSERT OR REPLACE INTO media (content_hash, media_kind, {', '.join(_MEDIA_COLUMNS)},"
    " date_taken, date_source, warnings, exif_seq)"
    f" VALUES (?, ?, {', '.join('?' for _ in _MEDIA_COLUMNS)}, ?, ?, ?, ?)"
)
_THUMBS = (
    "INSERT OR REPLACE INTO thumbnails (content_hash, sizes, width, height, seq)"
    " VALUES (?, ?, ?, ?, ?)"
)
_PHASH = (
    "UPDATE content SET phash = ?, dhash = ?, decode_error = NULL,"
    " width = coalesce(?, width), height = coalesce(?, height) WHERE content_hash = ?"
)
_CLIP = (
    "INSERT OR REPLACE INTO clip_vectors (model_version, content_hash, dim, vector, seq)"
    " VALUES (?, ?, ?, ?, ?)"
)
_SCANS = "INSERT OR IGNORE INTO face_scans (content_hash, model, faces, seq) VALUES (?, ?, ?, ?)"
_FACES = (
    "INSERT OR IGNORE INTO faces (face_id, content_hash, model, idx, box, area, score,"
    " landmarks, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_TAGS = "INSERT OR REPLACE INTO user_tags (content_hash, tag_key, name, seq) VALUES (?, ?, ?, ?)"
_FAVS = "INSERT OR IGNORE INTO favorites (content_hash, seq) VALUES (?, ?)"
_ORDER = (
    _LIBRARIES, _FILES, _CONTENT, _HASHES, _MISSING, _MEDIA, _THUMBS, _PHASH, _CLIP,
    _SCANS, _FACES, _TAGS, _FAVS,
)  # fmt: skip

_Rows = dict[str, list[tuple[Any, ...]]]


def _file_seen(rows: _Rows, seq: int, b: dict[str, Any]) -> None:
    rows[_FILES].append(
        (b["file_id"], b["library_id"], b.get("path"), b.get("raw_path"), b["size"],
         b["mtime_ns"], b["media_kind"], seq, b["occurred_at"])
    )  # fmt: skip


def _library(rows: _Rows, seq: int, b: dict[str, Any]) -> None:
    stale = b["type"] == "LibraryStale"
    rows[_LIBRARIES].append(
        (b["library_id"], b["name"], b["root"], "stale" if stale else "online",
         b.get("reason") if stale else None, b["occurred_at"], seq)
    )  # fmt: skip


def _hash(rows: _Rows, seq: int, b: dict[str, Any]) -> None:
    h = b["content_hash"]
    rows[_CONTENT].append((h, b["size"], b["media_kind"], seq))
    rows[_HASHES].append((h, seq, b["file_id"], b["size"], b["mtime_ns"]))


def _exif(rows: _Rows, seq: int, b: dict[str, Any]) -> None:
    f = b["fields"]
    w = b.get("warnings")
    rows[_MEDIA].append(
        (b["content_hash"], b.get("media_kind", "image"), *(f.get(c) for c in _MEDIA_COLUMNS),
         b.get("date_taken"), b.get("date_source"), json.dumps(w) if w else None, seq)
    )  # fmt: skip


def _thumb(rows: _Rows, seq: int, b: dict[str, Any]) -> None:
    h = b["content_hash"]
    w, ht = b.get("width"), b.get("height")
    rows[_THUMBS].append((h, json.dumps(b["sizes"], sort_keys=True), w, ht, seq))
    if b.get("phash") is not None:
        rows[_PHASH].append((b["phash"], b.get("dhash"), w, ht, h))


def _clip(rows: _Rows, seq: int, b: dict[str, Any]) -> None:
    vec = np.asarray(b["vector"], dtype="<f4")
    norm = float(np.linalg.norm(vec))
    if norm > 0:
        vec = vec / norm
    rows[_CLIP].append((b["model_version"], b["content_hash"], b["dim"], vec.tobytes(), seq))


def _faces(rows: _Rows, seq: int, b: dict[str, Any]) -> None:
    h, model, faces = b["content_hash"], b["model"], b["faces"]
    rows[_SCANS].append((h, model, len(faces), seq))
    for i, f in enumerate(faces):
        left, top, right, bottom = f["box"]
        area = max(right - left, 0.0) * max(bottom - top, 0.0)
        rows[_FACES].append(
            (face_id(h, model, i), h, model, i, json.dumps(f["box"]), area, f["score"],
             json.dumps(f["landmarks"]), seq)
        )  # fmt: skip


def _tag(rows: _Rows, seq: int, b: dict[str, Any]) -> None:
    rows[_TAGS].append((b["content_hash"], tag_key(b["tag"]), b["tag"], seq))


def _fav(rows: _Rows, seq: int, b: dict[str, Any]) -> None:
    rows[_FAVS].append((b["content_hash"], seq))


def _missing(rows: _Rows, seq: int, b: dict[str, Any]) -> None:
    rows[_MISSING].append((b["file_id"],))


_BUILD: dict[str, Callable[[_Rows, int, dict[str, Any]], None]] = {
    "FileSeen": _file_seen, "FileMissing": _missing, "LibraryOnline": _library,
    "LibraryStale": _library, "HashComputed": _hash, "ExifExtracted": _exif,
    "ThumbnailReady": _thumb, "ClipEncoded": _clip, "FacesDetected": _faces,
    "TagAdded": _tag, "Favorited": _fav,
}  # fmt: skip


async def setup_stream(log: EventLog, mix: Mix) -> int:
    """Publish the mix as the services would (headers, Msg-Ids, expected stream)."""
    js, prefix = log.js, log.prefix
    t0 = time.perf_counter()
    step = 50_000
    for k in range(0, len(mix.items), step):
        futures = [
            await js.publish_async(
                ev.subject(prefix), encode(ev), stream=log.stream, headers=headers_for(ev, mid)
            )
            for ev, mid in mix.items[k : k + step]
        ]
        acks = await asyncio.gather(*futures)
        if any(a.duplicate for a in acks):
            raise SystemExit("setup: a Msg-Id was taken twice; the mix must be unique")
        done = k + len(futures)
        per_s = rate(done, time.perf_counter() - t0)
        say(f"setup: published {done}/{len(mix.items)} ({per_s:.0f}/s)")
    return await log.last_seq()


async def raw_read(log: EventLog, last: int) -> float:
    """(c) nats-py ordered consumer, counting messages until the last sequence."""
    done = asyncio.Event()
    count = 0

    async def cb(msg: Msg) -> None:
        nonlocal count
        count += 1
        if count >= last:
            done.set()

    t0 = time.perf_counter()
    sub = await log.js.subscribe(
        f"{log.prefix}.>", stream=log.stream, cb=cb, ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL, pending_msgs_limit=1 << 22,
        pending_bytes_limit=1 << 31,
    )  # fmt: skip
    try:
        await done.wait()
        dt = time.perf_counter() - t0
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return dt


async def bare(log: EventLog, last: int, path: Path) -> float:
    """(b) the limit: read, ``json.loads``, rows per table, ``executemany``, one
    transaction per TX events, indexes built at the end; one process, in order. The
    sequence of a message is its position (a fresh stream from 1, no gaps)."""
    done = asyncio.Event()
    buf: list[bytes] = []
    count = 0
    t0 = time.perf_counter()
    conn = readmodel.open_writer(path, bulk=True)
    readmodel.drop_deferred_indexes(conn)

    def flush() -> None:
        rows: _Rows = {stmt: [] for stmt in _ORDER}
        first = count - len(buf) + 1
        for k, data in enumerate(buf):
            body = json.loads(data)
            fn = _BUILD.get(body["type"])
            if fn is not None:
                fn(rows, first + k, body)
        buf.clear()
        conn.execute("BEGIN IMMEDIATE")
        for stmt in _ORDER:
            if rows[stmt]:
                conn.executemany(stmt, rows[stmt])
        conn.execute("UPDATE checkpoint SET last_seq = ? WHERE id = 1", (count,))
        conn.execute("COMMIT")

    async def cb(msg: Msg) -> None:
        nonlocal count
        count += 1
        buf.append(msg.data)
        if len(buf) >= TX or count >= last:
            flush()
            if count >= last:
                done.set()

    sub = await log.js.subscribe(
        f"{log.prefix}.>", stream=log.stream, cb=cb, ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL, pending_msgs_limit=1 << 22,
        pending_bytes_limit=1 << 31,
    )  # fmt: skip
    try:
        await done.wait()
        readmodel.create_indexes(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        return time.perf_counter() - t0
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        conn.close()


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


async def _measure(url: str, tmp: Path, n: int, runs: int) -> Outcome:
    t0 = time.perf_counter()
    with quiet_gc():  # a million live events: the cycle collector would rescan them all
        mix: Mix | None = make_mix(n)
    assert mix is not None
    say(f"made {len(mix.items)} events in {time.perf_counter() - t0:.1f}s: {mix.counts}")
    counts = mix.counts
    log = await EventLog.connect(url, name="bench-rebuild")
    try:
        await log.ensure_stream()
        last = await setup_stream(log, mix)
        info = await log.js.stream_info(log.stream)
        size_mb = info.state.bytes / 1e6
        say(f"stream: {info.state.messages} messages, {size_mb:.0f} MB, last_seq {last}")
        if last != n:
            raise SystemExit(f"setup: stream last_seq {last}, expected {n}")
        mix = None
        gc.collect()

        t_read: list[float] = []
        t_ours: list[float] = []
        t_bare: list[float] = []
        c_ours: list[float] = []
        c_bare: list[float] = []
        files_ours = files_bare = 0
        for r in range(runs):
            order = ("read", "ours", "bare") if r % 2 == 0 else ("bare", "ours", "read")
            for who in order:
                if who == "read":
                    with quiet_gc():
                        t_read.append(await raw_read(log, last))
                    dt = t_read[-1]
                elif who == "ours":
                    target = tmp / f"readmodel-{r}"
                    with quiet_gc():
                        c0 = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
                        t1 = time.perf_counter()
                        path, seq = await rebuild(log, target)
                        dt = time.perf_counter() - t1
                        c1 = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
                    t_ours.append(dt)
                    c_ours.append(c1 - c0)
                    if seq != last:
                        raise SystemExit(f"rebuild stopped at {seq}, expected {last}")
                    files_ours = _count(path, "files")
                    for p in target.glob("gen-*"):
                        p.unlink()  # (a 1M generation is ~0.5 GB)
                else:
                    db = tmp / f"bare-{r}.db"
                    with quiet_gc():
                        c0 = _cpu(resource.RUSAGE_SELF)
                        t_bare.append(await bare(log, last, db))
                        c_bare.append(_cpu(resource.RUSAGE_SELF) - c0)
                    dt = t_bare[-1]
                    files_bare = _count(db, "files")
                    db.unlink()
                say(f"run {r + 1}/{runs} {who:<6}: {dt:7.2f}s = {rate(last, dt):8.0f} events/s")
    finally:
        await log.close()
    if files_ours != files_bare:
        say(f"note: files rows differ (ours {files_ours}, bare {files_bare})")
    m_ours, m_read, m_bare = median(t_ours), median(t_read), median(t_bare)
    ours, read, limit = rate(last, m_ours), rate(last, m_read), rate(last, m_bare)
    out: Outcome = {
        "value": round(ours), "limit": round(limit), "unit": "events/s (medians)",
        "ratio": round(ours / limit, 3), "goal": GOAL, "events": last, "runs": runs,
        "ours_s": round(m_ours, 2), "bare_s": round(m_bare, 2),
        "raw_read_s": round(m_read, 2), "raw_read_events_per_s": round(read),
        "stream_mb": round(size_mb), "files_rows": files_ours,
        "ours_runs_s": spread(t_ours, 2), "bare_runs_s": spread(t_bare, 2),
        "raw_read_runs_s": spread(t_read, 2),
        "ours_cpu_s": round(median(c_ours), 2), "bare_cpu_s": round(median(c_bare), 2),
        "ratio_per_cpu_s": round(median(c_bare) / median(c_ours), 3), "mix": counts,
    }  # fmt: skip
    if last >= 1_000_000:
        out["ours_1m_s"] = round(m_ours * 1_000_000 / last, 1)
        out["goal_1m_s"] = GOAL_1M_S
        out["met_1m"] = out["ours_1m_s"] < GOAL_1M_S
    return out


def main(argv: list[str]) -> int:
    p = base_parser("rebuild", __doc__)
    p.add_argument("--events", type=int, default=1_000_000, help="events in the log (1000000)")
    add_runs(p, "--reps", quick=3)
    a = p.parse_args(argv)
    if a.quick:
        a.events = 20_000
    runs = runs_of(a)

    def body() -> Outcome:
        with scratch_dir("rebuild", a.tmp, a.keep) as tmp, nats_server(tmp / "nats") as url:
            return asyncio.run(_measure(url, tmp, a.events, runs))

    return run_main("rebuild", body, a.strict)
