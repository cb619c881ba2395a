"""rederive: what ``eventsvc rederive --stage media`` costs after a media version bump.

Files: N distinct 12-megapixel JPEGs (``bench.ingest_files.make_files``; ``--small`` makes
640x480 ones instead). The real pipeline in-process on a private embedded nats-server
(scanner, hasher, media worker with the version patched to the one before) ingests them
first; then ``rederive`` (the function behind the command, decode sandbox, concurrency
= CPUs) derives every content again with the current version, timed until its consumer
is caught up; then once more, when everything is current (two direct reads per content).

value = re-derivation files/s; limit = the first ingest's media files/s on the same
files (the re-derivation does the same decoding, so ratio ~1 is the goal: >= 0.8).
Extrapolation to 10k files is printed (``per_10k_s``), the no-op pass too. The whole
(fresh server, ingest, re-derivation) runs RUNS times, the garbage collector off in the
timed parts; every figure is the median of its runs.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Outcome,
    add_runs,
    base_parser,
    median,
    pool,
    quiet_gc,
    rate,
    run_main,
    runs_of,
    say,
    scratch_dir,
    spread,
)

__all__ = ["main"]

GOAL = ">= 0.8"


def _small_files(root: Path, n: int) -> list[Path]:
    from PIL import Image

    out = []
    for i in range(n):
        p = root / f"d{i // 250}" / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (640, 480), ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256))
        img.putpixel((i % 640, (i // 640) % 480), (255, 255, 255))
        exif = Image.Exif()
        exif[0x010F] = "BenchCam"
        exif[0x0110] = f"Model {i % 5}"
        img.save(p, quality=85, exif=exif)
        out.append(p)
    return out


async def _measure(root: Path, files: list[Path], data: Path) -> dict[str, Any]:
    from eventsvc.components import make_worker
    from eventsvc.core.log import EventLog
    from eventsvc.core.roots import LibraryRoots
    from eventsvc.core.settings import Settings, load_libraries
    from eventsvc.derive import media as media_mod
    from eventsvc.derive.rederive import rederive
    from eventsvc.scanner import Scanner
    from eventsvc.server import EmbeddedNats

    server = EmbeddedNats(data / "nats")
    url = server.start()
    lg = await EventLog.connect(url)
    try:
        await lg.ensure_stream()
        settings = Settings(data_dir=data / "data", nats_url=url, watch=False,
                            rederive_background=False)  # fmt: skip
        libs, _ = load_libraries([str(root)])
        current = media_mod.MEDIA_VERSION
        media_mod.MEDIA_VERSION = current - 1  # the deriver before the bump
        stop = asyncio.Event()
        scanner = Scanner(lg, libs, settings)
        await scanner.load()
        hasher = await make_worker("hasher", lg, settings, libs)
        media = await make_worker("media", lg, settings, libs)
        tasks = [asyncio.create_task(w.run(stop)) for w in (hasher, media)]
        with quiet_gc():
            t0 = time.perf_counter()
            await scanner.tick(full=True)
            while True:
                await asyncio.sleep(0.02)  # a fine poll: the limit is not rounded up
                done = True
                for name in ("hasher", "media"):
                    ci = await lg.js.consumer_info(lg.stream, name)
                    done = done and not ci.num_pending and not ci.num_ack_pending
                if done:
                    break
            ingest_s = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(*tasks)
        media_mod.MEDIA_VERSION = current
        say(f"first ingest (version {current - 1}): {len(files)} files in {ingest_s:.1f}s")
        roots = LibraryRoots(libs)
        await roots.refresh(lg)
        n = os.cpu_count() or 1
        with quiet_gc():
            t0 = time.perf_counter()
            first = await rederive(lg, settings, roots, "media", concurrency=n)
            redo_s = time.perf_counter() - t0
        say(f"rederive to version {current}: {first} in {redo_s:.1f}s")
        t0 = time.perf_counter()
        again = await rederive(lg, settings, roots, "media", concurrency=n)
        noop_s = time.perf_counter() - t0
        say(f"rederive again (all current): {again} in {noop_s:.1f}s")
        if first["rederived"] != len(files) or first["failed"]:
            raise SystemExit(f"rederived {first['rederived']} of {len(files)}: {first}")
        return {"ingest_s": ingest_s, "redo_s": redo_s, "noop_s": noop_s}
    finally:
        await lg.close()
        server.stop()


def main(argv: list[str]) -> int:
    p = base_parser("rederive", __doc__)
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--small", action="store_true", help="640x480 JPEGs instead of 12 MP")
    add_runs(p, quick=1)
    args = p.parse_args(argv)
    n = 40 if args.quick else args.files
    runs = runs_of(args)

    def body() -> Outcome:
        from bench.ingest_files import make_files

        with scratch_dir("rederive", args.tmp, args.keep) as d:
            root = d / "lib"
            root.mkdir()
            if args.small:
                files = _small_files(root, n)
            else:
                with pool(os.cpu_count() or 1) as workers:
                    files = make_files(root, n, workers)
            all_runs = []
            for r in range(runs):
                (d / f"run-{r}").mkdir()
                all_runs.append(asyncio.run(_measure(root, files, d / f"run-{r}")))
                say(f"run {r + 1}/{runs}: {all_runs[-1]}")
        got = {k: median([x[k] for x in all_runs]) for k in ("ingest_s", "redo_s", "noop_s")}
        ours = rate(n, got["redo_s"])
        limit = rate(n, got["ingest_s"])
        return {
            "value": round(ours, 2),
            "limit": round(limit, 2),
            "unit": "files/s (medians)",
            "runs": runs,
            "ingest_runs_s": spread([x["ingest_s"] for x in all_runs], 2),
            "rederive_runs_s": spread([x["redo_s"] for x in all_runs], 2),
            "ratio": round(ours / limit, 3),
            "goal": GOAL,
            "files": n,
            "kind": "640x480" if args.small else "12 MP",
            "cpus": os.cpu_count(),
            "rederive_s": round(got["redo_s"], 2),
            "per_10k_s": round(got["redo_s"] / n * 10_000, 1),
            "noop_s": round(got["noop_s"], 2),
            "noop_per_10k_s": round(got["noop_s"] / n * 10_000, 1),
        }

    return run_main("rederive", body, args.strict)
