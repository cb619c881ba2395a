"""No absolute server path in what the API serves as a reason or an error.

Failure reasons are written by workers (``cannot identify image file '/mnt/photos/x.jpg'``)
and end up in ``/pipeline``, ``/videos/{hash}``, ``/photos/{hash}``, ``/libraries``. Served,
a path under a library root reads ``<library_id>:<relative path>``, one under the data
directory (or the video root) ``<data>/…`` (``<videos>/…``), and any other absolute path
just ``…/<its last name>``.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from eventsvc.core.settings import Settings

__all__ = ["API_SEGMENTS", "Redactor", "redacted", "redactor_for"]

T = TypeVar("T")

# An absolute path not glued to a word, a URL ("nats://h/x") or a marker we wrote.
_BARE = re.compile(r"(?<![\w.:/~<>…\\-])/[^\s'\",;:()\[\]<>]*")
_QUOTED = re.compile(r"""(['"])(/[^'"\n]*)\1""")
_END = r"(?=/|[\s'\":,;)\]]|$)"


API_SEGMENTS = frozenset(
    {"auth", "duplicates", "faces", "healthz", "libraries", "people", "photos", "pipeline",
     "schema", "videos"}
)  # fmt: skip
"""First segments of this API's own URL paths: ``/auth/login`` in a message is a URL."""


def _last_name(path: str) -> str:
    first = path.lstrip("/").split("/", 1)[0]
    if first in API_SEGMENTS and not os.path.isdir(f"/{first}"):
        return path  # a URL of this API (unless this server has such a directory)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return f"…/{name}" if name else path


def _forms(path: Path | str) -> set[str]:
    """The spellings of a directory a message may use: as given, absolute, resolved."""
    out = set()
    for p in (str(path), os.path.abspath(path)):
        out.add(p.rstrip("/"))
    try:
        out.add(os.path.realpath(path).rstrip("/"))
    except (OSError, ValueError):
        pass
    return {p for p in out if p.startswith("/") and p != ""}


class Redactor:
    def __init__(self, prefixes: Iterable[tuple[str, str]]) -> None:
        """``prefixes``: (absolute directory, what it reads as, e.g. ``alpha:``)."""
        pairs = sorted(
            ((d, label) for d, label in prefixes if d and d != "/"),
            key=lambda p: len(p[0]),
            reverse=True,
        )
        self._rules = [
            (re.compile(re.escape(d) + r"(?:/(?=\S)|" + _END + ")"), label) for d, label in pairs
        ]

    def __call__(self, text: str | None) -> str | None:
        if not text or "/" not in text:
            return text
        for pattern, label in self._rules:
            # "<data>" + "/thumbs/…", but "alpha:" + "2023/x.jpg": a library label ends in ':'
            text = pattern.sub(
                lambda m, lb=label: lb + ("/" if m[0][-1] == "/" and lb[-1] != ":" else ""),
                text,
            )
        text = _QUOTED.sub(lambda m: f"{m[1]}{_last_name(m[2])}{m[1]}", text)
        return _BARE.sub(lambda m: _last_name(m[0]) if len(m[0]) > 1 else m[0], text)

    def tree(self, value: Any) -> Any:
        """Every string in a JSON-like value, redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.tree(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.tree(v) for v in value]
        return value


def _settings_prefixes(settings: Settings) -> list[tuple[str, str]]:
    pairs = [(d, "<data>") for d in _forms(settings.data_dir)]
    if settings.video_root is not None:
        pairs += [(d, "<videos>") for d in _forms(settings.video_root)]
    return pairs


def redactor_for(
    settings: Settings,
    conn: sqlite3.Connection | None = None,
    roots: Iterable[tuple[str, str | None]] = (),
) -> Redactor:
    """A redactor knowing the data dir, the video root and the library roots (given as
    (library_id, root) pairs and/or read from the read model's ``libraries`` table)."""
    pairs = list(roots)
    if conn is not None:
        try:
            pairs += [(r[0], r[1]) for r in conn.execute("SELECT library_id, root FROM libraries")]
        except sqlite3.Error:
            pass
    prefixes = _settings_prefixes(settings)
    for lib_id, root in pairs:
        if root:
            prefixes += [(d, f"{lib_id}:") for d in _forms(root)]
    return Redactor(prefixes)


def redacted(settings: Settings, conn: sqlite3.Connection, obj: T, *fields: str) -> T:
    """``obj`` (a struct, or None) with the named string fields redacted in place."""
    if obj is not None and any("/" in str(getattr(obj, f) or "") for f in fields):
        redact = redactor_for(settings, conn)
        for name in fields:
            setattr(obj, name, redact.tree(getattr(obj, name)))
    return obj
