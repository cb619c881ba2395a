"""Progress of the long commands (`rebuild`, `scan`, `reencode`, `rederive`): a bar with
rate and ETA on a terminal (rich), plain lines without one (no ANSI codes), on stderr.

- :class:`ProgressBar` (a context manager): ``add(description, total)`` a task,
  ``update(task, completed, total)``. Plain lines are at most one per ``interval``
  seconds per task, and a last one at the end:
  ``replaying: 1200/5000 (24%), 350.0/s, ETA 0:00:11``.
- :func:`backfill_progress`: the ``progress`` callback of a backfill (reencode,
  rederive): a bar of done / (done + pending + in flight) on a terminal; without one its
  states as JSON lines, each state once (as before).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import IO, Any

__all__ = ["ProgressBar", "backfill_progress", "plain_line"]


def _eta(seconds: float) -> str:
    return str(timedelta(seconds=max(0, round(seconds))))


def plain_line(description: str, completed: int, total: int | None, rate: float | None) -> str:
    """``replaying: 1200/5000 (24%), 350.0/s, ETA 0:00:11`` (the parts that are known)."""
    text = f"{description}: {completed}"
    if total:
        text += f"/{total} ({100 * completed // total}%)"
    if rate is not None:
        text += f", {rate:.1f}/s"
        if total and rate > 0 and completed < total:
            text += f", ETA {_eta((total - completed) / rate)}"
    return text


@dataclass
class _Plain:
    description: str
    total: int | None
    started: float = field(default_factory=time.monotonic)
    completed: int = 0
    shown_at: float = 0.0
    shown: tuple[int, int | None] | None = None

    def rate(self, now: float) -> float | None:
        elapsed = now - self.started
        return self.completed / elapsed if elapsed > 0 else None


class ProgressBar:
    """Tasks with a bar (terminal) or plain lines (otherwise) on ``stream``."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        tty: bool | None = None,
        interval: float = 2.0,
        columns: Iterable[Any] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self._plain: dict[int, _Plain] = {}
        self._rich: Any = None
        if self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._rich = Progress(
                *(
                    columns
                    or (
                        TextColumn("{task.description}"),
                        BarColumn(),
                        MofNCompleteColumn(),
                        TaskProgressColumn(),
                        TextColumn("{task.fields[rate]}"),
                        TextColumn("ETA"),
                        TimeRemainingColumn(),
                        TimeElapsedColumn(),
                    )
                ),
                console=Console(file=self.stream, force_terminal=True),
            )

    def __enter__(self) -> ProgressBar:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            return
        for task_id in self._plain:
            self._show(task_id, force=True)

    def add(self, description: str, total: int | None = None) -> int:
        if self._rich is not None:
            return int(self._rich.add_task(description, total=total, rate=""))
        task_id = len(self._plain)
        self._plain[task_id] = _Plain(description, total)
        return task_id

    def update(self, task_id: int, completed: int, total: int | None = None) -> None:
        if self._rich is not None:
            task = self._rich.tasks[task_id]
            speed = task.speed
            rate = f"{speed:.1f}/s" if speed else ""
            self._rich.update(task_id, completed=completed, total=total, rate=rate)  # type: ignore[arg-type]
            return
        p = self._plain[task_id]
        p.completed = completed
        if total is not None:
            p.total = total
        self._show(task_id)

    def _show(self, task_id: int, *, force: bool = False) -> None:
        p = self._plain[task_id]
        now = time.monotonic()
        if (p.completed, p.total) == p.shown:
            return
        if not force and p.shown is not None and now - p.shown_at < self.interval:
            return
        p.shown, p.shown_at = (p.completed, p.total), now
        print(plain_line(p.description, p.completed, p.total, p.rate(now)), file=self.stream,
              flush=True)  # fmt: skip


DONE_KEYS = ("encoded", "skipped", "rederived", "current", "other_library", "failed")
"""The counts of a backfill's state that are messages done (reencode, rederive)."""


def backfill_progress(
    description: str, bar: ProgressBar | None = None, stream: IO[str] | None = None
) -> Callable[[dict[str, Any]], None]:
    """A backfill's ``progress`` callback: on ``bar`` (a terminal) done of done + pending +
    in flight; else JSON lines on ``stream`` (stderr), each state once."""
    stream = stream if stream is not None else sys.stderr
    last: dict[str, Any] = {}
    task: list[int] = []

    def progress(state: dict[str, Any]) -> None:
        if bar is not None and bar.tty:
            done = sum(int(state.get(k) or 0) for k in DONE_KEYS)
            total = done + int(state.get("pending") or 0) + int(state.get("in_flight") or 0)
            if not task:
                task.append(bar.add(description, total=total))
            bar.update(task[0], done, total)
            return
        if state != last:
            last.clear()
            last.update(state)
            print(json.dumps(state), file=stream, flush=True)

    return progress
