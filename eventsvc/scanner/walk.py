"""Walking a library root: bytes paths, excludes, symlinks kept inside the root, loops,
vanishing files."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from typing import NamedTuple

from eventsvc.core.errors import UnsafePath
from eventsvc.core.ids import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from eventsvc.core.safe_open import display, open_dir_in_root, resolve_in_root

__all__ = ["Excludes", "WalkEntry", "excluded", "stat_one", "walk"]


class Excludes:
    """Glob excludes. A pattern without '/' matches any path component's name;
    one with '/' matches the whole relative path ('**' crosses directories)."""

    def __init__(
        self, patterns: list[str] | tuple[str, ...], *, follow_symlinks: bool = True
    ) -> None:
        self.follow_symlinks = follow_symlinks
        """Symlinks are followed while they stay inside the root; False: never."""
        names = [p for p in patterns if "/" not in p]
        paths = [p.strip("/") for p in patterns if "/" in p]
        self._name = re.compile("|".join(fnmatch.translate(p) for p in names)) if names else None
        self._path = re.compile("|".join(_path_glob(p) for p in paths)) if paths else None
        self.patterns = tuple(patterns)
        self._name_bytes: re.Pattern[bytes] | None = None
        if self._name is not None and all(p.isascii() for p in names):
            # ASCII patterns match raw names directly: no decode per directory entry
            self._name_bytes = re.compile(self._name.pattern.encode("ascii"))

    def name(self, name: str) -> bool:
        return bool(self._name and self._name.match(name))

    def name_bytes(self, name: bytes) -> bool:
        if self._name_bytes is not None:
            return self._name_bytes.match(name) is not None
        return self.name(name.decode("utf-8", "surrogateescape"))

    def path(self, rel: str) -> bool:
        return bool(self._path and self._path.match(rel))


def excluded(excludes: Excludes | None, rel: bytes) -> bool:
    """Whether a walk with ``excludes`` leaves ``rel`` out: a component's name, or the
    path of it or of a directory above it, matches (a library's excludes changed)."""
    if excludes is None:
        return False
    parts = rel.split(b"/")
    for i, part in enumerate(parts):
        if excludes.name_bytes(part):
            return True
        if excludes.path(b"/".join(parts[: i + 1]).decode("utf-8", "surrogateescape")):
            return True
    return False


def _path_glob(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "(?s:" + "".join(out) + r")(?:/.*)?\Z"


class WalkEntry(NamedTuple):
    rel: bytes
    size: int
    mtime_ns: int
    kind: str


_KINDS: dict[bytes, str] = {
    **{e.encode(): "image" for e in IMAGE_EXTENSIONS},
    **{e.encode(): "video" for e in VIDEO_EXTENSIONS},
}


_KINDS_STR: dict[str, str] = {k.decode(): v for k, v in _KINDS.items()}

Report = Callable[[str], None]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _refusal(exc: UnsafePath, rel: bytes) -> str:
    """A scan issue for a refused symlink, library-relative, never naming its target."""
    where = display(rel) or "."
    if exc.kind == "escape":
        return f"symlink leads outside the library, not followed: {where}"
    if exc.kind == "loop":
        return f"symlink loop, not followed: {where}"
    if exc.kind == "symlink":
        return f"symlink not followed (following symlinks is disabled): {where}"
    return f"{exc.why}: {where}"


def _join(rel_dir: bytes, name: bytes) -> bytes:
    return rel_dir + b"/" + name if rel_dir else name


def walk(
    root: bytes, excludes: Excludes, report: Report, start: bytes = b""
) -> Iterator[WalkEntry]:
    """Yield media files under ``root`` (or under ``root/start``) with their stat.

    The walk never leaves the root: directories are read through descriptors (each opened
    relative to its parent's, never following a link), and a symlink, to a directory or
    to a file, is followed only when it resolves inside the root (the rules of
    :mod:`eventsvc.core.safe_open`), or not at all when ``excludes.follow_symlinks`` is off. A
    directory is never entered below itself (a loop, cut), and through links at most once
    (a link inside the root to a directory also walked directly is followed: its files
    are indexed under the link's path too). Escapes,
    loops, refused links, unreadable directories and files that vanish mid-scan are
    reported with library-relative paths; the walk never raises for them.
    """
    follow = excludes.follow_symlinks
    use_path_rules = excludes._path is not None
    name_match = excludes._name.match if excludes._name is not None else None
    kinds = _KINDS_STR
    enc, errs = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    S_ISREG, S_ISDIR, S_ISLNK = stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK
    try:
        top = open_dir_in_root(root, start, follow_symlinks=follow)
    except UnsafePath as exc:
        report(_refusal(exc, start))
        return
    except OSError as exc:
        report(f"cannot open {display(start) or 'the library root'}: {exc.strerror}")
        return
    st = os.fstat(top)
    key = (st.st_dev, st.st_ino)
    ancestors: list[tuple[int, int]] = []  # of the directory being entered
    linked: set[tuple[int, int]] = set()  # directories already entered through a link
    # Depth-first, holding one descriptor per level: (dir fd, its rel path, subdirs left).
    frames: list[tuple[int, bytes, Iterator[tuple[bytes, bool]]]] = []
    subdirs: list[tuple[bytes, bool]] = []
    fd, rel_dir = top, start.strip(b"/")
    try:
        while True:
            if fd >= 0:
                subdirs = []
                prefix = rel_dir + b"/" if rel_dir else b""
                try:
                    it = os.scandir(fd)
                except OSError as exc:
                    report(f"cannot list {display(rel_dir) or 'the library root'}: {exc.strerror}")
                else:
                    with it:
                        for entry in it:
                            sname = entry.name  # str: scandir of a descriptor
                            if name_match is not None and name_match(sname):
                                continue
                            name = sname.encode(enc, errs)
                            rel = prefix + name
                            if use_path_rules and excludes.path(
                                rel.decode("utf-8", "surrogateescape")
                            ):
                                continue
                            dot = sname.rfind(".")
                            kind = kinds.get(sname[dot:].lower()) if dot >= 0 else None
                            try:
                                if kind is None:  # no media name: only directories matter
                                    if entry.is_dir(follow_symlinks=False):
                                        subdirs.append((name, False))
                                    elif entry.is_symlink():
                                        if _link(root, rel, None, follow, report):
                                            subdirs.append((name, True))
                                    continue
                                fst = entry.stat(follow_symlinks=False)
                                mode = fst.st_mode
                                if not S_ISREG(mode):
                                    if S_ISDIR(mode):
                                        subdirs.append((name, False))
                                        continue
                                    if not S_ISLNK(mode):
                                        continue
                                    found = _link(root, rel, kind, follow, report)
                                    if isinstance(found, WalkEntry):
                                        yield found
                                    elif found:
                                        subdirs.append((name, True))
                                    continue
                            except FileNotFoundError:
                                report(f"vanished during scan: {display(rel)}")
                                continue
                            except OSError as exc:
                                report(f"cannot stat {display(rel)}: {exc.strerror}")
                                continue
                            yield WalkEntry(rel, fst.st_size, fst.st_mtime_ns, kind)
                frames.append((fd, rel_dir, iter(subdirs)))
                ancestors.append(key)
                fd = -1
            if not frames:
                return
            parent, parent_rel, pending = frames[-1]
            nxt = next(pending, None)
            if nxt is None:
                os.close(parent)
                frames.pop()
                ancestors.pop()
                continue
            name, via_link = nxt
            rel_dir = _join(parent_rel, name)
            try:
                if via_link:  # resolved from the root again: the link may have changed
                    fd = open_dir_in_root(root, rel_dir, follow_symlinks=follow)
                else:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                dst = os.fstat(fd)
            except UnsafePath as exc:
                report(_refusal(exc, rel_dir))
                fd = -1
                continue
            except FileNotFoundError:
                report(f"vanished during scan: {display(rel_dir)}")
                fd = -1
                continue
            except OSError as exc:  # unreadable, or replaced by a link meanwhile (ELOOP)
                report(f"cannot list {display(rel_dir)}: {exc.strerror}")
                fd = -1
                continue
            key = (dst.st_dev, dst.st_ino)
            why = None
            if key in ancestors:  # a link (or a bind mount) back up the tree
                why = f"loop cut (it leads back to a directory above it): {display(rel_dir)}"
            elif via_link and key in linked:
                why = (
                    "symlink not followed (directory already walked through another "
                    f"link): {display(rel_dir)}"
                )
            if why is not None:
                report(why)
                os.close(fd)
                fd = -1
                continue
            if via_link:
                linked.add(key)
    finally:
        if fd >= 0:
            os.close(fd)
        for f, _, _ in frames:
            os.close(f)


def _link(
    root: bytes, rel: bytes, kind: str | None, follow: bool, report: Report
) -> WalkEntry | bool | None:
    """A symlink met in a listing (``kind``: its name's media kind): a WalkEntry (a media
    file inside the root), True (a directory inside the root, to walk), or None/False
    (skipped; refusals reported)."""
    try:
        pfd, st = resolve_in_root(root, rel, follow_symlinks=follow)
    except UnsafePath as exc:
        report(_refusal(exc, rel))
        return None
    except FileNotFoundError:
        if kind is not None:
            report(f"dangling symlink, skipped: {display(rel)}")
        return None
    except OSError as exc:
        report(f"cannot stat {display(rel)}: {exc.strerror}")
        return None
    os.close(pfd)
    if stat.S_ISDIR(st.st_mode):
        return True
    if kind is None or not stat.S_ISREG(st.st_mode):
        return None
    return WalkEntry(rel, st.st_size, st.st_mtime_ns, kind)


def stat_one(root: bytes, rel: bytes, excludes: Excludes) -> WalkEntry | None:
    """The entry for one path (a notification): a regular media file inside the root,
    through symlinks only as the walk would follow them; else None."""
    name = rel.rsplit(b"/", 1)[-1]
    dot = name.rfind(b".")
    kind = _KINDS.get(name[dot:].lower()) if dot >= 0 else None
    if kind is None:
        return None
    try:
        pfd, st = resolve_in_root(root, rel, follow_symlinks=excludes.follow_symlinks)
    except (UnsafePath, OSError):
        return None
    os.close(pfd)
    if not stat.S_ISREG(st.st_mode):
        return None
    return WalkEntry(rel, st.st_size, st.st_mtime_ns, kind)
