"""File-system notifications between ticks: inotify on bytes paths, one watch per library.

Every library root gets its own inotify instance with a watch on each directory under it
(excludes honoured, symlinked directories never entered), so a failure in one library (its
root deleted or unmounted, the watch limit reached) leaves the others watching. A failed
library is set up again with back-off; when it comes back, it is rescanned. Paths are bytes
end to end: any file name works. Notifications are grouped for a short while (debounce)
and handed to the scanner as relative paths; ``WHOLE_LIBRARY`` asks for a quick scan of the
library (after a queue overflow or a restart, when notifications may have been lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from eventsvc.core.settings import Library
from eventsvc.scanner.inotify_watch import (
    WHOLE_LIBRARY,
    Changed,
    LibraryWatch,
    LimitReached,
    Overflow,
    WatchError,
    available,
)
from eventsvc.scanner.walk import Excludes

__all__ = ["WHOLE_LIBRARY", "Changed", "WatchError", "WatchStatus", "Watcher", "available"]

log = logging.getLogger(__name__)

LIMIT_RETRY = 10
"""After a kernel limit, the next attempt comes after this many times ``retry_max``: each
attempt takes watches until the limit again, which other libraries may need."""


@dataclass
class WatchStatus:
    state: Literal["watching", "failed", "off"]
    reason: str | None = None
    since: str = ""


OnPaths = Callable[[Library, set[bytes]], Awaitable[None]]
OnStatus = Callable[[Library, WatchStatus], Awaitable[None]]


class Watcher:
    """Watches every library; hands changed relative paths to ``on_paths``."""

    def __init__(
        self,
        libraries: list[Library],
        excludes: dict[str, Excludes],
        on_paths: OnPaths,
        on_status: OnStatus,
        *,
        debounce: float = 0.2,
        retry: float = 1.0,
        retry_max: float = 60.0,
    ) -> None:
        self.libraries = libraries
        self.excludes = excludes
        self.on_paths = on_paths
        self.on_status = on_status
        self.debounce = debounce
        self.retry = retry
        self.retry_max = max(retry_max, retry)
        self.status: dict[str, WatchStatus] = {}
        self._tasks: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._running = False
        self.watches: dict[str, LibraryWatch] = {}
        """The live watch of each library (for tests and diagnostics)."""

    async def _set(self, lib: Library, state: str, reason: str | None) -> None:
        cur = self.status.get(lib.id)
        if cur is not None and (cur.state, cur.reason) == (state, reason):
            return
        st = WatchStatus(state, reason, datetime.now(UTC).isoformat())  # type: ignore[arg-type]
        self.status[lib.id] = st
        if state == "failed":
            log.warning("watching %s (%s) failed: %s", lib.name, lib.id, reason)
        try:
            async with asyncio.timeout(5.0):  # (wait_for of 3.11 may swallow a cancel)
                await self.on_status(lib, st)
        except Exception as exc:
            log.warning("cannot publish the watch status of %s: %r", lib.id, exc)

    async def off(self, reason: str) -> None:
        for lib in self.libraries:
            await self._set(lib, "off", reason)

    async def run(self, stop: asyncio.Event) -> None:
        if not available():
            await self.off("inotify is not available on this platform; periodic scans only")
            return
        self._running = True  # each watch has a halt event, set as well as cancelled
        for lib in self.libraries:
            self._start(lib)
        try:
            await stop.wait()  # the library watches loop until then (or a cancel)
        finally:
            self._running = False
            tasks = [t for t, h in self._tasks.values()]
            for _, h in self._tasks.values():
                h.set()
            self._tasks.clear()
            for t in tasks:
                t.cancel()
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=5.0)
                if late:
                    log.warning("%d library watches did not stop in time", len(late))
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.off("the scanner stopped")

    def _start(self, lib: Library) -> None:
        halt = asyncio.Event()
        self._tasks[lib.id] = (asyncio.create_task(self._keep(lib, halt)), halt)

    async def sync(self, libraries: list[Library], restart: Collection[str] = ()) -> None:
        """Watch exactly ``libraries`` from now on (issue 16: a library added, disabled or
        removed at run time); those in ``restart`` (changed excludes) are watched anew."""
        self.libraries = list(libraries)
        if not self._running:
            return
        want = {lib.id: lib for lib in libraries}
        stopping = [i for i in self._tasks if i not in want or i in restart]
        for lib_id in stopping:
            task, halt = self._tasks.pop(lib_id)
            halt.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)
            if lib_id not in want:
                self.status.pop(lib_id, None)
        for lib_id, lib in want.items():
            if lib_id not in self._tasks:
                self._start(lib)

    async def _deliver(self, lib: Library, rels: set[bytes]) -> None:
        try:
            await self.on_paths(lib, rels)
        except Exception:
            log.exception(
                "handling file notifications of %s failed; the next scan catches up", lib.id
            )

    async def _keep(self, lib: Library, stop: asyncio.Event) -> None:
        """Watch one library; after a failure, set it up again with back-off."""
        delay = self.retry
        rescan = False
        while not stop.is_set():
            watch = LibraryWatch(lib, self.excludes[lib.id])
            started = time.monotonic()
            reason: str | None = None
            try:
                await watch.start()
                self.watches[lib.id] = watch
                if watch.skipped:
                    log.info(
                        "watching %s: %d directories could not be watched", lib.id, watch.skipped
                    )
                await self._set(lib, "watching", None)
                if rescan:  # notifications may have been lost meanwhile
                    await self._deliver(lib, {WHOLE_LIBRARY})
                rescan = True
                await watch.pump(stop, lambda rels: self._deliver(lib, rels), self.debounce)
            except Overflow:
                log.warning("inotify queue of %s overflowed: watching again and rescanning", lib.id)
                delay = self.retry
                continue
            except WatchError as exc:
                reason = str(exc)
                if isinstance(exc, LimitReached):
                    delay = self.retry_max * LIMIT_RETRY
            except Exception as exc:  # a bug or an unexpected OS error: restart, say why
                log.exception("watching %s failed", lib.id)
                reason = f"watching failed: {exc!r}"
            finally:
                self.watches.pop(lib.id, None)
                watch.close()
            if stop.is_set():
                return
            rescan = True
            await self._set(lib, "failed", reason)
            if delay <= self.retry_max and time.monotonic() - started > self.retry_max:
                delay = self.retry  # it had been watching for a while: a new failure
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(delay * 2, self.retry_max)
