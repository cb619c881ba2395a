"""The hasher: FileSeen -> HashComputed (blake3, size, mtime of the bytes it read)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

import blake3

from eventsvc.core.errors import PermanentError, TransientError
from eventsvc.core.events import Event, FileSeen, HashComputed
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.safe_open import fd_path

__all__ = ["HashResult", "Hasher", "hash_fd", "hash_file"]

log = logging.getLogger(__name__)

MMAP_MIN = 4 << 20
THREADS_MIN = 16 << 20
CHUNK = 4 << 20
RETRIES = 3


@dataclass(frozen=True, slots=True)
class HashResult:
    content_hash: str
    size: int
    mtime_ns: int


def _digest(path: bytes, size: int) -> str:
    if size >= MMAP_MIN:
        threads = blake3.blake3.AUTO if size >= THREADS_MIN else 1
        h = blake3.blake3(max_threads=threads)
        try:
            h.update_mmap(os.fsdecode(path))
            return h.hexdigest()
        except (OSError, ValueError, TypeError, UnicodeError):
            pass  # some file systems (and odd names) refuse mmap: stream instead
    h = blake3.blake3()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(min(CHUNK, max(size, 1)))
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _digest_small(fd: int) -> str:
    """blake3 of a small file read through its descriptor (no reopen, no file object)."""
    h = blake3.blake3()
    off = 0
    while chunk := os.pread(fd, CHUNK, off):
        h.update(chunk)
        off += len(chunk)
    return h.hexdigest()


Digest = Callable[[bytes, int], str]


def hash_fd(fd: int, digest_fn: Digest | None = None, name: str = "") -> HashResult:
    """blake3 of an open file with bounded memory; re-read if it changes while hashed.

    The file is "the same" before and after when its size and mtime agree (fstat of the
    descriptor: the bytes read are always those of the inode that was opened). Files
    under ``MMAP_MIN`` are read through the descriptor itself unless ``digest_fn`` is
    given (per-file overhead bounds small files).
    """
    where = os.fsencode(fd_path(fd))
    label = name or f"fd {fd}"
    for _ in range(RETRIES):
        try:
            st0 = os.fstat(fd)
            if not stat.S_ISREG(st0.st_mode):
                raise PermanentError(f"not a regular file: {label}")
            if digest_fn is None:
                if st0.st_size < MMAP_MIN:
                    digest = _digest_small(fd)
                else:
                    digest = _digest(where, st0.st_size)
            else:
                digest = digest_fn(where, st0.st_size)
            st1 = os.fstat(fd)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN):
                raise TransientError(f"I/O error reading {label}: {exc.strerror}") from exc
            raise PermanentError(f"cannot read {label}: {exc.strerror or exc}") from exc
        if (st0.st_size, st0.st_mtime_ns) == (st1.st_size, st1.st_mtime_ns):
            return HashResult(digest, st1.st_size, st1.st_mtime_ns)
    raise TransientError(f"file kept changing while being hashed: {label}")


def _open_error(exc: OSError, label: str) -> Exception:
    if isinstance(exc, FileNotFoundError):
        return PermanentError(f"file vanished before hashing: {label}")
    if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
        return PermanentError(f"not a regular file: {label}")
    if isinstance(exc, PermissionError):
        return PermanentError(f"permission denied: {label}")
    if exc.errno in (errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN):
        return TransientError(f"I/O error reading {label}: {exc.strerror}")
    return PermanentError(f"cannot read {label}: {exc.strerror or exc}")


def hash_file(path: bytes | str, digest_fn: Digest | None = None) -> HashResult:
    """:func:`hash_fd` of a path (benchmarks, tests; workers open through their roots)."""
    label = os.fsdecode(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise _open_error(exc, label) from exc
    try:
        os.set_blocking(fd, True)
        return hash_fd(fd, digest_fn, label)
    finally:
        os.close(fd)


GROUP_BYTES = 8 << 20
"""Bytes of small files hashed in one thread hop of a batch (a larger file: its own)."""


class Hasher:
    """The handler for the hasher worker: ``__call__`` for one message, ``many`` for a
    batch (:class:`eventsvc.derive.worker.Worker` batch mode)."""

    def __init__(self, roots: LibraryRoots, threads: int = 2) -> None:
        self.roots = roots
        self.threads = max(1, threads)
        """Thread hops of one batch at once (large files hash in parallel)."""

    async def __call__(self, event: Event, seq: int) -> list[Event]:
        if not isinstance(event, FileSeen):
            return []
        self.roots.root(event.library_id)  # LibraryNotConfigured before any thread hop
        return [await asyncio.to_thread(self.derive, event, seq)]

    async def many(self, items: list[tuple[Event, int]]) -> list[list[Event] | Exception]:
        """``__call__`` of each item, small files grouped into few thread hops (up to
        ``GROUP_BYTES`` each), ``threads`` hops at once; each item's exception is its own."""
        results: list[list[Event] | Exception] = [[] for _ in items]
        groups: list[list[int]] = []
        group: list[int] = []
        size = 0
        for i, (event, _) in enumerate(items):
            if not isinstance(event, FileSeen):
                continue
            try:
                self.roots.root(event.library_id)  # LibraryNotConfigured, as ever
            except Exception as exc:
                results[i] = exc
                continue
            if group and size + event.size > GROUP_BYTES:
                groups.append(group)
                group, size = [], 0
            group.append(i)
            size += event.size
        if group:
            groups.append(group)
        sem = asyncio.Semaphore(self.threads)

        async def hop(group: list[int]) -> None:
            async with sem:
                out = await asyncio.to_thread(self._derive_all, [items[i] for i in group])
            for i, res in zip(group, out, strict=True):
                results[i] = res

        await asyncio.gather(*(hop(g) for g in groups))
        return results

    def _derive_all(self, items: list[tuple[Event, int]]) -> list[list[Event] | Exception]:
        out: list[list[Event] | Exception] = []
        for event, seq in items:
            try:
                out.append([self.derive(event, seq)])  # type: ignore[arg-type]
            except Exception as exc:  # the item's own outcome, read by the worker
                out.append(exc)
        return out

    def derive(self, event: FileSeen, seq: int) -> HashComputed:
        """Content identity only: decoding (perceptual hashes, thumbnails, EXIF) is the
        media deriver's, once per content, from one decode."""
        label = f"{event.library_id}:{event.path}"
        try:
            fd = self.roots.open_fd(event)
        except OSError as exc:
            raise _open_error(exc, label) from exc
        try:
            res = hash_fd(fd, name=label)
        finally:
            os.close(fd)
        return HashComputed(
            content_hash=res.content_hash,
            library_id=event.library_id,
            file_id=event.file_id,
            path=event.path,
            raw_path=event.raw_path,
            size=res.size,
            mtime_ns=res.mtime_ns,
            media_kind=event.media_kind,
            causation=seq,
        )
