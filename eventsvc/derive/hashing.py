"""The hasher: FileSeen -> HashComputed (blake3, size, mtime of the bytes it read)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import blake3

from eventsvc.errors import PermanentError, TransientError
from eventsvc.events import Event, FileSeen, HashComputed

__all__ = ["HashResult", "Hasher", "hash_file"]

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


Digest = Callable[[bytes, int], str]


def hash_file(path: bytes | str, digest_fn: Digest = _digest) -> HashResult:
    """blake3 of a file with bounded memory; re-read if it changes while being hashed.

    The file is "the same" before and after when its inode, size and mtime agree.
    """
    for _ in range(RETRIES):
        try:
            st0 = os.stat(path)
            if not stat.S_ISREG(st0.st_mode):
                raise PermanentError(f"not a regular file: {os.fsdecode(path)}")
            digest = digest_fn(os.fsencode(path), st0.st_size)
            st1 = os.stat(path)
        except FileNotFoundError as exc:
            raise PermanentError(f"file vanished before hashing: {os.fsdecode(path)}") from exc
        except IsADirectoryError as exc:
            raise PermanentError(f"not a regular file: {os.fsdecode(path)}") from exc
        except PermissionError as exc:
            raise PermanentError(f"permission denied: {os.fsdecode(path)}") from exc
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN):
                raise TransientError(f"I/O error reading {os.fsdecode(path)}: {exc}") from exc
            raise PermanentError(f"cannot read {os.fsdecode(path)}: {exc}") from exc
        if (st0.st_ino, st0.st_size, st0.st_mtime_ns) == (st1.st_ino, st1.st_size, st1.st_mtime_ns):
            return HashResult(digest, st1.st_size, st1.st_mtime_ns)
    raise TransientError(f"file kept changing while being hashed: {os.fsdecode(path)}")


RootResolver = Callable[[str], Path | None]


class Hasher:
    """The handler for the hasher worker."""

    def __init__(self, roots: RootResolver) -> None:
        self.roots = roots

    async def __call__(self, event: Event, seq: int) -> list[Event]:
        if not isinstance(event, FileSeen):
            return []
        root = self.roots(event.library_id)
        if root is None:
            raise TransientError(f"unknown library {event.library_id}")
        path = os.path.join(os.fsencode(root), event.path_bytes())
        return [await asyncio.to_thread(self.derive, event, path, seq)]

    @staticmethod
    def derive(event: FileSeen, path: bytes, seq: int) -> HashComputed:
        """Content identity only: decoding (perceptual hashes, thumbnails, EXIF) is the
        media deriver's, once per content, from one decode."""
        res = hash_file(path)
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
