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
import errno
import logging
import os
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from eventsvc.core.errors import EventsvcError
from eventsvc.core.ids import media_kind
from eventsvc.core.settings import Library
from eventsvc.scanner.walk import Excludes

__all__ = ["WHOLE_LIBRARY", "Changed", "WatchError", "WatchStatus", "Watcher", "available"]

log = logging.getLogger(__name__)

WHOLE_LIBRARY = b""
"""The relative path handed over when the whole library needs a (quick) scan."""

try:  # Linux only
    from inotify_simple import INotify
except ImportError:  # pragma: no cover - other platforms
    INotify = None  # type: ignore[assignment,misc]

# inotify(7) flags
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

_EVENTS = (
    IN_ATTRIB  # mtime set after a rename (rsync -t, cp -p)
    | IN_CREATE
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
ROOT_MASK = _EVENTS | IN_ONLYDIR | IN_EXCL_UNLINK
"""The root itself may be a configured symlink (e.g. to a mount): it is followed."""
SUB_MASK = ROOT_MASK | IN_DONT_FOLLOW
"""Directories under the root: never through a symlink."""

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
_READ_SIZE = 65536
_MAX_READS = 64  # per wake-up: the kernel queue bounds the rest
_IDLE = 1.0  # longest wait without notifications (stop is checked in between)
_STEP = 0.05  # notifications are handled once quiet for this long (or after the debounce)
LIMIT_RETRY = 10
"""After a kernel limit, the next attempt comes after this many times ``retry_max``: each
attempt takes watches until the limit again, which other libraries may need."""


def available() -> bool:
    """Whether inotify can be used here (Linux with inotify_simple installed)."""
    return INotify is not None


class WatchError(EventsvcError):
    """Watching a library failed (the reason is shown in /libraries); ticks still scan it."""


class _LimitReached(WatchError):
    """A kernel limit (watches, instances): retried only after a long wait."""


class _Overflow(Exception):
    """The kernel's event queue overflowed: notifications were lost."""


@dataclass
class WatchStatus:
    state: Literal["watching", "failed", "off"]
    reason: str | None = None
    since: str = ""


class Changed(set[bytes]):
    """Relative paths that changed; :attr:`moved` names those of them (files or folders)
    that were renamed to another place under the same root: gone from here, not deleted."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.moved: set[bytes] = set()


_COOKIES = 4096
"""Renames out of a directory remembered for pairing with their arrival (IN_MOVED_TO)."""

OnPaths = Callable[[Library, set[bytes]], Awaitable[None]]
OnStatus = Callable[[Library, WatchStatus], Awaitable[None]]


def _parse(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(wd, mask, cookie, name) of each event in ``data``; names stay bytes."""
    pos, end, size = 0, len(data), _HEADER.size
    while pos + size <= end:
        wd, mask, cookie, length = _HEADER.unpack_from(data, pos)
        pos += size
        name = data[pos : pos + length].split(b"\0", 1)[0]
        pos += length
        yield wd, mask, cookie, name


def _limit(what: str) -> str:
    """The effective limit on inotify ``watches`` or ``instances`` (a user namespace may set
    a lower one than fs.inotify.*)."""
    values = []
    for path in (f"/proc/sys/fs/inotify/max_user_{what}", f"/proc/sys/user/max_inotify_{what}"):
        try:
            with open(path) as f:
                values.append(int(f.read()))
        except (OSError, ValueError):
            continue
    return str(min(values)) if values else "?"


class _LibraryWatch:
    """One inotify instance with a watch per directory of one library."""

    def __init__(self, lib: Library, excludes: Excludes) -> None:
        self.lib = lib
        self.root = os.fsencode(lib.root)
        self.excludes = excludes
        self.ino: INotify | None = None
        self.wds: dict[int, bytes] = {}  # watch descriptor -> relative directory
        self.dirs: dict[bytes, int] = {}
        self.root_wd = -1
        self.skipped = 0
        self._lock = threading.Lock()  # add_watch (threads) vs. closing the descriptor
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._moved_from: dict[int, bytes] = {}  # rename cookie -> where it left

    # ------------------------------------------------------------ set-up

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self.ino = INotify(nonblocking=True)
        except OSError as exc:
            if exc.errno == errno.EMFILE:
                raise _LimitReached(
                    f"inotify instance limit reached ({_limit('instances')} instances: "
                    "fs.inotify.max_user_instances); relying on periodic scans"
                ) from exc
            raise WatchError(f"cannot start inotify: {exc.strerror or exc}") from exc
        await self._add(WHOLE_LIBRARY)
        if self.root_wd < 0:
            raise WatchError("watching stopped while it was being set up")

    async def _add(self, rel: bytes) -> None:
        """Watch ``rel`` and every directory under it (in a thread: it walks)."""
        added, skipped = await asyncio.to_thread(self._add_tree, rel)
        self.skipped += skipped
        for wd, r in added:
            old = self.wds.get(wd)
            if old is not None and self.dirs.get(old) == wd:
                del self.dirs[old]
            self.wds[wd] = r
            self.dirs[r] = wd
            if not r:
                self.root_wd = wd

    def _add_tree(self, rel: bytes) -> tuple[list[tuple[int, bytes]], int]:
        added: list[tuple[int, bytes]] = []
        skipped = 0
        with self._lock:
            try:
                stack = [rel]
                while stack and not self._closing and self.ino is not None:
                    r = stack.pop()
                    path = os.path.join(self.root, r) if r else self.root
                    try:
                        wd = self.ino.add_watch(path, SUB_MASK if r else ROOT_MASK)
                    except OSError as exc:
                        if exc.errno == errno.ENOSPC:
                            raise _LimitReached(
                                f"inotify watch limit reached ({_limit('watches')} watches: "
                                "fs.inotify.max_user_watches); relying on periodic scans"
                            ) from exc
                        if not r:
                            why = exc.strerror or str(exc)
                            raise WatchError(f"cannot watch the root: {why}") from exc
                        skipped += 1  # vanished, unreadable, or a symlink swapped in
                        continue
                    added.append((wd, r))
                    try:
                        with os.scandir(path) as it:
                            for entry in it:
                                if self._closing:
                                    break
                                if not entry.is_dir(follow_symlinks=False):
                                    continue
                                sub = r + b"/" + entry.name if r else entry.name
                                if not self._excluded(entry.name, sub):
                                    stack.append(sub)
                    except OSError:
                        skipped += 1
            finally:
                if self._closing:
                    self._close_fd()
        return added, skipped

    def _excluded(self, name: bytes, rel: bytes) -> bool:
        ex = self.excludes
        return ex.name_bytes(name) or ex.path(rel.decode("utf-8", "surrogateescape"))

    def _forget(self, wd: int) -> None:
        rel = self.wds.pop(wd, None)
        if rel is not None and self.dirs.get(rel) == wd:
            del self.dirs[rel]

    def _forget_tree(self, rel: bytes) -> None:
        """Stop watching ``rel`` and below (moved away: maybe out of the root)."""
        prefix = rel + b"/"
        for wd, r in list(self.wds.items()):
            if r == rel or r.startswith(prefix):
                self._forget(wd)
                if self.ino is not None:
                    with contextlib.suppress(OSError):
                        self.ino.rm_watch(wd)

    # ------------------------------------------------------------ reading

    async def _readable(self, timeout: float) -> bool:
        assert self._loop is not None and self.ino is not None
        loop, fd = self._loop, self.ino.fileno()
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            loop.remove_reader(fd)
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            done, _ = await asyncio.wait({fut}, timeout=max(timeout, 0.0))
        finally:
            loop.remove_reader(fd)
        return bool(done)

    def _read(self) -> bytes:
        assert self.ino is not None
        chunks = []
        for _ in range(_MAX_READS):
            try:
                data = os.read(self.ino.fileno(), _READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                raise WatchError(f"reading inotify events failed: {exc.strerror}") from exc
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    async def _handle(self, data: bytes, pending: Changed) -> None:
        for wd, mask, cookie, name in _parse(data):
            if mask & IN_Q_OVERFLOW:
                raise _Overflow
            parent = self.wds.get(wd)
            if parent is None:
                continue  # a watch already forgotten
            if wd == self.root_wd and mask & (
                IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED
            ):
                what = "unmounted" if mask & IN_UNMOUNT else "deleted or moved"
                raise WatchError(f"the root was {what}")
            if mask & IN_IGNORED:
                self._forget(wd)
                continue
            if not name:
                continue  # about a watched directory itself: its parent reports it
            rel = parent + b"/" + name if parent else name
            if self._excluded(name, rel):
                continue
            if cookie and mask & IN_MOVED_FROM:
                if len(self._moved_from) >= _COOKIES:
                    self._moved_from.pop(next(iter(self._moved_from)))
                self._moved_from[cookie] = rel
            elif cookie and mask & IN_MOVED_TO and cookie in self._moved_from:
                pending.moved.add(self._moved_from.pop(cookie))  # renamed within the root
            if mask & IN_ISDIR:
                if mask & (IN_MOVED_FROM | IN_MOVED_TO):
                    self._forget_tree(rel)
                if mask & (IN_CREATE | IN_MOVED_TO):
                    await self._add(rel)  # files made before the watch: the check walks it
                pending.add(rel)
            elif media_kind(name) is not None:
                pending.add(rel)

    async def pump(
        self, stop: asyncio.Event, deliver: Callable[[set[bytes]], Awaitable[None]], debounce: float
    ) -> None:
        """Read notifications until ``stop``; hand them over grouped. Raises WatchError."""
        assert self._loop is not None
        clock = self._loop.time
        pending = Changed()
        first = last = 0.0
        while not stop.is_set():
            if pending:
                now = clock()
                if now - first >= debounce or now - last >= _STEP:
                    rels, pending = pending, Changed()
                    await deliver(rels)
                    continue
                timeout = min(first + debounce, last + _STEP) - now
            else:
                timeout = _IDLE
            if not await self._readable(timeout):
                continue
            data = self._read()
            had = bool(pending)
            await self._handle(data, pending)
            if pending:
                last = clock()
                if not had:
                    first = last

    # ------------------------------------------------------------ closing

    def _close_fd(self) -> None:
        if self.ino is not None:
            with contextlib.suppress(OSError):
                self.ino.close()
            self.ino = None

    def close(self) -> None:
        """Close the descriptor now, or (if a thread is adding watches) when it finishes."""
        self._closing = True
        if self.ino is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.ino.fileno())
        if self._lock.acquire(timeout=1.0):
            try:
                self._close_fd()
            finally:
                self._lock.release()
        # else: the thread holding the lock sees _closing and closes it on its way out
        self.wds.clear()
        self.dirs.clear()


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
        self.watches: dict[str, _LibraryWatch] = {}
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
            watch = _LibraryWatch(lib, self.excludes[lib.id])
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
            except _Overflow:
                log.warning("inotify queue of %s overflowed: watching again and rescanning", lib.id)
                delay = self.retry
                continue
            except WatchError as exc:
                reason = str(exc)
                if isinstance(exc, _LimitReached):
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
