"""smallfiles: scan + hash of N small files (~15 KB) to every HashComputed in the log.

Files: N (default 100k) files of 10-20 KB of random bytes named ``*.jpg`` (the hasher
never decodes), 250 per directory, mtimes an hour old (settled), page cache warm.

Ours: ``Scanner.tick`` (full) and the ``hasher`` worker from ``make_worker`` (default
settings) in-process on a fresh embedded nats-server store per run. Timed from the start
of the scan until the hasher has handled every FileSeen; then a filtered consumer must
count exactly N HashComputed on the stream.

Limit: a bare loop in one asyncio task on its own fresh store: ``os.scandir`` walk with
stat, ``js.publish_async`` of each FileSeen (the scanner's subject, headers and body),
their acks awaited together, then for each file ``blake3`` of its bytes and
``js.publish_async`` of its HashComputed (same subject, headers, body; causation = the
FileSeen's sequence), acks awaited together. Bodies are built with ``json.dumps`` of the
same fields, checked against ours (``encode``) on the first file.

Runs alternate which side goes first; the median of each counts.
ratio = ours / bare files/s; goal >= 0.7. ``cpu_ratio``: the CPU seconds (our process or
the bare loop's, plus its nats-server's) bare / ours, medians: the figure a loaded machine
does not distort (our side uses threads, the bare loop one core).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import blake3

from bench.common import (
    Outcome,
    add_runs,
    base_parser,
    median,
    quiet_gc,
    rate,
    run_main,
    runs_of,
    say,
    scratch_dir,
    spread,
)

__all__ = ["bare_run", "main", "make_files", "ours_run"]

GOAL = ">= 0.7"
PER_DIR = 250
PUBLISH_WINDOW = 4096
"""Acks the bare loop leaves outstanding before it awaits them (bounded memory)."""


def make_files(root: Path, n: int, seed: int = 18) -> int:
    """N files of 10-20 KB under ``root/dNNNN/``; returns their total bytes."""
    rng = random.Random(seed)
    base = os.urandom(1 << 20)
    old = time.time() - 3600
    total = 0
    for i in range(n):
        d = root / f"d{i // PER_DIR:04d}"
        if i % PER_DIR == 0:
            d.mkdir()
        size = rng.randrange(10_000, 20_000)
        off = rng.randrange(0, len(base) - size)
        p = d / f"IMG_{i:06d}.jpg"
        p.write_bytes(i.to_bytes(8, "little") + base[off + 8 : off + size])
        os.utime(p, (old, old))
        total += size
    return total


def _proc_cpu(pid: int | None) -> float:
    """utime + stime of a process from /proc (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _warm(root: Path) -> None:
    for d in os.scandir(root):
        for f in os.scandir(d.path):
            with open(f.path, "rb") as fh:
                fh.read()


# ---------------------------------------------------------------- ours


async def _ours(
    url: str, pid: int | None, lib_root: Path, data_dir: Path, n: int, stall_s: float
) -> dict[str, Any]:
    from eventsvc.components import make_worker
    from eventsvc.core.log import ConsumerSpec, EventLog
    from eventsvc.core.settings import Settings, load_libraries
    from eventsvc.scanner.scanner import Scanner

    libs, excludes = load_libraries([str(lib_root)])
    settings = Settings(data_dir=data_dir, nats_url=url, watch=False)
    log = await EventLog.connect(url, stream=settings.stream, prefix=settings.subject_prefix)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await log.ensure_stream()
        count = ConsumerSpec("bench-count", (f"{settings.subject_prefix}.content.*.HashComputed",))
        await log.ensure_consumer(count)
        scanner = Scanner(log, libs, settings, extra_excludes=excludes)
        await scanner.load()
        hasher = await make_worker("hasher", log, settings, libs)
        task = asyncio.create_task(hasher.run(stop))
        with quiet_gc():
            cpu0, nats0 = time.process_time(), _proc_cpu(pid)
            t0 = time.perf_counter()
            [report] = await scanner.tick(full=True)
            scan_s = time.perf_counter() - t0
            if report.new != n:
                raise SystemExit(f"the scan found {report.new} new files, expected {n}")
            last, last_t = -1, time.perf_counter()
            while (done := hasher.stats.done + hasher.stats.failed) < n:
                now = time.perf_counter()
                if done != last:
                    last, last_t = done, now
                elif now - last_t > stall_s:
                    raise SystemExit(f"ours: no progress for {stall_s:.0f}s at {done}/{n}")
                await asyncio.sleep(0.01)
            dt = time.perf_counter() - t0
            cpu, nats_cpu = time.process_time() - cpu0, _proc_cpu(pid) - nats0
        stats = await log.consumer_stats("bench-count")
        stored = stats.pending if stats else 0
        if hasher.stats.failed or stored != n:
            raise SystemExit(
                f"ours: {stored} HashComputed on the stream, {hasher.stats.failed} failures, "
                f"expected {n}"
            )
        return {"s": dt, "scan_s": scan_s, "cpu_s": cpu, "nats_cpu_s": nats_cpu,
                "retried": hasher.stats.retried}  # fmt: skip
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait({task}, timeout=10)
        await log.close()


T = TypeVar("T")


def _on_fresh_server(run_dir: Path, body: Callable[[str, int | None], Coroutine[Any, Any, T]]) -> T:
    """``body(url, server pid)`` on a nats-server with a fresh store in ``run_dir``,
    removed afterwards."""
    import shutil

    from eventsvc.server import EmbeddedNats

    run_dir.mkdir()
    server = EmbeddedNats(run_dir / "nats")
    try:
        url = server.start()
        return asyncio.run(body(url, server.proc.pid if server.proc else None))
    finally:
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def ours_run(tmp: Path, lib_root: Path, n: int, stall_s: float) -> dict[str, Any]:
    """One scan + hash on a fresh nats-server store and data dir."""
    run_dir = tmp / "ours"
    return _on_fresh_server(
        run_dir, lambda url, pid: _ours(url, pid, lib_root, run_dir / "data", n, stall_s)
    )


# ---------------------------------------------------------------- bare


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _file_seen(lib: str, fid: str, rel: str, raw: str | None, st: os.stat_result) -> bytes:
    body: dict[str, Any] = {"occurred_at": _iso(datetime.now(UTC)), "type": "FileSeen", "v": 1,
                            "library_id": lib, "file_id": fid, "path": rel}  # fmt: skip
    if raw is not None:
        body["raw_path"] = raw
    body |= {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "media_kind": "image"}
    return json.dumps(body, separators=(",", ":")).encode()


def _hash_computed(
    lib: str, fid: str, rel: str, raw: str | None, digest: str, size: int, mtime: int, seq: int
) -> bytes:
    body: dict[str, Any] = {"occurred_at": _iso(datetime.now(UTC)), "causation": seq,
                            "type": "HashComputed", "v": 2, "content_hash": digest,
                            "library_id": lib, "file_id": fid, "path": rel}  # fmt: skip
    if raw is not None:
        body["raw_path"] = raw
    body |= {"size": size, "mtime_ns": mtime, "media_kind": "image"}
    return json.dumps(body, separators=(",", ":")).encode()


def _walk(root: bytes) -> list[tuple[bytes, bytes, os.stat_result]]:
    out = []
    stack = [b""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
            for e in it:
                rel = rel_dir + b"/" + e.name if rel_dir else e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append(rel)
                elif e.name.lower().endswith(b".jpg"):
                    out.append((rel, e.path, e.stat(follow_symlinks=False)))
    return out


async def _drain(futures: list[asyncio.Future[Any]]) -> list[Any]:
    acks = await asyncio.gather(*futures)
    futures.clear()
    return acks


async def _bare(url: str, pid: int | None, lib_root: Path, lib_id: str, n: int) -> dict[str, Any]:
    from eventsvc.core.ids import file_id
    from eventsvc.core.log import EventLog

    log = await EventLog.connect(url, name="bench-smallfiles-bare")
    try:
        await log.ensure_stream()
        js, pre = log.js, log.prefix
        with quiet_gc():
            cpu0, nats0 = time.process_time(), _proc_cpu(pid)
            t0 = time.perf_counter()
            files = _walk(os.fsencode(lib_root))
            meta = []
            futs: list[asyncio.Future[Any]] = []
            seqs: list[int] = []
            for rel, _, st in files:
                fid = file_id(lib_id, rel)
                try:
                    path, raw = rel.decode(), None
                except UnicodeDecodeError:
                    path, raw = rel.decode("utf-8", "replace"), base64.b64encode(rel).decode()
                meta.append((fid, path, raw))
                hdrs = {"Nats-Msg-Id": f"FileSeen:{fid}:{st.st_size}:{st.st_mtime_ns}:0",
                        "Eventsvc-Type": "FileSeen", "Eventsvc-Version": "1"}  # fmt: skip
                body = _file_seen(lib_id, fid, path, raw, st)
                futs.append(
                    await js.publish_async(f"{pre}.file.{fid}.FileSeen", body, headers=hdrs)
                )
                if len(futs) >= PUBLISH_WINDOW:
                    seqs += [a.seq for a in await _drain(futs)]
            seqs += [a.seq for a in await _drain(futs)]
            stored = 0
            for (_, full, _), (fid, path, raw), seq in zip(files, meta, seqs, strict=True):
                with open(full, "rb", buffering=0) as f:
                    st = os.fstat(f.fileno())
                    digest = blake3.blake3(f.read()).hexdigest()
                body = _hash_computed(
                    lib_id, fid, path, raw, digest, st.st_size, st.st_mtime_ns, seq
                )
                hdrs = {"Nats-Msg-Id": f"HashComputed:{digest}:{seq}",
                        "Eventsvc-Type": "HashComputed", "Eventsvc-Version": "2",
                        "Eventsvc-Causation": str(seq)}  # fmt: skip
                futs.append(
                    await js.publish_async(
                        f"{pre}.content.{digest}.HashComputed", body, headers=hdrs
                    )
                )
                if len(futs) >= PUBLISH_WINDOW:
                    stored += len(await _drain(futs))
            stored += len(await _drain(futs))
            dt = time.perf_counter() - t0
            cpu, nats_cpu = time.process_time() - cpu0, _proc_cpu(pid) - nats0
        if stored != n or len(files) != n:
            raise SystemExit(f"bare: {len(files)} files, {stored} HashComputed, expected {n}")
        return {"s": dt, "cpu_s": cpu, "nats_cpu_s": nats_cpu}
    finally:
        await log.close()


def _same_wire(lib_root: Path, lib_id: str) -> None:
    """The bare loop's bodies and headers are ours (field for field, but for the time)."""
    from eventsvc.core.events import FileSeen, HashComputed, encode, headers_for
    from eventsvc.core.ids import file_id

    rel, full, st = _walk(os.fsencode(lib_root))[0]
    fid = file_id(lib_id, rel)
    ev = FileSeen(library_id=lib_id, file_id=fid, path=rel.decode(), size=st.st_size,
                  mtime_ns=st.st_mtime_ns, media_kind="image")  # fmt: skip
    digest = blake3.blake3(Path(os.fsdecode(full)).read_bytes()).hexdigest()
    hc = HashComputed(content_hash=digest, library_id=lib_id, file_id=fid, path=rel.decode(),
                      size=st.st_size, mtime_ns=st.st_mtime_ns, media_kind="image",
                      causation=7)  # fmt: skip
    pairs = [
        (encode(ev), _file_seen(lib_id, fid, rel.decode(), None, st)),
        (encode(hc), _hash_computed(lib_id, fid, rel.decode(), None, digest, st.st_size,
                                    st.st_mtime_ns, 7)),
    ]  # fmt: skip
    for theirs, bare in pairs:
        a, b = json.loads(theirs), json.loads(bare)
        a.pop("occurred_at")
        b.pop("occurred_at")
        if a != b or list(json.loads(theirs)) != list(json.loads(bare)):
            raise SystemExit(f"bare body differs from ours: {bare!r} vs {theirs!r}")
    h = headers_for(hc)
    if h["Nats-Msg-Id"] != f"HashComputed:{digest}:7" or set(h) != {
        "Nats-Msg-Id",
        "Eventsvc-Type",
        "Eventsvc-Version",
        "Eventsvc-Causation",
    }:
        raise SystemExit(f"bare headers differ from ours: {h}")


def bare_run(tmp: Path, lib_root: Path, lib_id: str, n: int) -> dict[str, Any]:
    return _on_fresh_server(tmp / "bare", lambda url, pid: _bare(url, pid, lib_root, lib_id, n))


# ---------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    p = base_parser("smallfiles", __doc__)
    p.add_argument("--files", type=int, default=100_000, help="number of files (100000)")
    p.add_argument("--stall", type=float, default=60.0, help="give up after S s without progress")
    add_runs(p, quick=1)
    a = p.parse_args(argv)
    if a.quick:
        a.files = min(a.files, 5_000)
    runs = runs_of(a)

    def body() -> Outcome:
        from eventsvc.core.settings import load_libraries

        with scratch_dir("smallfiles", a.tmp, a.keep) as tmp:
            lib_root = tmp / "lib"
            lib_root.mkdir()
            t0 = time.perf_counter()
            total = make_files(lib_root, a.files)
            _warm(lib_root)
            say(f"wrote {a.files} files ({total / a.files / 1000:.1f} kB mean) in "
                f"{time.perf_counter() - t0:.1f}s; {os.cpu_count()} CPUs")  # fmt: skip
            libs, _ = load_libraries([str(lib_root)])
            lib_id = libs[0].id
            _same_wire(lib_root, lib_id)
            t_ours: list[float] = []
            t_bare: list[float] = []
            extra: list[dict[str, Any]] = []
            bare_extra: list[dict[str, Any]] = []
            for r in range(runs):
                order = ("bare", "ours") if r % 2 == 0 else ("ours", "bare")
                for who in order:
                    if who == "ours":
                        res = ours_run(tmp, lib_root, a.files, a.stall)
                        t_ours.append(res["s"])
                        extra.append(res)
                    else:
                        res = bare_run(tmp, lib_root, lib_id, a.files)
                        t_bare.append(res["s"])
                        bare_extra.append(res)
                    fps = rate(a.files, res["s"])
                    say(f"run {r + 1}/{runs} {who:<4}: {res['s']:.2f}s {fps:7.0f} files/s, "
                        f"cpu {res['cpu_s']:.2f}s, nats {res['nats_cpu_s']:.2f}s")  # fmt: skip
        value, limit = rate(a.files, median(t_ours)), rate(a.files, median(t_bare))
        mid = sorted(extra, key=lambda e: e["s"])[len(extra) // 2]
        cpu_ours = median([e["cpu_s"] + e["nats_cpu_s"] for e in extra])
        cpu_bare = median([e["cpu_s"] + e["nats_cpu_s"] for e in bare_extra])
        return {
            "value": round(value, 1), "limit": round(limit, 1), "unit": "files/s (medians)",
            "ratio": round(value / limit, 3), "goal": GOAL, "files": a.files,
            "mean_bytes": round(total / a.files), "runs": runs,
            "ours_runs_s": spread(t_ours), "bare_runs_s": spread(t_bare),
            "ours_scan_s": round(mid["scan_s"], 3), "ours_cpu_s": round(mid["cpu_s"], 3),
            "ours_nats_cpu_s": round(mid["nats_cpu_s"], 3),
            "cpu_ratio": round(cpu_bare / cpu_ours, 3) if cpu_ours > 0 else None,
            "retried": mid["retried"], "cpus": os.cpu_count(),
        }  # fmt: skip

    return run_main("smallfiles", body, a.strict)
