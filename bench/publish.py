"""publish: ``EventLog.publish_many`` (the scanner's path) vs raw ``js.publish_async``.

N FileSeen events (default 50k) with the scanner's Msg-Ids. Ours: ``publish_many`` on
(event, msg_id) pairs in chunks of ``scanner.CHUNK`` as the scanner calls it (encoding
included: it is part of the path). Raw: the same subjects, pre-encoded payloads and
headers (``encode``/``headers_for``, so ``Nats-Msg-Id`` too) through ``js.publish_async``,
then one ``gather``. Every run gets a freshly created stream (same config) and a fresh
connection, so no run inherits the previous one's messages or duplicate-window table;
runs alternate the order (raw, ours), (ours, raw), ... and the median of each counts
(timed with the garbage collector off). ratio = ours / raw events/s; goal >= 0.7.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable

import nats.js.errors

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
from eventsvc.core.events import Event, FileSeen, encode, headers_for
from eventsvc.core.ids import file_id
from eventsvc.core.log import EventLog
from eventsvc.scanner.scanner import CHUNK

__all__ = ["main", "make_events", "publish_ours", "publish_raw"]

GOAL = ">= 0.7"
LIB = "lib-b3nch0"

Item = tuple[Event, str]
Wire = tuple[str, bytes, dict[str, str]]


def make_events(n: int, tag: int = 0) -> list[Item]:
    """FileSeen events as the scanner makes them, with its Msg-Id scheme."""
    out: list[Item] = []
    for i in range(n):
        rel = f"{2000 + i // 10_000}/roll-{i // 100 % 100:02d}/IMG_{i:06d}.jpg"
        fid = file_id(LIB, rel.encode())
        ev = FileSeen(
            library_id=LIB, file_id=fid, path=rel, size=1_000_000 + i,
            mtime_ns=1_600_000_000_000_000_000 + i * 1_000_000, media_kind="image",
        )  # fmt: skip
        out.append((ev, f"FileSeen:{fid}:{ev.size}:{ev.mtime_ns}:{tag}"))
    return out


def to_wire(items: list[Item], prefix: str) -> list[Wire]:
    return [(ev.subject(prefix), encode(ev), headers_for(ev, mid)) for ev, mid in items]


async def publish_ours(log: EventLog, items: list[Item], chunk: int) -> int:
    """As the scanner does it: ``publish_many`` per chunk. Returns events stored."""
    stored = 0
    step = chunk or len(items)
    for k in range(0, len(items), step):
        acks = await log.publish_many(items[k : k + step])
        stored += sum(1 for a in acks if not a.duplicate)
    return stored


async def publish_raw(log: EventLog, wire: list[Wire]) -> int:
    """Bare nats-py: publish_async of pre-encoded messages, then one gather."""
    js = log.js
    futures = [await js.publish_async(s, p, headers=h) for s, p, h in wire]
    acks = await asyncio.gather(*futures)
    return sum(1 for a in acks if not a.duplicate)


async def _fresh_log(url: str) -> EventLog:
    log = await EventLog.connect(url, name="bench-publish")
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await log.js.delete_stream(log.stream)
    await log.ensure_stream()
    return log


async def _run(url: str, label: str, n: int, fn: Callable[[EventLog], Awaitable[int]]) -> float:
    log = await _fresh_log(url)
    try:
        with quiet_gc():
            t0 = time.perf_counter()
            stored = await fn(log)
            dt = time.perf_counter() - t0
        last = await log.last_seq()
    finally:
        await log.close()
    if stored != n or last != n:
        raise SystemExit(f"{label}: {stored} stored, stream last_seq {last}, expected {n}")
    say(f"{label:<14} {n} events in {dt:.3f}s = {rate(n, dt):8.0f} events/s")
    return dt


async def _same_stream(url: str, items: list[Item], runs: int, chunk: int) -> list[float]:
    """Diagnostic: consecutive runs on one stream, as a loop in a test would do them."""
    log = await _fresh_log(url)
    out = []
    try:
        for r in range(runs):
            fresh = make_events(len(items), tag=r + 1)  # new Msg-Ids: all stored
            gc.collect()
            t0 = time.perf_counter()
            await publish_ours(log, fresh, chunk)
            dt = time.perf_counter() - t0
            out.append(rate(len(items), dt))
            last = await log.last_seq()
            say(f"same stream run {r + 1}: {out[-1]:8.0f} events/s, last_seq {last}")
    finally:
        await log.close()
    return out


async def _measure(url: str, n: int, rounds: int, chunk: int, same_stream: int) -> Outcome:
    items = make_events(n)
    probe = await EventLog.connect(url)
    prefix = probe.prefix
    await probe.close()
    wire = to_wire(items, prefix)
    say(f"{n} FileSeen events, ~{sum(len(p) for _, p, _ in wire) // n} B bodies; chunk {chunk}")

    def ours(log: EventLog) -> Awaitable[int]:
        return publish_ours(log, items, chunk)

    def raw(log: EventLog) -> Awaitable[int]:
        return publish_raw(log, wire)

    t_ours: list[float] = []
    t_raw: list[float] = []
    for r in range(rounds):
        order = ("raw", "ours") if r % 2 == 0 else ("ours", "raw")
        for who in order:
            if who == "ours":
                t_ours.append(await _run(url, "ours", n, ours))
            else:
                t_raw.append(await _run(url, "raw", n, raw))
    value, limit = rate(n, median(t_ours)), rate(n, median(t_raw))
    out: Outcome = {
        "value": round(value), "limit": round(limit), "unit": "events/s (medians)",
        "ratio": round(value / limit, 3), "goal": GOAL, "events": n, "chunk": chunk,
        "runs": rounds, "ours_s": round(median(t_ours), 3), "raw_s": round(median(t_raw), 3),
        "ours_runs_s": spread(t_ours), "raw_runs_s": spread(t_raw),
    }  # fmt: skip
    if same_stream:
        out["same_stream_events_per_s"] = [
            round(x) for x in await _same_stream(url, items, same_stream, chunk)
        ]
    return out


def main(argv: list[str]) -> int:
    p = base_parser("publish", __doc__)
    p.add_argument("--events", type=int, default=50_000, help="events per run (50000)")
    add_runs(p, "--rounds", quick=3)
    p.add_argument(
        "--chunk",
        type=int,
        default=CHUNK,
        help=f"events per publish_many call (scanner: {CHUNK}; 0: all at once)",
    )
    p.add_argument(
        "--same-stream",
        type=int,
        default=0,
        metavar="RUNS",
        help="also run ours RUNS times on one stream (the slow-second-run check)",
    )
    a = p.parse_args(argv)  # fmt: skip
    if a.quick:
        a.events = 10_000

    def body() -> Outcome:
        with scratch_dir("publish", a.tmp, a.keep) as tmp, nats_server(tmp / "nats") as url:
            return asyncio.run(_measure(url, a.events, runs_of(a), a.chunk, a.same_stream))

    return run_main("publish", body, a.strict)
