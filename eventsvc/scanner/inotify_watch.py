"""One library's inotify watch (split out of :mod:`eventsvc.scanner.watch`): an inotify
instance with a watch on each directory under the root, read and grouped into changed paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator

from eventsvc.core.errors import EventsvcError
from eventsvc.core.ids import media_kind
from eventsvc.core.settings import Library
from eventsvc.scanner.walk import Excludes

__all__ = [
    "WHOLE_LIBRARY",
    "Changed",
    "LibraryWatch",
    "LimitReached",
    "Overflow",
    "WatchError",
    "available",
]


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


def available() -> bool:
    """Whether inotify can be used here (Linux with inotify_simple installed)."""
    return INotify is not None


class WatchError(EventsvcError):
    """Watching a library failed (the reason is shown in /libraries); ticks still scan it."""


class LimitReached(WatchError):
    """A kernel limit (watches, instances): retried only after a long wait."""


class Overflow(Exception):
    """The kernel's event queue overflowed: notifications were lost."""


class Changed(set[bytes]):
    """Relative paths that changed; :attr:`moved` names those of them (files or folders)
    that were renamed to another place under the same root: gone from here, not deleted."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.moved: set[bytes] = set()


_COOKIES = 4096
"""Renames out of a directory remembered for pairing with their arrival (IN_MOVED_TO)."""


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


class LibraryWatch:
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
                raise LimitReached(
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
                            raise LimitReached(
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
                raise Overflow
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
