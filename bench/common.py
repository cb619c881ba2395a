"""Shared pieces: options, progress lines, the result line, scratch dirs, a NATS server."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from eventsvc.server import EmbeddedNats

__all__ = [
    "Outcome",
    "base_parser",
    "emit",
    "nats_server",
    "quiet_gc",
    "rate",
    "run_main",
    "say",
    "scratch_dir",
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
    d = Path(tempfile.mkdtemp(prefix=f"eventsvc-bench-{name}-", dir=parent))
    say(f"scratch dir {d}")
    try:
        yield d
    finally:
        if keep:
            say(f"kept {d}")
        else:
            t0 = time.monotonic()
            shutil.rmtree(d, ignore_errors=True)
            say(f"removed the scratch dir in {time.monotonic() - t0:.1f}s")


@contextlib.contextmanager
def nats_server(store: Path) -> Iterator[str]:
    """A private embedded nats-server (JetStream on) for the benchmark's lifetime."""
    server = EmbeddedNats(store)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect first so one measurement does not pay for the garbage of the previous one."""
    gc.collect()
    yield


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
