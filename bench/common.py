"""Shared pieces: options, progress lines, the result line, scratch dirs, a NATS server,
CPU accounting of a process tree, and the one statistic every benchmark reports for both
sides: the median of N runs.

Scratch and child processes are cleaned up centrally (:mod:`bench.cleanup`, installed by
``python -m bench``): ``scratch_dir`` registers its directory, ``pool`` makes a
``multiprocessing.Pool`` whose workers ignore SIGINT and which is terminated (not joined)
when the run is interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import multiprocessing.pool
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import cleanup
from eventsvc.server import EmbeddedNats

__all__ = [
    "DEFAULT_RUNS",
    "CpuSnapshot",
    "Outcome",
    "add_runs",
    "base_parser",
    "descendants",
    "emit",
    "median",
    "nats_server",
    "pool",
    "quiet_gc",
    "rate",
    "run_main",
    "runs_of",
    "say",
    "scratch_dir",
    "spread",
]

Outcome = dict[str, Any]
"""A benchmark's result: bench, value, limit, unit, ratio, goal, met, extra keys."""

_T0 = time.monotonic()


def say(msg: str) -> None:
    """One progress line (stdout, flushed, with seconds since start)."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", flush=True)


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def base_parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench {name}", description=doc)
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke test (< 30 s)")
    p.add_argument("--tmp", type=Path, default=None, help="scratch dir parent ($TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (its path is printed)")
    p.add_argument("--strict", action="store_true", help="exit 1 when the goal is missed")
    return p


@contextlib.contextmanager
def scratch_dir(name: str, parent: Path | None, keep: bool = False) -> Iterator[Path]:
    """A fresh directory for the bench's data, removed on the way out (also on Ctrl-C or
    SIGTERM, and by ``python -m bench``'s final sweep should this ``finally`` not run).
    ``keep`` (``--keep``) leaves it and prints its path."""
    d = Path(tempfile.mkdtemp(prefix=f"eventsvc-bench-{name}-", dir=parent))
    if not keep:
        cleanup.register_dir(d)
    say(f"scratch dir {d}")
    try:
        yield d
    finally:
        if keep:
            say(f"kept {d}")
        else:
            t0 = time.monotonic()
            shutil.rmtree(d, ignore_errors=True)
            cleanup.forget_dir(d)
            say(f"removed the scratch dir in {time.monotonic() - t0:.1f}s")


def _pool_worker_init(initializer: Callable[..., object] | None, args: tuple[Any, ...]) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C: the parent ends us
    if initializer is not None:
        initializer(*args)


@contextlib.contextmanager
def pool(
    processes: int | None = None,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[multiprocessing.pool.Pool]:
    """A ``multiprocessing.Pool`` whose workers ignore SIGINT (no traceback per worker on
    ^C) and which is closed and joined when the block ends normally, terminated at once
    when it ends by an exception (an interrupt must not wait for queued work)."""
    p = multiprocessing.Pool(processes, _pool_worker_init, (initializer, initargs))
    try:
        yield p
    except BaseException:
        p.terminate()
        p.join()
        raise
    else:
        p.close()
        p.join()


@contextlib.contextmanager
def nats_server(store: Path) -> Iterator[str]:
    """A private embedded nats-server (JetStream on) for the benchmark's lifetime."""
    server = EmbeddedNats(store)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


# ---------------------------------------------------------------- CPU of a process tree


def _proc_table() -> dict[int, tuple[int, int, float]]:
    """pid -> (ppid, start time in ticks, utime + stime in s) of every process (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[int, int, float]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(name)] = (
            int(fields[1]),
            int(fields[19]),
            (int(fields[11]) + int(fields[12])) / tick,
        )
    return out


def descendants(root: int | None = None) -> dict[int, tuple[int, float]]:
    """Every live descendant of ``root`` (this process): pid -> (start ticks, CPU s)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, tuple[int, float]] = {}
    todo = list(children.get(os.getpid() if root is None else root, []))
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out[pid] = (table[pid][1], table[pid][2])
        todo.extend(children.get(pid, []))
    return out


