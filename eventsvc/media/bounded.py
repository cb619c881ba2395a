"""Running a parser on hostile input, bounded: the extractors' guard rails.

A parser runs in a daemon worker thread abandoned after a timeout (:func:`run_bounded`),
reads through a :class:`GuardedReader` that stops it once cancelled or after a budget of
reads/seeks, and reports problems into a bounded, de-duplicated :class:`Warnings` list
(exifread's own log records included, via :func:`log_capture`). Nothing here is exported:
the names are shared by the sibling extractor modules only.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from eventsvc.media.facts import MediaError

__all__ = ["Cancelled", "GuardedReader", "Warnings", "log_capture", "open_regular", "run_bounded"]

_MAX_WARNINGS = 16
_MAX_WARNING_LEN = 200

_T = TypeVar("_T")


class Warnings:
    """A small, bounded, de-duplicated list of warning strings (thread-safe enough)."""

    def __init__(self) -> None:
        self._items: list[str] = []

    def add(self, message: str) -> None:
        msg = " ".join(str(message).split())[:_MAX_WARNING_LEN]
        if msg and msg not in self._items and len(self._items) < _MAX_WARNINGS:
            self._items.append(msg)

    def snapshot(self) -> tuple[str, ...]:
        return tuple(self._items)


class _LogCapture(logging.Filter):
    """Routes exifread's log records emitted by our worker threads into their warnings."""

    def __init__(self) -> None:
        super().__init__()
        self.sinks: dict[int, Warnings] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        sink = self.sinks.get(record.thread or 0)
        if sink is None:
            return True
        if record.levelno >= logging.WARNING:
            try:
                sink.add("exifread: " + record.getMessage())
            except Exception:  # a malformed log call must not break extraction
                sink.add("exifread: unformattable log message")
        return False


_capture: _LogCapture | None = None
_capture_lock = threading.Lock()


def log_capture() -> _LogCapture:
    global _capture
    with _capture_lock:
        if _capture is None:
            _capture = _LogCapture()
            logging.getLogger("exifread").addFilter(_capture)
        return _capture


class Cancelled(Exception):
    """Raised inside an abandoned worker at its next read or seek."""


class _TooMuchWork(Exception):
    """Raised when a parser performs more reads/seeks than any sane file needs."""


class GuardedReader(io.BufferedReader):
    """Buffered reader that stops a parser once cancelled or after ``budget`` operations.

    Every read/seek is checked, including those served from the buffer, so an abandoned
    worker stops at once and hostile structure (IFD chains, huge entry counts) cannot
    spin or allocate without bound.
    """

    def __init__(self, raw: io.RawIOBase, budget: int) -> None:
        super().__init__(raw, 64 * 1024)
        self.cancelled = False
        self.operations = 0
        self._budget = budget

    def _tick(self) -> None:
        if self.cancelled:
            raise Cancelled("extraction abandoned")
        self.operations += 1
        if self.operations > self._budget:
            raise _TooMuchWork(f"gave up after {self._budget} reads (hostile structure?)")

    def read(self, size: int | None = -1) -> bytes:
        self._tick()
        return super().read(size)

    def read1(self, size: int = -1) -> bytes:
        self._tick()
        return super().read1(size)

    def readinto(self, buffer: Any) -> int:
        self._tick()
        return super().readinto(buffer)

    def peek(self, size: int = 0) -> bytes:
        self._tick()
        return super().peek(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._tick()
        return super().seek(offset, whence)


def run_bounded(fn: Callable[[], _T], timeout_s: float, name: str) -> tuple[bool, _T | None]:
    """Run ``fn`` in a daemon thread; (finished, result). Exceptions propagate."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    worker.join(max(0.0, timeout_s))
    if worker.is_alive():
        return False, None
    if "error" in box:
        raise box["error"]
    return True, box.get("result")


def open_regular(path: str | os.PathLike[str]) -> tuple[io.FileIO, int]:
    """Open a regular file for reading or raise MediaError."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise MediaError(f"{os.fspath(path)!s}: not a regular file")
        fh = io.FileIO(path, "r")
    except OSError as exc:
        raise MediaError(f"cannot read {os.fspath(path)!s}: {exc}") from exc
    return fh, st.st_size
