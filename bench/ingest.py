"""ingest: first ingest of N 12-megapixel JPEGs (hash, EXIF, thumbnails, pHash/dHash).

Files (:mod:`bench.ingest_files`): N distinct 4000x3000 JPEGs with EXIF, byte copies of
8 base images with their EXIF ImageUniqueID patched. Both runs are warm: every file is
read once and then held mapped (``pinned``) until the end, since some kernels page out
idle page cache within a minute (``--no-pin`` to skip); each run reports the bytes it
read from storage.

Ours: the real pipeline in-process on a private embedded nats-server: ``Scanner.tick``
(full), the ``hasher`` and ``media`` workers from ``make_worker`` and the ``Projector``,
default settings (media_concurrency = CPUs, hash_concurrency 2). Timed from the start of
the scan until the SQLite read model has a ``thumbnails`` and a ``media`` row for every
content; no ``failures`` row is allowed.

Limit: a bare loop doing the same per-file work with the same libraries in a
``multiprocessing.Pool(os.cpu_count())``: blake3 of the file, ``exif.extract_image``,
``thumbs.decode_for_thumbs`` + ``render_thumbnails`` (each size written to disk), and
``imagehash.phash``/``dhash`` of the grey image. Its perceptual hashes must agree with the
read model's. Context: ``exiftool -j`` (one process) over the same files.
``--runs`` runs of each alternate which goes first and the median of each counts (the
extra figures are those of the median run).

Two ratios, goal >= 0.9 for both (issue 18): ``wall_ratio`` = ours /
bare files per wall second, and ``cpu_ratio`` = ours / bare files per CPU second, where
each side's CPU is that of every process doing its work (:class:`bench.common.CpuSnapshot`:
ours = this Python process + its decode-sandbox children + nats-server; bare = the pool
workers + this process feeding them). ``ratio`` is the lower of the two: a side that got a
bigger share of a busy machine's cores does not win the wall ratio alone. Every timed run
also reports the cores other processes used meanwhile (``/proc/stat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, TypeVar

from bench.cleanup import cache_dir
from bench.common import (
    CpuSnapshot,
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
)
from bench.ingest_files import (
    cached_files,
    make_base,
    make_files,
    pinned,
    warm,
)

__all__ = [
    "bare_one",
    "main",
    "make_base",
    "make_files",
    "pinned",
    "time_bare",
    "time_exiftool",
    "time_ours",
    "warm",
]

GOAL = ">= 0.9"
"""Of both ratios (issue 18): files per wall second and files per CPU second."""


def _read_bytes(pid: int | str = "self") -> int:
    """Bytes a process fetched from storage so far (/proc/PID/io read_bytes; 0 if unknown)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


# ---------------------------------------------------------------- the limit


def bare_one(path: str, out: str) -> tuple[str, str, str]:
    """The media deriver's and the hasher's work on one file: (blake3, phash, dhash)."""
    import blake3
    import imagehash

    from eventsvc.media import exif, thumbs

    h = blake3.blake3(max_threads=1)
    h.update_mmap(path)
    digest = h.hexdigest()
    exif.extract_image(path)
    img = thumbs.decode_for_thumbs(path, max_edge=max(thumbs.SIZES.values()))
    target = os.path.join(out, digest[:2], digest)
    os.makedirs(target, exist_ok=True)
    for name, data in thumbs.render_thumbnails(img).items():
        with open(os.path.join(target, f"{name}.jpg"), "wb") as f:
            f.write(data)
    gray = img.convert("L")
    return digest, str(imagehash.phash(gray)), str(imagehash.dhash(gray))


def _ready(_: int) -> int:
    """Run in each worker before the clock starts: the imports are not part of the work."""
    import blake3  # noqa: F401
    import imagehash  # noqa: F401

    from eventsvc.media import exif, thumbs  # noqa: F401

    return os.getpid()


