"""The SQLite read model on disk: generations, the CURRENT pointer, writer and readers.

A read-model directory holds ``gen-NNNNNN.db`` files and a ``CURRENT`` file naming
the live one. A rebuild writes a new generation and swaps ``CURRENT`` atomically
(write a temp file, rename): readers open whatever ``CURRENT`` names per request, the
projector notices the change and moves over. Each generation keeps its own WAL, so a
swap never pairs a database with another one's WAL file.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import Any

from eventsvc.core.errors import ReadModelError

__all__ = [
    "DEFERRED_INDEXES",
    "SCHEMA_VERSION",
    "BulkConnection",
    "SchemaOutdated",
    "checkpoint",
    "create_indexes",
    "current_path",
    "drop_deferred_indexes",
    "dump",
    "new_generation",
    "open_reader",
    "open_writer",
    "prune_generations",
    "schema_version",
    "swap",
]


class SchemaOutdated(ReadModelError):
    """The generation was written by an older build: rebuild it from the log."""


SCHEMA_VERSION = 5
"""Bump when schema.sql changes: an older generation is rebuilt from the log."""

_GEN_RE = re.compile(r"^gen-([0-9]{6})\.db$")
POINTER = "CURRENT"


def _schema() -> str:
    return resources.files("projections").joinpath("schema.sql").read_text()


def current_path(directory: Path) -> Path | None:
    try:
        name = (directory / POINTER).read_text().strip()
    except FileNotFoundError:
        return None
    if not _GEN_RE.fullmatch(name):
        raise ReadModelError(f"{directory / POINTER} names {name!r}, not a read-model generation")
    return directory / name


def _generations(directory: Path) -> list[tuple[int, Path]]:
    out = []
    for p in directory.iterdir() if directory.exists() else []:
        m = _GEN_RE.fullmatch(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def new_generation(directory: Path) -> Path:
    """A fresh, empty generation file with the schema (not yet current)."""
    directory.mkdir(parents=True, exist_ok=True)
    gens = _generations(directory)
    n = (gens[-1][0] + 1) if gens else 1
    path = directory / f"gen-{n:06d}.db"
    try:
        conn = open_writer(path)
    except BaseException:
        discard_generation(path)
        raise
    conn.close()
    return path


def swap(directory: Path, path: Path) -> None:
    """Make ``path`` the current generation, atomically."""
    tmp = directory / (POINTER + ".tmp")
    with open(tmp, "w") as f:
        f.write(path.name)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / POINTER)
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ensure_current(directory: Path) -> Path:
    path = current_path(directory)
    if path is None or not path.exists():
        path = new_generation(directory)
        swap(directory, path)
    return path


def prune_generations(directory: Path, keep: int = 2) -> list[Path]:
    """Remove all but the newest ``keep`` generations (never the current one)."""
    current = current_path(directory)
    removed = []
    for _, p in _generations(directory)[:-keep] if keep else _generations(directory):
        if current is not None and p.name == current.name:
            continue
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(p) + suffix)
        removed.append(p)
    return removed


class BulkConnection(sqlite3.Connection):
    """The writer of a generation being built by a rebuild (``open_writer(bulk=True)``).

    It is the generation's only writer until the swap, so it may keep what it wrote in
    memory and leave work that depends only on the final rows to the end:

    - ``fact_versions``: the ``fact_versions`` table, (fact, key) -> version, loaded when
      opened and kept in step by the projector's version gate (no SELECT per fact);
    - ``deferred_dates`` (False until its user sets it, promising to finish): the
      appliers skip the date-taken waterfall per event and
      :func:`projections.files.resolve_all_dates` must run it once over the table at the
      end (the waterfall is a function of the final rows, so the rows come out the same);
      a rebuild's appliers (:mod:`projections.applier`) set it when given a ``finish``.
    """

    fact_versions: dict[tuple[str, str], int]
    deferred_dates: bool


BULK_CACHE_KIB = 262_144
"""A rebuild writer's page cache (256 MiB; the live writer's is 64 MiB): a 1M-event
generation's tables and their primary keys stay in it while rows land at random keys."""


def open_writer(path: Path, *, bulk: bool = False) -> sqlite3.Connection:
    """The one writer connection. ``bulk`` trades durability for speed (rebuilds) and
    gives a :class:`BulkConnection`."""
    try:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            factory=BulkConnection if bulk else sqlite3.Connection,
        )
        if bulk:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
        else:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        fresh = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if not fresh and schema_version(conn) != SCHEMA_VERSION:
            found = schema_version(conn)
            conn.close()
            raise SchemaOutdated(f"{path} has schema {found}, this build writes {SCHEMA_VERSION}")
        conn.executescript(_schema())
        if fresh:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if isinstance(conn, BulkConnection):
            conn.fact_versions = {
                (str(f), str(k)): int(v)
                for f, k, v in conn.execute("SELECT fact, key, version FROM fact_versions")
            }
            conn.deferred_dates = False
    except sqlite3.Error as exc:
        raise ReadModelError(
            f"cannot open read model {path} for writing: {exc}{_why_not_writable(path.parent)}"
        ) from exc
    return conn


def _why_not_writable(directory: Path) -> str:
    """What the directory says about writing in it (read-only file system, no
    permission, full), or nothing."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f" ({directory} is on a read-only file system)"
        if not os.access(directory, os.W_OK):
            return f" ({directory} is not writable: read-only for this user)"
    except OSError as exc:
        return f" ({directory}: {exc.strerror})"
    return ""


def discard_generation(path: Path) -> None:
    """Remove an unfinished generation file and its journals (never the current one)."""
    current = current_path(path.parent)
    if current is not None and current.name == path.name:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError, OSError):
            os.unlink(str(path) + suffix)


DEFERRED_INDEXES = (
    "files_by_taken",
    "files_by_library_path",
    "files_by_path",
    "files_by_mtime",
    "files_by_library_mtime",
    "media_by_camera",
    "media_by_gps",
    "failures_by_stage",
)
"""Indexes that only serve the API's queries, never an applier's lookups: a rebuild
drops them, replays, and builds them once at the end (much cheaper than maintaining
them row by row)."""


def drop_deferred_indexes(conn: sqlite3.Connection) -> None:
    for name in DEFERRED_INDEXES:
        conn.execute(f'DROP INDEX IF EXISTS "{name}"')


def create_indexes(conn: sqlite3.Connection) -> None:
    """(Re)create every index of the schema that is missing."""
    try:
        conn.executescript(_schema())
    except sqlite3.Error as exc:
        raise ReadModelError(f"cannot create the read model's indexes: {exc}") from exc


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def open_reader(path: Path) -> sqlite3.Connection:
    try:
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise ReadModelError(f"cannot open read model {path}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    return conn


def checkpoint(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT last_seq FROM checkpoint WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted: two read models are equal iff their dumps are."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    return {
        t: sorted((tuple(r) for r in conn.execute(f'SELECT * FROM "{t}"')), key=repr)
        for t in tables
    }
