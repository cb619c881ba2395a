"""rebuild: ``projections.projector.rebuild`` vs a raw ordered read and raw SQLite writes.

Setup (not timed): EVENTS events of a realistic mix (``bench.eventmix``) published,
pipelined, into a fresh stream of an embedded NATS. Then, RUNS times each, alternating
the order:

(a) ours: ``rebuild(event_log, fresh_dir)``, wall time and events/s;
(b) raw read: a nats-py ordered push consumer over the same stream, a callback counting
    messages until the last one;
(c) raw SQLite: the same rows, already decoded, ``executemany``'d into a fresh database
    of the read-model schema with the rebuild's policy: the same pragmas, the query-only
    indexes dropped first and built at the end (timed), the same statement kinds as the
    projector (upserts ``INSERT .. ON CONFLICT DO UPDATE``, updates, deletes), one
    transaction per 5000 events. Columns the projector derives (dates) are left to their
    defaults: this is the floor.

Every side's figure is the median of its runs, timed with the garbage collector off.
ratio = ours events/s / min(b, c) events/s; goal >= 0.8.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import time
from pathlib import Path

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
from bench.eventmix import Mix, Rows, make_mix
from eventsvc.core.events import encode, headers_for
from eventsvc.core.log import EventLog
from projections import readmodel
from projections.projector import rebuild

__all__ = ["main", "raw_read", "raw_sqlite", "setup_stream"]

GOAL = ">= 0.8"
TX = 5000

# The projector's statement kinds (upserts, not INSERT OR REPLACE), without its derived
# columns.
_FILES = (
    "INSERT INTO files (file_id, library_id, path, raw_path, size, mtime_ns,"
    " media_kind, seen_seq, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (file_id) DO UPDATE SET library_id = excluded.library_id,"
    " path = excluded.path, raw_path = excluded.raw_path, size = excluded.size,"
    " mtime_ns = excluded.mtime_ns, media_kind = excluded.media_kind,"
    " seen_seq = excluded.seen_seq, seen_at = excluded.seen_at"
)
_CONTENT = (
    "INSERT INTO content (content_hash, size, media_kind, phash, dhash, width,"
    " height, decode_error, first_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (content_hash) DO UPDATE SET phash = coalesce(content.phash, excluded.phash),"
    " dhash = coalesce(content.dhash, excluded.dhash),"
    " width = coalesce(content.width, excluded.width),"
    " height = coalesce(content.height, excluded.height)"
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
    """(b) nats-py ordered consumer, counting messages until the last sequence."""
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


def raw_sqlite(path: Path, rows: list[Rows]) -> float:
    """(c) the same rows through executemany, one transaction per TX events, with the
    rebuild's index policy: query-only indexes dropped first, built at the end."""
    t0 = time.perf_counter()
    conn = readmodel.open_writer(path, bulk=True)
    try:
        readmodel.drop_deferred_indexes(conn)
        for r in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_LIBRARIES, r.libraries)
            conn.executemany(_FILES, r.files)
            conn.executemany(_CONTENT, r.content)
            conn.executemany(_HASHES, r.hashes)
            conn.executemany(_MISSING, r.missing)
            conn.execute("UPDATE checkpoint SET last_seq = ? WHERE id = 1", (r.last_seq,))
            conn.execute("COMMIT")
        readmodel.create_indexes(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        return time.perf_counter() - t0
    finally:
        conn.close()


def _count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


async def _measure(url: str, tmp: Path, n: int, runs: int) -> Outcome:
    t0 = time.perf_counter()
    mix = make_mix(n, batch=TX)
    say(f"made {len(mix.items)} events in {time.perf_counter() - t0:.1f}s: {mix.counts}")
    log = await EventLog.connect(url, name="bench-rebuild")
    try:
        await log.ensure_stream()
        last = await setup_stream(log, mix)
        info = await log.js.stream_info(log.stream)
        size_mb = info.state.bytes / 1e6
        say(f"stream: {info.state.messages} messages, {size_mb:.0f} MB, last_seq {last}")
        if last != n:
            raise SystemExit(f"setup: stream last_seq {last}, expected {n}")
        rows = mix.rows
        del mix
        gc.collect()

        t_read: list[float] = []
        t_ours: list[float] = []
        t_sql: list[float] = []
        files_ours = files_raw = 0
        for r in range(runs):
            order = ("read", "ours", "sqlite") if r % 2 == 0 else ("sqlite", "ours", "read")
            for who in order:
                if who == "read":
                    with quiet_gc():
                        t_read.append(await raw_read(log, last))
                    dt = t_read[-1]
                elif who == "ours":
                    target = tmp / f"readmodel-{r}"
                    with quiet_gc():
                        t1 = time.perf_counter()
                        path, seq = await rebuild(log, target)
                        dt = time.perf_counter() - t1
                    t_ours.append(dt)
                    if seq != last:
                        raise SystemExit(f"rebuild stopped at {seq}, expected {last}")
                    files_ours = _count(path, "files")
                else:
                    db = tmp / f"raw-{r}.db"
                    with quiet_gc():
                        t_sql.append(await asyncio.to_thread(raw_sqlite, db, rows))
                    dt = t_sql[-1]
                    files_raw = _count(db, "files")
                    db.unlink()
                say(f"run {r + 1}/{runs} {who:<6}: {dt:7.2f}s = {rate(last, dt):8.0f} events/s")
    finally:
        await log.close()
    if files_ours != files_raw:
        say(f"note: files rows differ (ours {files_ours}, raw {files_raw})")
    m_ours, m_read, m_sql = median(t_ours), median(t_read), median(t_sql)
    ours, read, sql = rate(last, m_ours), rate(last, m_read), rate(last, m_sql)
    limit = min(read, sql)
    return {
        "value": round(ours), "limit": round(limit), "unit": "events/s (medians)",
        "ratio": round(ours / limit, 3), "goal": GOAL, "events": last, "runs": runs,
        "ours_s": round(m_ours, 2), "raw_read_s": round(m_read, 2),
        "raw_sqlite_s": round(m_sql, 2), "raw_read_events_per_s": round(read),
        "raw_sqlite_events_per_s": round(sql), "stream_mb": round(size_mb),
        "files_rows": files_ours, "ours_runs_s": spread(t_ours, 2),
        "raw_read_runs_s": spread(t_read, 2), "raw_sqlite_runs_s": spread(t_sql, 2),
    }  # fmt: skip


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
