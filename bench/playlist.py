"""playlist: HLS generation by our worker's code vs bare ffmpeg with identical arguments.

Two sources, made with ffmpeg's testsrc + sine: an H.264/AAC file with 2 s key frames
(the remux path) and an MPEG-4 Part 2/MP3 file (the transcode path, x264 at the
default preset). Ours = ``eventsvc.derive.playlist.generate`` end to end without the
poster/preview (probe with PyAV, plan, ffmpeg into a temp dir, playlist validation,
codec string, rename into place); limit = one ``ffmpeg`` process with the very
arguments our plan built, into an empty directory. RUNS rounds (3 x RUNS for the short
remux jobs) alternate who goes first; medians, garbage collector off around both sides.
ratio = bare seconds / our seconds (wall) per path; the headline ratio is the worse of
the two; goal >= 0.95. ``*_cpu_ratio`` compares CPU seconds (ours: this process + its
ffmpeg), steadier on a shared machine.
``extras_s`` is what the poster + preview add per job (one run, so noisy).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

from bench.common import (
    Outcome,
    add_runs,
    base_parser,
    median,
    quiet_gc,
    run_main,
    runs_of,
    say,
    scratch_dir,
)
from eventsvc.derive.playlist import generate
from eventsvc.media.probe import probe
from eventsvc.video import ffmpeg as ff

__all__ = ["main"]

GOAL = ">= 0.95"


def _make(ffmpeg: str, out: Path, seconds: int, size: str, rate: int, v: list[str],
          a: list[str]) -> Path:  # fmt: skip
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=duration={seconds}:size={size}:rate={rate}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-pix_fmt", "yuv420p", *v, *a, "-shortest", str(out)],
        check=True,
    )  # fmt: skip
    return out


def _fake_hash(n: int) -> str:
    return f"{n:02x}" * 32


_LOOP = asyncio.new_event_loop()
"""One event loop for all our jobs, as in the worker (no loop or thread pool per job)."""


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (ffmpeg)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _ours(
    src: Path, root: Path, n: int, opts: ff.HlsOptions, ffmpeg: str, extras: bool
) -> tuple[float, float]:
    with quiet_gc():
        c0, t0 = _cpu(), time.perf_counter()
        g = _LOOP.run_until_complete(
            generate(str(src), root, _fake_hash(n), opts=opts, timeout=3600, ffmpeg=ffmpeg,
                     extras=extras)
        )  # fmt: skip
        dt, dc = time.perf_counter() - t0, _cpu() - c0
    shutil.rmtree(g.directory)
    return dt, dc


def _bare(args: list[str], out: Path) -> tuple[float, float]:
    out.mkdir()
    with quiet_gc():
        c0, t0 = _cpu(), time.perf_counter()
        subprocess.run(args, check=True)
        dt, dc = time.perf_counter() - t0, _cpu() - c0
    shutil.rmtree(out)
    return dt, dc


def main(argv: list[str]) -> int:
    p = base_parser("playlist", __doc__)
    p.add_argument("--remux-seconds", type=int, default=60, help="remux source length (60)")
    p.add_argument("--transcode-seconds", type=int, default=20, help="transcode source (20)")
    add_runs(p, "--reps", default=5, quick=3)
    p.add_argument("--preset", default="veryfast", help="x264 preset of transcodes (veryfast)")
    a = p.parse_args(argv)
    if a.quick:
        a.remux_seconds, a.transcode_seconds = 20, 6
    a.reps = runs_of(a)

    def body() -> Outcome:
        try:
            ffmpeg = ff.ffmpeg_exe()
        except ImportError as exc:
            raise SystemExit(f"imageio-ffmpeg is needed (eventsvc[video]): {exc}") from exc
        opts = ff.HlsOptions(segment_seconds=2.0, max_height=720, preset=a.preset)
        say(f"ffmpeg {ffmpeg}; {os.cpu_count()} CPUs; preset {a.preset}")
        with scratch_dir("playlist", a.tmp, a.keep) as root:
            t0 = time.perf_counter()
            remux = _make(ffmpeg, root / "remux.mp4", a.remux_seconds, "1280x720", 30,
                          ["-c:v", "libx264", "-preset", "ultrafast", "-g", "60"],
                          ["-c:a", "aac"])  # fmt: skip
            trans = _make(ffmpeg, root / "transcode.avi", a.transcode_seconds, "640x360", 25,
                          ["-c:v", "mpeg4", "-q:v", "4"], ["-c:a", "libmp3lame"])  # fmt: skip
            say(f"made the sources in {time.perf_counter() - t0:.1f}s")
            out: Outcome = {}
            ratios = {}
            totals = {"ours": 0.0, "bare": 0.0}
            for label, src in (("remux", remux), ("transcode", trans)):
                plan = ff.plan(probe(src), opts)
                if plan.mode != label:
                    raise SystemExit(f"{src.name}: planned {plan.mode}, expected {label}")
                bare_dir = root / "bare"
                args = ff.hls_args(ffmpeg, str(src), bare_dir, plan, opts)
                ours: list[float] = []
                bare: list[float] = []
                cpu: dict[str, list[float]] = {"ours": [], "bare": []}
                _ours(src, root / "videos", 0, opts, ffmpeg, False)  # warm the page cache
                reps = a.reps * (3 if label == "remux" else 1)  # short jobs: more samples
                for r in range(reps):
                    order = ("bare", "ours") if r % 2 == 0 else ("ours", "bare")
                    for who in order:
                        if who == "ours":
                            dt, dc = _ours(src, root / "videos", r + 1, opts, ffmpeg, False)
                            ours.append(dt)
                        else:
                            dt, dc = _bare(args, bare_dir)
                            bare.append(dt)
                        cpu[who].append(dc)
                        say(f"{label} rep {r + 1}/{reps} {who:<4}: {dt:.3f}s ({dc:.3f} s CPU)")
                mo, mb = median(ours), median(bare)
                ratios[label] = mb / mo
                totals["ours"] += mo
                totals["bare"] += mb
                extras = _ours(src, root / "videos", 99, opts, ffmpeg, True)[0] - mo
                co, cb = median(cpu["ours"]), median(cpu["bare"])
                out |= {
                    f"{label}_ours_s": round(mo, 3), f"{label}_bare_s": round(mb, 3),
                    f"{label}_ratio": round(mb / mo, 3), f"{label}_extras_s": round(extras, 3),
                    f"{label}_cpu_ours_s": round(co, 3), f"{label}_cpu_bare_s": round(cb, 3),
                    f"{label}_cpu_ratio": round(cb / co, 3),
                    f"{label}_source_s": a.remux_seconds if label == "remux"
                    else a.transcode_seconds,
                }  # fmt: skip
        headline = min(ratios.values())
        return {
            "value": round(totals["ours"], 3), "limit": round(totals["bare"], 3),
            "unit": "s (remux + transcode job, medians)", "ratio": round(headline, 3),
            "goal": GOAL, **out, "runs": a.reps, "cpus": os.cpu_count(),
        }  # fmt: skip

    return run_main("playlist", body, a.strict)