def _machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (all but idle and iowait; 0 if unknown)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def time_bare(
    paths: list[Path], out: Path, procs: int
) -> tuple[float, dict[str, float], dict[str, tuple[str, str]]]:
    """(seconds, {cpu_s, others_cores, read_bytes}, content hash -> (phash, dhash)).
    cpu_s: the pool workers' and this process's CPU during the run."""
    results: dict[str, tuple[str, str]] = {}
    out.mkdir(parents=True, exist_ok=True)
    with pool(procs, initializer=gc.disable) as workers:  # quiet_gc in every worker
        workers.map(_ready, range(procs))  # workers up (and imported) before the clock starts
        pids = [p.pid for p in multiprocessing.active_children()]
        work = functools.partial(bare_one, out=str(out))
        with quiet_gc():
            read0 = sum(map(_read_bytes, pids))
            snap, machine0 = CpuSnapshot(), _machine_cpu()
            t0 = time.perf_counter()
            for digest, ph, dh in workers.imap_unordered(work, map(str, paths), chunksize=1):
                results[digest] = (ph, dh)
            dt = time.perf_counter() - t0
            (cpu, _), machine = snap.used(), _machine_cpu() - machine0
            read = sum(map(_read_bytes, pids)) - read0
    stats = {"cpu_s": cpu, "others_cores": max(0.0, (machine - cpu) / dt), "read_bytes": read}
    return dt, stats, results


# ---------------------------------------------------------------- ours


