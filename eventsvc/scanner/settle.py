"""Bookkeeping for files still being written and for deletions seen by the watcher.

:class:`Settling` holds back a new or changed file until it has settled: its size and mtime
have not changed for ``settle_seconds`` (its mtime is that old, or the scanner saw the same
size and mtime that long ago: a clock-skewed mount still settles). A file copied in chunks
is then published once, at its final size, instead of at every size it went through.

:class:`DeletionWindow` gathers the deletions (and moves out of the root) that the watcher
reports, so that they are judged together, as a share of the library as it was when the
first one came, like a full scan's missing files, never batch by batch as inotify happens
to deliver them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from eventsvc.scanner.walk import WalkEntry

__all__ = ["DeletionWindow", "Settling"]


class Settling:
    """Files of one library seen changing: rel -> (size, mtime_ns, first seen so, monotonic)."""

    def __init__(self, settle_seconds: float) -> None:
        self.seconds = max(settle_seconds, 0.0)
        self.files: dict[bytes, tuple[int, int, float]] = {}

    def __len__(self) -> int:
        return len(self.files)

    def settled(self, e: WalkEntry, now_ns: int, now: float) -> bool:
        """Whether ``e`` may be published now; if not, it is remembered for a re-check."""
        s = self.seconds
        if s <= 0 or now_ns - e.mtime_ns >= s * 1e9:
            self.files.pop(e.rel, None)
            return True
        seen = self.files.get(e.rel)
        if seen is not None and seen[0] == e.size and seen[1] == e.mtime_ns:
            if now - seen[2] >= s:
                del self.files[e.rel]
                return True
            return False
        self.files[e.rel] = (e.size, e.mtime_ns, now)
        return False

    def split(self, entries: Iterable[WalkEntry]) -> list[WalkEntry]:
        """The settled ones of ``entries``; the others wait."""
        now_ns, now = time.time_ns(), time.monotonic()
        return [e for e in entries if self.settled(e, now_ns, now)]

    def forget(self, rel: bytes) -> None:
        self.files.pop(rel, None)

    def due_in(self) -> float | None:
        """Seconds until the first waiting file may have settled (None: none waits)."""
        if not self.files:
            return None
        now_ns, now = time.time_ns(), time.monotonic()
        best = min(
            min((mtime - now_ns) / 1e9 + self.seconds, seen + self.seconds - now)
            for _size, mtime, seen in self.files.values()
        )
        return max(best, 0.0)

    def due(self) -> set[bytes]:
        """The waiting files worth looking at again now."""
        now_ns, now = time.time_ns(), time.monotonic()
        s = self.seconds
        return {
            rel
            for rel, (_size, mtime, seen) in self.files.items()
            if now_ns - mtime >= s * 1e9 or now - seen >= s
        }


@dataclass
class DeletionWindow:
    """Deletions seen by the watcher in one library since the window opened."""

    base: int
    """Files known when the window opened: the share is judged against this."""
    rels: set[bytes] = field(default_factory=set)
    last: float = field(default_factory=time.monotonic)

    def add(self, rels: Iterable[bytes]) -> None:
        self.rels.update(rels)
        self.last = time.monotonic()

    def quiet_for(self) -> float:
        return time.monotonic() - self.last

    def too_many(self, share: float, min_files: int) -> bool:
        """The full scan's rule: more than ``share`` of at least ``min_files`` known."""
        return self.base >= min_files and len(self.rels) > share * self.base
