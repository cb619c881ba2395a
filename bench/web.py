"""web: server time of the timeline page vs the JSON ``/photos`` request for the same items.

Setup (not timed): a read model of PHOTOS photos (default 100k) written by the projector
(``apply_batch``) from synthetic events: FileSeen, HashComputed, ExifExtracted (camera,
date taken over ten years, GPS on some) and ThumbnailReady per photo, in two libraries.

Measured in-process on the real app (``create_app``), one ASGI call per request from the
request to the last body byte (no HTTP client or socket in the figure), interleaved,
after a warm-up, median of N:

(a) ours: ``GET /`` (the timeline's first screen, 60 photos newest first, whole page) and
    ``GET /web/timeline/page?cursor=...`` (one scroll page, the next 60);
(b) limit: ``GET /photos?sort=-taken&limit=60`` and the same with the same cursor: the
    JSON API for the very same items.

value = p50 ms of the first screen; limit = p50 ms of its JSON request; ratio = value /
limit, goal <= 1.5 (and p50 of the first screen under 150 ms, ``first_screen_goal_ms``).
The scroll page's figures and ratio, the month scrubber fragment (loaded after the first
screen; its first, uncached count too) and a photo page are reported as well.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import Outcome, base_parser, quiet_gc, run_main, say, scratch_dir

__all__ = ["main"]

GOAL = "<= 1.5"
FIRST_SCREEN_GOAL_MS = 150.0


def _events(n: int) -> list[Any]:
    from eventsvc.core.events import (
        ExifExtracted,
        FileSeen,
        HashComputed,
        LibraryOnline,
        ThumbnailReady,
    )
    from eventsvc.core.ids import file_id

    t0 = datetime(2015, 1, 1)
    out: list[Any] = []
    for lib in ("family", "phone"):
        out.append(LibraryOnline(library_id=lib, name=lib.title(), root=f"/mnt/{lib}"))
    for i in range(n):
        lib = "family" if i % 3 else "phone"
        path = f"{2015 + i % 10}/{i // 1000:03d}/IMG_{i:06d}.jpg"
        fid = file_id(lib, path.encode())
        h = f"{i:016x}".rjust(64, "a")
        size = 2_000_000 + i
        mtime = 1_500_000_000_000_000_000 + i * 1_000_000_000
        taken = (t0 + timedelta(seconds=(i * 7919) % (10 * 365 * 86400))).isoformat()
        fields: dict[str, Any] = {"make": "Canon", "model": f"EOS {i % 7}D", "width": 4000,
                                  "height": 3000, "orientation": 1}  # fmt: skip
        if i % 5 == 0:
            fields |= {"gps_lat": 45 + (i % 100) / 100, "gps_lon": 7 + (i % 37) / 37}
        out += [
            FileSeen(library_id=lib, file_id=fid, path=path, size=size, mtime_ns=mtime,
                     media_kind="image"),
            HashComputed(content_hash=h, library_id=lib, file_id=fid, path=path, size=size,
                         mtime_ns=mtime, media_kind="image"),
            ExifExtracted(content_hash=h, fields=fields, date_taken=taken,
                          date_source="exif_original"),
            ThumbnailReady(content_hash=h, sizes={"small": f"{h[:2]}/{h}-s.jpg",
                           "large": f"{h[:2]}/{h}-l.jpg"}, width=4000, height=3000,
                           phash=f"{i * 2654435761 % 2**64:016x}"),
        ]  # fmt: skip
    return out


def _build(readmodel_dir: Path, n: int) -> None:
    from eventsvc.core.events import encode, headers_for
    from eventsvc.core.log import RawEvent
    from projections import readmodel
    from projections.projector import apply_batch

    t0 = time.perf_counter()
    events = _events(n)
    say(f"{len(events)} events made in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    path = readmodel.new_generation(readmodel_dir)
    conn = readmodel.open_writer(path, bulk=True)
    try:
        batch = 20_000
        for start in range(0, len(events), batch):
            apply_batch(
                conn,
                [
                    RawEvent(start + k + 1, ev.subject(), encode(ev), headers_for(ev))
                    for k, ev in enumerate(events[start : start + batch])
                ],
            )
    finally:
        conn.close()
    readmodel.swap(readmodel_dir, path)
    say(f"read model of {n} photos written in {time.perf_counter() - t0:.1f}s")


async def _call(app: Any, path: str, query: str = "") -> tuple[int, bytes, float]:
    """One ASGI request; (status, body, seconds from the call to the last body byte)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "headers": [(b"host", b"127.0.0.1:8470")],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8470),
    }  # fmt: skip
    status = 0
    chunks: list[bytes] = []
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    t0 = time.perf_counter()
    await app(scope, receive, send)
    await done.wait()
    return status, b"".join(chunks), time.perf_counter() - t0


def _p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


