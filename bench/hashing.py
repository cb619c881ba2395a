"""hash: ``hash_file`` throughput vs ``b3sum`` on the same files, page cache warm.

Main figure: N large files (default 8 x 256 MB), hashed one after the other by
``eventsvc.derive.hashing.hash_file`` (ours) and by one ``b3sum FILES`` process (limit).
Secondary: a few hundred JPEG-size files (0.2-6 MB), same comparison, extra keys.
RUNS rounds alternate who goes first, the garbage collector off around both; value/limit
are the medians (best_* the best).
ratio = ours / b3sum throughput; goal >= 0.9.
"""

from __future__ import annotations

import os
import random
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
    rate,
    run_main,
    runs_of,
    say,
    scratch_dir,
    spread,
)
from eventsvc.derive.hashing import hash_file

__all__ = ["main", "make_files", "time_b3sum", "time_ours"]

MB = 1_000_000
GOAL = ">= 0.9"
_BLOCK = 4 << 20


def _write(path: Path, size: int, base: bytes, rng: random.Random) -> None:
    """Random-ish content: slices of one random buffer at random offsets, each numbered."""
    with open(path, "wb") as f:
        left, n = size, 0
        while left > 0:
            k = min(_BLOCK, left)
            off = rng.randrange(0, len(base) - k + 1)
            chunk = bytearray(base[off : off + k])
            chunk[:8] = n.to_bytes(8, "little")
            f.write(chunk)
            left -= k
            n += 1


def make_files(
    root: Path, n_large: int, large_mb: int, n_small: int, seed: int = 7
) -> tuple[list[Path], list[Path]]:
    rng = random.Random(seed)
    base = os.urandom(32 << 20)
    (root / "large").mkdir()
    (root / "small").mkdir()
    large = []
    for i in range(n_large):
        p = root / "large" / f"video_{i:02d}.mp4"
        _write(p, large_mb << 20, base, rng)
        large.append(p)
    small = []
    for i in range(n_small):
        p = root / "small" / f"IMG_{i:04d}.jpg"
        size = int(min(max(rng.lognormvariate(14.5, 0.7), 200_000), 6_000_000))
        _write(p, size, base, rng)
        small.append(p)
    return large, small


def _warm(paths: list[Path]) -> None:
    buf = bytearray(16 << 20)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def time_ours(paths: list[Path]) -> tuple[float, dict[str, str]]:
    with quiet_gc():
        t0 = time.perf_counter()
        digests = {str(p): hash_file(str(p)).content_hash for p in paths}
        return time.perf_counter() - t0, digests


def time_b3sum(b3sum: str, paths: list[Path]) -> tuple[float, dict[str, str]]:
    with quiet_gc():
        t0 = time.perf_counter()
        proc = subprocess.run(
            [b3sum, "--", *map(str, paths)], capture_output=True, text=True, check=True
        )
        dt = time.perf_counter() - t0
    out = {}
    for line in proc.stdout.splitlines():
        digest, _, name = line.partition("  ")
        out[name] = digest
    return dt, out


def _compare(
    label: str, b3sum: str, paths: list[Path], reps: int
) -> tuple[list[float], list[float]]:
    """Seconds per rep (ours, b3sum), alternating which goes first."""
    ours: list[float] = []
    theirs: list[float] = []
    total = sum(p.stat().st_size for p in paths)
    for r in range(reps):
        order = ("b3sum", "ours") if r % 2 == 0 else ("ours", "b3sum")
        for who in order:
            if who == "ours":
                dt, mine = time_ours(paths)
                ours.append(dt)
            else:
                dt, ref = time_b3sum(b3sum, paths)
                theirs.append(dt)
            say(f"{label} rep {r + 1}/{reps} {who:<5}: {dt:.3f}s  {rate(total / MB, dt):8.0f} MB/s")
        bad = [p for p in mine if mine[p] != ref.get(p)]
        if bad:
            raise SystemExit(f"digest mismatch with b3sum on {len(bad)} files, e.g. {bad[0]}")
    return ours, theirs


def main(argv: list[str]) -> int:
    p = base_parser("hash", __doc__)
    p.add_argument("--files", type=int, default=8, help="number of large files (8)")
    p.add_argument("--file-mb", type=int, default=256, help="size of each large file, MiB (256)")
    p.add_argument("--small", type=int, default=300, help="number of JPEG-size files (300)")
    add_runs(p, "--reps", default=5, quick=5)
    a = p.parse_args(argv)
    if a.quick:
        a.files, a.file_mb, a.small = 2, 256, 40
    runs = runs_of(a)

    def body() -> Outcome:
        b3sum = shutil.which("b3sum")
        if b3sum is None:
            raise SystemExit(
                "b3sum not found: it is the limit this benchmark compares with; install it "
                "(Debian: apt-get update && apt-get install -y b3sum)"
            )
        ver = subprocess.run([b3sum, "--version"], capture_output=True, text=True).stdout.strip()
        say(f"{ver}; {os.cpu_count()} CPUs; hashing {a.files} x {a.file_mb} MiB + {a.small} small")
        with scratch_dir("hash", a.tmp, a.keep) as root:
            t0 = time.perf_counter()
            large, small = make_files(root, a.files, a.file_mb, a.small)
            say(f"wrote files in {time.perf_counter() - t0:.1f}s; warming the page cache")
            _warm(large + small)
            big = sum(p.stat().st_size for p in large)
            sml = sum(p.stat().st_size for p in small)
            t_ours, t_b3 = _compare("large", b3sum, large, runs)
            s_ours, s_b3 = _compare("small", b3sum, small, runs) if small else ([], [])
        # Medians: a single lucky (or unlucky) rep on a shared machine does not decide.
        ours, limit = median(t_ours), median(t_b3)
        value, lim = rate(big / MB, ours), rate(big / MB, limit)
        out: Outcome = {
            "value": round(value, 1), "limit": round(lim, 1), "unit": "MB/s",
            "ratio": round(value / lim, 3), "goal": GOAL,
            "ours_s": round(ours, 3), "b3sum_s": round(limit, 3), "bytes": big,
            "best_value": round(rate(big / MB, min(t_ours)), 1),
            "best_limit": round(rate(big / MB, min(t_b3)), 1), "runs": runs,
            "ours_runs_s": spread(t_ours), "b3sum_runs_s": spread(t_b3),
            "files": len(large), "cpus": os.cpu_count(), "b3sum": ver,
        }  # fmt: skip
        if small:
            sv = rate(sml / MB, median(s_ours))
            sl = rate(sml / MB, median(s_b3))
            out |= {
                "small_files": len(small), "small_bytes": sml, "small_value": round(sv, 1),
                "small_limit": round(sl, 1), "small_ratio": round(sv / sl, 3),
            }  # fmt: skip
        return out

    return run_main("hash", body, a.strict)
