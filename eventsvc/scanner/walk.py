"""Walking a library root: bytes paths, excludes, symlink loops, vanishing files."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable, Iterator
from typing import NamedTuple

from eventsvc.ids import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = ["Excludes", "WalkEntry", "walk"]


class Excludes:
    """Glob excludes. A pattern without '/' matches any path component's name;
    one with '/' matches the whole relative path ('**' crosses directories)."""

    def __init__(self, patterns: list[str] | tuple[str, ...]) -> None:
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


Report = Callable[[str], None]


def walk(
    root: bytes, excludes: Excludes, report: Report, start: bytes = b""
) -> Iterator[WalkEntry]:
    """Yield media files under ``root`` (or under ``root/start``) with their stat.

    Follows symlinked directories once (loops reported and cut), reports unreadable
    directories and files that vanish mid-scan, never raises for them.
    """
    use_path_rules = excludes._path is not None
    excludes_name = excludes.name_bytes
    kinds = _KINDS
    S_ISREG = stat.S_ISREG
    top = os.path.join(root, start) if start else root
    try:
        st = os.stat(top)
    except OSError as exc:
        report(f"cannot stat {os.fsdecode(top)}: {exc.strerror}")
        return
    visited = {(st.st_dev, st.st_ino)}
    stack: list[bytes] = [start]
    prefix_len = len(root) + 1
    while stack:
        rel_dir = stack.pop()
        abs_dir = os.path.join(root, rel_dir) if rel_dir else root
        try:
            it = os.scandir(abs_dir)
        except OSError as exc:
            report(f"cannot list {os.fsdecode(abs_dir)}: {exc.strerror}")
            continue
        with it:
            for entry in it:
                name = entry.name
                if excludes_name(name):
                    continue
                path = entry.path
                if use_path_rules and excludes.path(
                    path[prefix_len:].decode("utf-8", "surrogateescape")
                ):
                    continue
                try:
                    if entry.is_dir():
                        if entry.is_symlink():
                            dst = os.stat(path)
                            key = (dst.st_dev, dst.st_ino)
                            if key in visited:
                                report(f"symlink loop cut at {os.fsdecode(path)}")
                                continue
                            visited.add(key)
                        else:
                            dst = entry.stat(follow_symlinks=False)
                            visited.add((dst.st_dev, dst.st_ino))
                        stack.append(path[prefix_len:])
                        continue
                    dot = name.rfind(b".")
                    kind = kinds.get(name[dot:].lower()) if dot >= 0 else None
                    if kind is None:
                        continue
                    fst = entry.stat()
                except FileNotFoundError:
                    report(f"vanished during scan: {os.fsdecode(path)}")
                    continue
                except OSError as exc:
                    report(f"cannot stat {os.fsdecode(path)}: {exc.strerror}")
                    continue
                if not S_ISREG(fst.st_mode):
                    continue
                yield WalkEntry(path[prefix_len:], fst.st_size, fst.st_mtime_ns, kind)
