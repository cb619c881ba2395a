"""Opening a library's files so that what is opened really lies under its configured root.

Every read of library content (hashing, EXIF, decodes, ffmpeg, the API's originals and
face crops) goes through :func:`open_in_root`. It resolves a library-relative path one
component at a time from a descriptor of the root (``openat`` with ``O_PATH |
O_NOFOLLOW``): ``..`` never climbs above the root, a symlink is followed only while its
target stays inside the root (at most :data:`FOLLOW_LIMIT` of them), or not at all with
``follow_symlinks=False``. Only a regular file is opened for reading, by reopening the
very inode that was resolved (``/proc/self/fd/N``), so a FIFO or a device is never
opened and a link swapped in meanwhile changes nothing. Last, the real path of the opened
descriptor (``/proc/self/fd/N``) must lie under the root's real path: a directory renamed
out of the root mid-walk is caught on the descriptor itself, not on a path checked
earlier.

Refusals raise :class:`~eventsvc.core.errors.UnsafePath` (permanent) naming the library and the
relative path, never a symlink's target. Ordinary failures (missing file, permission,
I/O) raise ``OSError`` with ``library:path`` as its file name, so callers can still tell a
vanished file from a flaky disk by ``errno``.

Linux only (``O_PATH`` and ``/proc``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from eventsvc.core.errors import UnsafePath

__all__ = [
    "FOLLOW_LIMIT",
    "display",
    "fd_path",
    "is_inside",
    "open_dir_in_root",
    "open_in_root",
    "opened_in_root",
    "resolve_in_root",
]

FOLLOW_LIMIT = 40
"""Symlinks followed while resolving one path (the kernel's own limit): more is a loop."""

_O_PATH = getattr(os, "O_PATH", 0)
_PATH_FLAGS = _O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_DIR_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY


def fd_path(fd: int) -> str:
    """A path naming the open file ``fd`` (for libraries that want a path: PyAV, ffmpeg
    with ``pass_fds``). Opening it reopens the same inode, whatever happened to its name."""
    return f"/proc/self/fd/{fd}"


def display(rel: bytes | str) -> str:
    """A library-relative path for messages (undecodable bytes as ``\\xNN``)."""
    if isinstance(rel, str):
        return rel
    return rel.decode("utf-8", "backslashreplace")


def is_inside(path: bytes, root_real: bytes) -> bool:
    """``path`` is ``root_real`` or below it (both real, absolute, bytes)."""
    if root_real == b"/":
        return path.startswith(b"/")
    return path == root_real or path.startswith(root_real + b"/")


def _parts(path: bytes) -> list[bytes]:
    return [p for p in path.split(b"/") if p and p != b"."]


def _strip_root(target: bytes, prefixes: tuple[bytes, ...]) -> bytes | None:
    """The part of an absolute link target below one of the root's spellings, else None."""
    norm = os.path.normpath(target)
    for prefix in prefixes:
        if prefix == b"/":
            return norm[1:]
        if norm == prefix:
            return b""
        if norm.startswith(prefix + b"/"):
            return norm[len(prefix) + 1 :]
    return None


class _Walk:
    """One resolution of ``rel`` under a root (see the module docstring)."""

    def __init__(
        self, root: bytes | str | os.PathLike[str] | os.PathLike[bytes], library_id: str,
        follow_symlinks: bool,
    ) -> None:  # fmt: skip
        raw = os.fsencode(root)
        if not raw.startswith(b"/"):
            raw = os.path.abspath(raw)
        self.library_id = library_id
        self.follow = follow_symlinks
        self.root_real = os.path.realpath(raw)
        self.prefixes = tuple(dict.fromkeys((self.root_real, os.path.normpath(raw))))

    def refuse(self, rel: bytes | str, why: str, kind: str) -> UnsafePath:
        return UnsafePath(self.library_id, display(rel), why, kind)

    def resolve(self, rel: bytes) -> tuple[int, os.stat_result]:
        """An ``O_PATH`` descriptor of what ``rel`` names (any type) and its stat."""
        if rel.startswith(b"/"):
            raise self.refuse(rel, "an absolute path; refused", "absolute")
        root_fd = os.open(self.root_real, _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        dirs = [root_fd]
        todo = list(reversed(_parts(rel)))
        hops = 0
        found: tuple[int, os.stat_result] | None = None
        try:
            while todo:
                name = todo.pop()
                if name == b"..":
                    if len(dirs) == 1:
                        raise self.refuse(
                            rel, "it leads outside its library root; refused", "escape"
                        )
                    os.close(dirs.pop())
                    continue
                fd = os.open(name, _PATH_FLAGS, dir_fd=dirs[-1])
                try:
                    st = os.fstat(fd)
                except BaseException:
                    os.close(fd)
                    raise
                if stat.S_ISLNK(st.st_mode):
                    try:  # the link that was stat'ed, whatever the name holds now
                        target = os.readlink(b"", dir_fd=fd)
                    finally:
                        os.close(fd)
                    if not self.follow:
                        raise self.refuse(
                            rel, "it goes through a symlink and following symlinks is "
                            "disabled; refused", "symlink",
                        )  # fmt: skip
                    hops += 1
                    if hops > FOLLOW_LIMIT:
                        raise self.refuse(rel, "too many symlinks (a loop); refused", "loop")
                    if target.startswith(b"/"):
                        rest = _strip_root(target, self.prefixes)
                        if rest is None:
                            raise self.refuse(
                                rel, "a symlink leads outside its library root; refused", "escape"
                            )
                        while len(dirs) > 1:
                            os.close(dirs.pop())
                        target = rest
                    todo.extend(reversed(_parts(target)))
                    continue
                if todo:
                    if not stat.S_ISDIR(st.st_mode):
                        os.close(fd)
                        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                    dirs.append(fd)
                else:
                    found = (fd, st)
            if found is None:  # the path ends at a directory reached by '..' or a link
                fd = dirs.pop() if len(dirs) > 1 else os.dup(root_fd)
                found = (fd, os.fstat(fd))
            return found
        finally:
            for d in dirs:
                os.close(d)

    def check(self, fd: int, rel: bytes | str) -> None:
        """The opened file's real path must lie under the root's real path."""
        where = os.readlink(os.fsencode(fd_path(fd)))  # " (deleted)" may follow: fine
        if not is_inside(where, self.root_real):
            raise self.refuse(rel, "it lies outside its library root; refused", "escape")


def _relabel(exc: OSError, library_id: str, rel: bytes | str) -> OSError:
    """The same error (same errno, same subclass) naming ``library:rel`` only."""
    return OSError(exc.errno, exc.strerror or str(exc), f"{library_id}:{display(rel)}")


def resolve_in_root(
    root: bytes | str | os.PathLike[str], rel: bytes | str, *, library_id: str = "",
    follow_symlinks: bool = True,
) -> tuple[int, os.stat_result]:  # fmt: skip
    """An ``O_PATH`` descriptor (the caller closes it) of what ``rel`` names under
    ``root``, of any file type, and its stat; see the module docstring for the rules."""
    w = _Walk(root, library_id, follow_symlinks)
    rel_b = os.fsencode(rel)
    try:
        return w.resolve(rel_b)
    except UnsafePath:
        raise
    except OSError as exc:
        raise _relabel(exc, library_id, rel_b) from None


def _reopen(w: _Walk, rel: bytes, flags: int, want: int, what: str) -> int:
    try:
        pfd, st = w.resolve(rel)
    except OSError as exc:
        raise _relabel(exc, w.library_id, rel) from None
    try:
        if stat.S_IFMT(st.st_mode) != want:
            raise w.refuse(rel, f"not {what}; refused", "not_regular")
        try:
            fd = os.open(fd_path(pfd), flags)  # the very inode resolved above
        except OSError as exc:
            raise _relabel(exc, w.library_id, rel) from None
    finally:
        os.close(pfd)
    try:
        st2 = os.fstat(fd)
        if stat.S_IFMT(st2.st_mode) != want or (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
            raise w.refuse(rel, f"not {what} (it changed while opened); refused", "not_regular")
        w.check(fd, rel)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_in_root(
    root: bytes | str | os.PathLike[str], rel: bytes | str, *, library_id: str = "",
    follow_symlinks: bool = True,
) -> int:  # fmt: skip
    """A read-only, blocking descriptor of the regular file ``rel`` under ``root``
    (the caller closes it). Raises UnsafePath or OSError (see the module docstring)."""
    w = _Walk(root, library_id, follow_symlinks)
    fd = _reopen(w, os.fsencode(rel), _READ_FLAGS, stat.S_IFREG, "a regular file")
    os.set_blocking(fd, True)
    return fd


def open_dir_in_root(
    root: bytes | str | os.PathLike[str], rel: bytes | str, *, library_id: str = "",
    follow_symlinks: bool = True,
) -> int:  # fmt: skip
    """A read-only descriptor of the directory ``rel`` under ``root`` (for ``scandir``)."""
    w = _Walk(root, library_id, follow_symlinks)
    return _reopen(w, os.fsencode(rel), _DIR_FLAGS, stat.S_IFDIR, "a directory")


@contextlib.contextmanager
def opened_in_root(
    root: bytes | str | os.PathLike[str], rel: bytes | str, *, library_id: str = "",
    follow_symlinks: bool = True,
) -> Iterator[int]:  # fmt: skip
    """:func:`open_in_root` as a context manager that closes the descriptor."""
    fd = open_in_root(root, rel, library_id=library_id, follow_symlinks=follow_symlinks)
    try:
        yield fd
    finally:
        os.close(fd)