def _own_cpu() -> float:
    """This process's CPU plus that of its children reaped so far (getrusage)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class CpuSnapshot:
    """CPU seconds used by this process and all its descendants since the snapshot.

    Counted: this process (all threads), every descendant alive at the end (its CPU since
    the snapshot, or all of it when it started after), and children reaped meanwhile
    (``RUSAGE_CHILDREN``). ``used()`` -> (total, {pid: CPU s} of the live descendants).
    """

    def __init__(self) -> None:
        self.own = _own_cpu()
        self.procs = descendants()

    def used(self) -> tuple[float, dict[int, float]]:
        own = _own_cpu() - self.own
        now = descendants()
        by_pid: dict[int, float] = {}
        for pid, (start, cpu) in now.items():
            before = self.procs.get(pid)
            by_pid[pid] = cpu - before[1] if before is not None and before[0] == start else cpu
        # a child alive at the snapshot and reaped since: RUSAGE_CHILDREN counted all of it
        gone = sum(
            cpu for pid, (start, cpu) in self.procs.items() if now.get(pid, (None,))[0] != start
        )
        return max(0.0, own - gone) + sum(by_pid.values()), by_pid


DEFAULT_RUNS = 3
"""Timed runs of each side unless ``--runs`` says otherwise (``--quick`` may use fewer)."""


def add_runs(
    p: argparse.ArgumentParser, *aliases: str, default: int = DEFAULT_RUNS, quick: int = 1
) -> None:
    """``--runs N`` (and the bench's older names for it): runs of each side, alternating
    which goes first; each side's median counts. ``default`` >= 3; ``quick`` for --quick."""
    if default < 3:
        raise ValueError("a median needs at least 3 runs by default")
    p.add_argument(
        "--runs", *aliases, dest="runs", type=int, default=None, metavar="N",
        help=f"timed runs of each side, the median counts (default {default}; --quick {quick})",
    )  # fmt: skip
    p.set_defaults(runs_default=default, runs_quick=quick)


def runs_of(a: argparse.Namespace) -> int:
    """The number of runs ``add_runs`` asked for: --runs, else the quick or full default."""
    if a.runs is not None:
        return max(1, int(a.runs))
    return int(a.runs_quick if a.quick else a.runs_default)


def median(samples: list[float]) -> float:
    """The statistic of every benchmark, ours and the limit alike."""
    if not samples:
        raise ValueError("no samples")
    return float(statistics.median(samples))


def spread(samples: list[float], digits: int = 3) -> list[float]:
    """Every run, sorted, for the result line (what the median was taken of)."""
    return [round(x, digits) for x in sorted(samples)]


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No garbage collection inside the timed block: collect first (one measurement does
    not pay for the previous one's garbage), then disable the collector, and restore it."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def emit(outcome: Outcome) -> None:
    """The result line: exactly one JSON object, always the last line printed."""
    print(json.dumps(outcome, default=str), flush=True)


def _met(ratio: float, goal: str) -> bool:
    op, _, num = goal.partition(" ")
    target = float(num)
    return ratio >= target if op == ">=" else ratio <= target


def run_main(name: str, body: Callable[[], Outcome], strict: bool) -> int:
    """Run ``body`` (which cleans up after itself), then print its result line last.

    ``body`` returns value, limit, unit, ratio, goal and any extra keys; ``met`` is added.
    A body that cannot measure raises SystemExit with a message (exit 3).
    """
    try:
        outcome = body()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"{name}: {exc.code}", file=sys.stderr, flush=True)
            emit({"bench": name, "error": exc.code})
            return 3
        raise
    outcome = {"bench": name, **outcome}
    outcome["met"] = _met(float(outcome["ratio"]), str(outcome["goal"]))
    emit(outcome)
    return 1 if strict and not outcome["met"] else 0