async def _settle(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    stop.set()
    _, pending = await asyncio.wait(tasks, timeout=15)
    for t in pending:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _ours(
    url: str, nats_pid: int | None, lib_root: Path, data_dir: Path, expect: int, stall_s: float
) -> tuple[float, dict[str, Any], dict[str, tuple[str, str]]]:
    from eventsvc.components import make_worker
    from eventsvc.core.log import EventLog
    from eventsvc.core.settings import Settings, load_libraries
    from eventsvc.scanner.scanner import Scanner
    from projections import readmodel
    from projections.projector import Projector

    libs, excludes = load_libraries([str(lib_root)])
    settings = Settings(data_dir=data_dir, nats_url=url, watch=False)
    log = await EventLog.connect(url, stream=settings.stream, prefix=settings.subject_prefix)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    reader: sqlite3.Connection | None = None
    try:
        await log.ensure_stream()
        scanner = Scanner(log, libs, settings, extra_excludes=excludes)
        await scanner.load()
        hasher = await make_worker("hasher", log, settings, libs)
        media = await make_worker("media", log, settings, libs)
        projector = Projector(log, settings.readmodel_dir, batch=settings.projector_batch)
        tasks = [asyncio.create_task(c.run(stop)) for c in (hasher, media, projector)]
        deadline = time.monotonic() + 30
        while (path := readmodel.current_path(settings.readmodel_dir)) is None:
            if time.monotonic() > deadline:
                raise SystemExit("the projector did not create a read model in 30 s")
            await asyncio.sleep(0.02)
        reader = readmodel.open_reader(path)
        say(
            f"ours: media_concurrency {settings.media_concurrency}, "
            f"hash_concurrency {settings.hash_concurrency}, projector batch "
            f"{settings.projector_batch}"
        )

        def counts() -> tuple[int, int, int, int]:
            assert reader is not None
            row = reader.execute(
                "SELECT (SELECT count(*) FROM thumbnails), (SELECT count(*) FROM media),"
                " (SELECT count(*) FROM failures),"
                " (SELECT count(*) FROM files WHERE content_hash IS NOT NULL)"
            ).fetchone()
            return int(row[0]), int(row[1]), int(row[2]), int(row[3])

        with quiet_gc():
            snap, machine0 = CpuSnapshot(), _machine_cpu()
            read0 = _read_bytes()
            t0 = time.perf_counter()
            [report] = await scanner.tick(full=True)
            scan_s = time.perf_counter() - t0
            if report.new != expect:
                raise SystemExit(f"the scan found {report.new} new files, expected {expect}")
            hashed_s: float | None = None
            last_change, last_counts, next_say = t0, (-1, -1, -1, -1), t0 + 10
            while True:
                thumbs, media_rows, failures, hashed = c = counts()
                now = time.perf_counter()
                if hashed_s is None and hashed >= expect:
                    hashed_s = now - t0
                if failures:
                    raise SystemExit(f"{failures} failures recorded in the read model")
                if thumbs >= expect and media_rows >= expect:
                    break
                if c != last_counts:
                    last_change, last_counts = now, c
                elif now - last_change > stall_s:
                    raise SystemExit(
                        f"no progress for {stall_s:.0f}s: thumbnails {thumbs}, "
                        f"media {media_rows}, hashed {hashed} of {expect}"
                    )
                if now >= next_say:
                    say(
                        f"ours: {now - t0:6.1f}s hashed {hashed}, thumbnails {thumbs}, "
                        f"media {media_rows} / {expect} ({rate(thumbs, now - t0):.2f} files/s)"
                    )
                    next_say += 10
                # the poll's own CPU (4 counts) is charged to ours: poll less often as the
                # run gets longer (its timing error stays under 0.5 %)
                await asyncio.sleep(min(0.5, max(0.05, (now - t0) / 200)))
            dt = time.perf_counter() - t0
            total_cpu, by_pid = snap.used()
            machine = _machine_cpu() - machine0
            nats_cpu = by_pid.get(nats_pid, 0.0) if nats_pid is not None else 0.0
            sandbox_cpu = sum(v for pid, v in by_pid.items() if pid != nats_pid)
            cpu = total_cpu - nats_cpu
            read = _read_bytes() - read0
        rows = reader.execute(
            "SELECT content_hash, phash, dhash FROM content WHERE phash IS NOT NULL"
        ).fetchall()
        extra = {
            "scan_s": scan_s,
            "hashed_s": hashed_s,
            "cpu_s": cpu,
            "sandbox_cpu_s": sandbox_cpu,
            "nats_cpu_s": nats_cpu,
            "others_cores": max(0.0, (machine - cpu - nats_cpu) / dt),
            "read_bytes": read,
            "media_concurrency": settings.media_concurrency,
            "hash_concurrency": settings.hash_concurrency,
            "media_done": media.stats.done,
            "hasher_done": hasher.stats.done,
            "retried": media.stats.retried + hasher.stats.retried,
        }
        return dt, extra, {r[0]: (r[1], r[2]) for r in rows}
    finally:
        if reader is not None:
            reader.close()
        await _settle(tasks, stop)
        await log.close()


def time_ours(
    tmp: Path, lib_root: Path, expect: int, stall_s: float
) -> tuple[float, dict[str, Any], dict[str, tuple[str, str]]]:
    """One first ingest on a fresh nats-server store and data dir (removed afterwards)."""
    from eventsvc.server import EmbeddedNats

    run_dir = Path(tempfile.mkdtemp(prefix="ours-", dir=tmp))
    server = EmbeddedNats(run_dir / "nats")
    url = server.start()
    pid = server.proc.pid if server.proc is not None else None
    try:
        data_dir = run_dir / "data"
        dt, extra, hashes = asyncio.run(_ours(url, pid, lib_root, data_dir, expect, stall_s))
    finally:
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    return dt, extra, hashes


# ---------------------------------------------------------------- exiftool


def time_exiftool(paths: list[Path], tmp: Path) -> tuple[float | None, str]:
    """Seconds for one ``exiftool -j`` over all files (None, reason when unavailable)."""
    exe = shutil.which("exiftool")
    if exe is None:
        return None, ("exiftool not found (Debian: apt-get install -y libimage-exiftool-perl)")
    ver = subprocess.run([exe, "-ver"], capture_output=True, text=True).stdout.strip()
    args = tmp / "exiftool.args"
    args.write_text("".join(f"{p}\n" for p in paths))
    out = tmp / "exiftool.json"
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        proc = subprocess.run([exe, "-j", "-@", str(args)], stdout=f, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    try:
        got = len(json.loads(out.read_bytes()))
    except ValueError:
        got = -1
    if got != len(paths):
        err = proc.stderr.decode(errors="replace").strip()[-300:]
        return None, f"exiftool {ver} returned {got} records for {len(paths)} files: {err}"
    return dt, f"exiftool {ver}"


# ---------------------------------------------------------------- main


def _compare(ours: dict[str, tuple[str, str]], bare: dict[str, tuple[str, str]], n: int) -> None:
    if len(bare) != n or len(ours) != n:
        raise SystemExit(f"{n} files but {len(bare)} bare and {len(ours)} read-model contents")
    bad = [h for h, v in bare.items() if ours.get(h) != v]
    if bad:
        raise SystemExit(
            f"perceptual hashes differ for {len(bad)} contents, e.g. {bad[0]}: "
            f"bare {bare[bad[0]]} vs read model {ours.get(bad[0])}"
        )


def _runs(
    a: Any, tmp: Path, paths: list[Path], procs: int
) -> tuple[list[tuple[float, dict[str, Any]]], list[tuple[float, dict[str, float]]]]:
    """``a.runs`` runs of each, alternating which goes first; perceptual hashes compared."""
    lib_root = paths[0].parents[2]
    ours_runs: list[tuple[float, dict[str, Any]]] = []
    bare_runs: list[tuple[float, dict[str, float]]] = []
    ours_hashes: dict[str, tuple[str, str]] = {}
    bare_hashes: dict[str, tuple[str, str]] = {}
    for r in range(a.runs):
        for who in ("bare", "ours") if r % 2 == 0 else ("ours", "bare"):
            if who == "bare":
                out = tmp / f"bare-thumbs-{r}"
                dt, stats, bare_hashes = time_bare(paths, out, procs)
                shutil.rmtree(out, ignore_errors=True)
                bare_runs.append((dt, stats))
                say(
                    f"run {r + 1}/{a.runs} bare: {dt:.1f}s {rate(a.files, dt):.2f} files/s "
                    f"(cpu {stats['cpu_s']:.0f}s = {stats['cpu_s'] / dt:.2f} cores; other "
                    f"processes {stats['others_cores']:.2f} cores; read from storage "
                    f"{stats['read_bytes'] / 1e9:.2f} GB)"
                )
            else:
                dt, extra, ours_hashes = time_ours(tmp, lib_root, a.files, a.stall)
                ours_runs.append((dt, extra))
                busy = (extra["cpu_s"] + extra["nats_cpu_s"]) / dt
                py_cpu = extra["cpu_s"] - extra["sandbox_cpu_s"]
                say(
                    f"run {r + 1}/{a.runs} ours: {dt:.1f}s {rate(a.files, dt):.2f} files/s "
                    f"(scan {extra['scan_s']:.2f}s, all hashed at {extra['hashed_s'] or 0:.1f}s;"
                    f" cpu {py_cpu:.1f}s + sandbox {extra['sandbox_cpu_s']:.1f}s + nats "
                    f"{extra['nats_cpu_s']:.1f}s = {busy:.2f} cores; "
                    f"other processes {extra['others_cores']:.2f} cores; "
                    f"read from storage {extra['read_bytes'] / 1e9:.2f} GB)"
                )
    _compare(ours_hashes, bare_hashes, a.files)
    say("perceptual hashes agree between the bare loop and the read model")
    return ours_runs, bare_runs


_S = TypeVar("_S")


def _median_run(runs: list[tuple[float, _S]]) -> _S:
    """The figures of the median run (the lower middle one when the count is even)."""
    return sorted(runs, key=lambda x: x[0])[(len(runs) - 1) // 2][1]


def main(argv: list[str]) -> int:
    p = base_parser("ingest", __doc__)
    p.add_argument("--files", type=int, default=2000, help="number of 12 MP JPEGs (2000)")
    add_runs(p, "--reps", quick=1)
    p.add_argument(
        "--cache",
        action="store_true",
        help="keep the generated files in $TMPDIR (keyed by --files) for next runs",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not hold the files mapped (the kernel may page them out: cold-ish runs)",
    )
    p.add_argument("--no-exiftool", action="store_true", help="skip the exiftool context run")
    p.add_argument("--stall", type=float, default=120.0, help="give up after S s without progress")
    a = p.parse_args(argv)
    if a.quick:
        a.files = 40
    a.runs = runs_of(a)
    procs = os.cpu_count() or 1

    def body() -> Outcome:
        with scratch_dir("ingest", a.tmp, a.keep) as tmp:
            with pool(procs) as workers:
                if a.cache:
                    paths = cached_files(a.tmp or cache_dir(), a.files, workers)
                else:
                    paths = make_files(tmp / "library", a.files, workers)
            t0 = time.perf_counter()
            os.sync()
            say(f"sync {time.perf_counter() - t0:.1f}s; warming the page cache")
            t0 = time.perf_counter()
            total = warm(paths)
            with contextlib.ExitStack() as stack:
                held = 0 if a.no_pin else stack.enter_context(pinned(paths))
                say(
                    f"read {total / 1e9:.2f} GB in {time.perf_counter() - t0:.1f}s, "
                    f"{held / 1e9:.2f} GB held mapped; {procs} CPUs, {a.files} files"
                )
                ours_runs, bare_runs = _runs(a, tmp, paths, procs)
                exif_s, exif_note = (None, "skipped (--no-exiftool)")
                if not a.no_exiftool:
                    exif_s, exif_note = time_exiftool(paths, tmp)
                    if exif_s is None:
                        say(f"exiftool skipped: {exif_note}")
                    else:
                        say(
                            f"{exif_note} -j: {exif_s:.1f}s {rate(a.files, exif_s):.1f} "
                            "files/s (one process)"
                        )
        ours_s, bare_s = median([t for t, _ in ours_runs]), median([t for t, _ in bare_runs])
        extra = _median_run(ours_runs)
        bare = _median_run(bare_runs)
        ours_cpu = extra["cpu_s"] + extra["nats_cpu_s"]
        value, limit = rate(a.files, ours_s), rate(a.files, bare_s)
        ours_cpu_med = median([e["cpu_s"] + e["nats_cpu_s"] for _, e in ours_runs])
        bare_cpu_med = median([b["cpu_s"] for _, b in bare_runs])
        wall_ratio = value / limit
        cpu_ratio = rate(a.files, ours_cpu_med) / rate(a.files, bare_cpu_med)
        out: Outcome = {
            "value": round(value, 3), "limit": round(limit, 3), "unit": "files/s (medians)",
            "ratio": round(min(wall_ratio, cpu_ratio), 3), "goal": GOAL,
            "ratio_is": "the lower of wall_ratio and cpu_ratio",
            "wall_ratio": round(wall_ratio, 3), "cpu_ratio": round(cpu_ratio, 3),
            "ours_files_per_cpu_s": round(rate(a.files, ours_cpu_med), 3),
            "bare_files_per_cpu_s": round(rate(a.files, bare_cpu_med), 3),
            "files": a.files,
            "bytes": total, "pinned_bytes": held, "cpus": procs,
            "ours_s": round(ours_s, 2), "bare_s": round(bare_s, 2),
            "ours_scan_s": round(extra["scan_s"], 3),
            "ours_hashed_s": round(extra["hashed_s"] or 0.0, 2),
            "ours_cpu_s": round(extra["cpu_s"] - extra["sandbox_cpu_s"], 1),
            "ours_sandbox_cpu_s": round(extra["sandbox_cpu_s"], 1),
            "ours_nats_cpu_s": round(extra["nats_cpu_s"], 1),
            "ours_total_cpu_s": round(ours_cpu, 1),
            "bare_cpu_s": round(bare["cpu_s"], 1),
            "ours_cores": round(ours_cpu / ours_s, 2),
            "bare_cores": round(bare["cpu_s"] / bare_s, 2),
            "ours_others_cores": round(extra["others_cores"], 2),
            "bare_others_cores": round(bare["others_cores"], 2),
            "ours_read_gb": round(extra["read_bytes"] / 1e9, 2),
            "bare_read_gb": round(bare["read_bytes"] / 1e9, 2),
            "ours_runs_files_per_s": [round(rate(a.files, t), 3) for t, _ in ours_runs],
            "bare_runs_files_per_s": [round(rate(a.files, t), 3) for t, _ in bare_runs],
            "media_concurrency": extra["media_concurrency"],
            "hash_concurrency": extra["hash_concurrency"], "retried": extra["retried"],
            "runs": a.runs,
        }  # fmt: skip
        if exif_s is not None:
            out["exiftool_files_per_s"] = round(rate(a.files, exif_s), 2)
            out["exiftool_s"] = round(exif_s, 2)
            out["exiftool"] = exif_note
        else:
            out["exiftool_note"] = exif_note
        return out

    return run_main("ingest", body, a.strict)
