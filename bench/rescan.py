"""rescan: a full re-scan of an unchanged 100k-file library vs a bare scandir+stat walk.

Builds DIRS x PER_DIR tiny ``.jpg`` files once, starts an embedded NATS, runs a first full
scan (publishes every FileSeen; timed, reported), then, per repetition, a fresh
``Scanner``: ``load()`` timed on its own (state rebuilt from the log), then TICKS
``tick(full=True)`` timed, each asserting nothing was published and followed by the
limit: a bare recursive ``os.scandir`` walk with ``entry.stat()`` per file on the same tree
(bytes; one untimed walk first warms the cache as the first scan did for the ticks).
value = tick seconds, limit = walk seconds, each the median of its runs (as many walks as
ticks, garbage collector off), ratio = value/limit; goal <= 2.0.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from bench.common import (
    Outcome,
    add_runs,
    base_parser,
    median,
    nats_server,
    quiet_gc,
    run_main,
    runs_of,
    say,
    scratch_dir,
    spread,
)
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library, Settings, load_libraries
from eventsvc.scanner.scanner import Scanner

__all__ = ["bare_walk", "main", "make_tree"]

GOAL = "<= 2.0"


def make_tree(root: Path, dirs: int, per_dir: int) -> int:
    """``dirs`` leaf directories (grouped by 100) of ``per_dir`` tiny .jpg files each."""
    n = 0
    for d in range(dirs):
        leaf = root / f"{2000 + d // 100}" / f"roll-{d % 100:02d}"
        leaf.mkdir(parents=True)
        for i in range(per_dir):
            with open(leaf / f"IMG_{i:04d}.jpg", "wb") as f:
                f.write(b"\xff\xd8\xff%d" % n)
            n += 1
    return n


def bare_walk(root: bytes) -> int:
    """The limit: every directory listed once, every file stat'ed once."""
    n = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    entry.stat()
                    n += 1
    return n


def _time_walk(root: bytes, expect: int) -> float:
    with quiet_gc():
        t0 = time.perf_counter()
        n = bare_walk(root)
        dt = time.perf_counter() - t0
    if n != expect:
        raise SystemExit(f"bare walk saw {n} files, expected {expect}")
    return dt


async def _measure(url: str, libs: list[Library], settings: Settings, excludes: list[str],
                   root: bytes, files: int, reps: int, ticks_per_load: int) -> Outcome:  # fmt: skip
    log = await EventLog.connect(url)
    try:
        await log.ensure_stream()
        first = Scanner(log, libs, settings, extra_excludes=excludes)
        await first.load()
        t0 = time.perf_counter()
        [report] = await first.tick(full=True)
        first_s = time.perf_counter() - t0
        if report.new != files:
            raise SystemExit(f"first scan found {report.new} new files, expected {files}")
        last = await log.last_seq()
        say(f"first full scan: {first_s:.2f}s, {first.published} events published "
            f"({files / first_s:.0f} files/s), stream last_seq {last}")  # fmt: skip

        loads: list[float] = []
        ticks: list[float] = []
        _time_walk(root, files)  # warm-up, not counted
        walks: list[float] = []
        for r in range(reps):
            scanner = Scanner(log, libs, settings, extra_excludes=excludes)
            with quiet_gc():
                t0 = time.perf_counter()
                await scanner.load()
                loads.append(time.perf_counter() - t0)
            known = len(scanner.state.lib_files(libs[0].id))
            if known != files:
                raise SystemExit(f"load() knows {known} files, expected {files}")
            say(f"rep {r + 1}/{reps}: load {loads[-1]:.3f}s ({files / loads[-1]:.0f} events/s)")
            for t in range(ticks_per_load):
                with quiet_gc():
                    t0 = time.perf_counter()
                    [report] = await scanner.tick(full=True)
                    ticks.append(time.perf_counter() - t0)
                now = await log.last_seq()
                if scanner.published != 0 or now != last or report.files != files:
                    raise SystemExit(
                        f"unchanged re-scan published {scanner.published} events "
                        f"(last_seq {last} -> {now}), saw {report.files} files"
                    )
                walks.append(_time_walk(root, files))
                say(f"rep {r + 1}/{reps} tick {t + 1}/{ticks_per_load}: tick {ticks[-1]:.3f}s  "
                    f"walk {walks[-1]:.3f}s  published {scanner.published}")  # fmt: skip
    finally:
        await log.close()
    value, limit = median(ticks), median(walks)
    return {
        "value": round(value, 3), "limit": round(limit, 3), "unit": "s (medians)",
        "ratio": round(value / limit, 3), "goal": GOAL, "files": files,
        "tick_runs_s": spread(ticks), "walk_runs_s": spread(walks),
        "load_s": round(median(loads), 3), "load_events_per_s": round(files / median(loads)),
        "first_scan_s": round(first_s, 3),
        "first_scan_events": first.published, "rescan_events": 0,
    }  # fmt: skip


def main(argv: list[str]) -> int:
    p = base_parser("rescan", __doc__)
    p.add_argument("--dirs", type=int, default=1000, help="leaf directories (1000)")
    p.add_argument("--per-dir", type=int, default=100, help="files per directory (100)")
    p.add_argument("--reps", type=int, default=2, help="fresh Scanner + load() repetitions (2)")
    add_runs(p, "--ticks", quick=3)  # timed ticks (and walks) per load
    a = p.parse_args(argv)
    if a.quick:
        a.dirs, a.reps = 100, 1

    def body() -> Outcome:
        with scratch_dir("rescan", a.tmp, a.keep) as tmp:
            lib_root = tmp / "library"
            t0 = time.perf_counter()
            files = make_tree(lib_root, a.dirs, a.per_dir)
            say(f"made {files} files in {a.dirs} dirs in {time.perf_counter() - t0:.1f}s")
            libs, excludes = load_libraries([str(lib_root)])
            settings = Settings(data_dir=tmp / "data", watch=False)
            with nats_server(tmp / "nats") as url:
                root = os.fsencode(lib_root)
                return asyncio.run(
                    _measure(url, libs, settings, excludes, root, files, a.reps, runs_of(a))
                )

    return run_main("rescan", body, a.strict)