async def _measure(app: Any, rounds: int, say_: Callable[[str], None]) -> dict[str, float]:
    import json
    import re

    # The lifespan starts the app (NATS is not configured: nothing to connect).
    async with _lifespan(app):
        status, body, _ = await _call(app, "/photos", "sort=-taken&limit=60")
        assert status == 200, body[:300]
        api_page = json.loads(body)
        cursor = api_page["next"]
        status, body, _ = await _call(app, "/", "")
        assert status == 200, body[:300]
        html = body.decode()
        tiles = re.findall(r'href="/photo/([0-9a-f]{64})\?', html)
        assert tiles == [p["content_hash"] for p in api_page["items"]], "not the same items"
        more = re.search(r'hx-get="/web/timeline/page\?([^"]+)"', html)
        assert more is not None
        scroll_q = more.group(1).replace("&amp;", "&")
        assert f"cursor={cursor}" in scroll_q, "not the same cursor"
        photo = tiles[0]
        cases = {
            "first_screen": ("/", ""),
            "first_screen_json": ("/photos", "sort=-taken&limit=60"),
            "scroll": ("/web/timeline/page", scroll_q),
            "scroll_json": (
                "/photos", urlencode({"sort": "-taken", "limit": 60, "cursor": cursor})
            ),
            "months": ("/web/timeline/months", ""),
            "photo_page": (f"/photo/{photo}", ""),
            "photo_json": (f"/photos/{photo}", ""),
        }  # fmt: skip
        times: dict[str, list[float]] = {k: [] for k in cases}
        times["months_uncached"] = [(await _call(app, "/web/timeline/months", ""))[2]]
        for _ in range(3):  # warm-up
            for path, q in cases.values():
                await _call(app, path, q)
        with quiet_gc():
            for r in range(rounds):
                for name, (path, q) in cases.items():
                    status, body, secs = await _call(app, path, q)
                    assert status == 200, (name, status, body[:200])
                    times[name].append(secs)
                if (r + 1) % max(1, rounds // 4) == 0:
                    say_(f"round {r + 1}/{rounds}: first screen p50 "
                         f"{_p50(times['first_screen']):.1f} ms, json "
                         f"{_p50(times['first_screen_json']):.1f} ms")  # fmt: skip
        return {k: _p50(v) for k, v in times.items()}


class _lifespan:
    """Run the app's ASGI lifespan around the measurements."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        async def receive() -> dict[str, Any]:
            return await self.queue.get()

        async def send(message: dict[str, Any]) -> None:
            await self.sent.put(message)

        self.task = asyncio.create_task(self.app({"type": "lifespan"}, receive, send))
        await self.queue.put({"type": "lifespan.startup"})
        msg = await self.sent.get()
        if msg["type"] != "lifespan.startup.complete":
            raise SystemExit(f"app startup failed: {msg}")

    async def __aexit__(self, *exc: object) -> None:
        await self.queue.put({"type": "lifespan.shutdown"})
        await self.sent.get()
        if self.task is not None:
            await self.task


def main(argv: list[str] | None = None) -> int:
    p = base_parser("web", __doc__)
    p.add_argument("--photos", type=int, default=None, help="default 100000 (--quick 10000)")
    p.add_argument("--rounds", type=int, default=None, help="default 40 (--quick 10)")
    a = p.parse_args(argv)
    n = a.photos or (10_000 if a.quick else 100_000)
    rounds = a.rounds or (10 if a.quick else 40)

    def body() -> Outcome:
        from eventsvc.core.settings import Settings
        from projections.app import create_app

        with scratch_dir("web", a.tmp, a.keep) as d:
            settings = Settings(data_dir=d / "data", nats_url=None, api_token=None,
                                clip_model_dir=d / "no-model")  # fmt: skip
            _build(settings.readmodel_dir, n)
            app = create_app(settings)
            say(f"{os.cpu_count()} CPUs; {rounds} rounds of each request")
            p50 = asyncio.run(_measure(app, rounds, say))
        for k, v in p50.items():
            say(f"{k}: p50 {v:.2f} ms")
        value, limit = p50["first_screen"], p50["first_screen_json"]
        scroll_ratio = p50["scroll"] / p50["scroll_json"]
        return {
            "value": round(value, 2), "limit": round(limit, 2),
            "unit": f"ms p50 timeline first screen at {n // 1000}k photos",
            "ratio": round(value / limit, 3), "goal": GOAL,
            "first_screen_goal_ms": FIRST_SCREEN_GOAL_MS,
            "first_screen_under_goal": value < FIRST_SCREEN_GOAL_MS,
            "scroll_ms": round(p50["scroll"], 2), "scroll_json_ms": round(p50["scroll_json"], 2),
            "scroll_ratio": round(scroll_ratio, 3), "scroll_met": scroll_ratio <= 1.5,
            "months_ms": round(p50["months"], 2),
            "months_uncached_ms": round(p50["months_uncached"], 2),
            "photo_page_ms": round(p50["photo_page"], 2),
            "photo_json_ms": round(p50["photo_json"], 2), "photos": n, "rounds": rounds,
            "cpus": os.cpu_count(),
        }  # fmt: skip

    return run_main("web", body, a.strict)
