"""Where decoders read from: a path, an open file descriptor or a binary file object."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

__all__ = ["FdReader", "Source", "open_source", "source_name"]

Source = str | os.PathLike[str] | int | BinaryIO
"""A path, an open file descriptor (the caller's: read with ``pread``, never moved or
closed), or a binary file object."""


class FdReader(io.RawIOBase):
    """A read-only, seekable view of a file descriptor through ``os.pread``: the caller's
    file offset is never moved. ``limit``: only the first ``limit`` bytes are visible (a
    read budget). ``owner``: closed with this reader (else the descriptor stays open)."""

    def __init__(self, fd: int, limit: int | None = None, owner: io.IOBase | None = None) -> None:
        super().__init__()
        self._fd = fd
        self._limit = limit
        self._owner = owner
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = len(view) if self._limit is None else min(len(view), self._limit - self._pos)
        if n <= 0:
            return 0
        data = os.pread(self._fd, n, self._pos)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            size = os.fstat(self._fd).st_size
            pos = (size if self._limit is None else min(size, self._limit)) + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise OSError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        try:
            if self._owner is not None:
                self._owner.close()
        finally:
            super().close()


@contextlib.contextmanager
def open_source(source: Source) -> Iterator[BinaryIO]:
    """A binary file for ``source``; closes only what it opened itself."""
    if isinstance(source, int):
        with io.BufferedReader(FdReader(source), 1 << 16) as fh:
            yield fh  # type: ignore[misc]
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as fh:
            yield fh
    else:
        source.seek(0)
        yield source


def source_name(source: Source) -> str:
    if isinstance(source, int):
        return "the file"  # the caller names the location (library:path), never an fd
    if isinstance(source, str | os.PathLike):
        return str(os.fspath(source))
    return str(getattr(source, "name", "image"))
