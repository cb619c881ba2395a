"""Per-request, read-only access to whatever generation ``CURRENT`` names right now.

Opening per request (not per process) is what makes a rebuild's atomic swap visible
without a restart. Queries run in a worker thread inside one read transaction, so a
request sees one snapshot.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from eventsvc.core.errors import ReadModelError
from projections import readmodel

__all__ = ["read"]

T = TypeVar("T")
Query = Callable[[sqlite3.Connection], T]


def _once(path: Path, fn: Query[T]) -> T:
    conn = readmodel.open_reader(path)
    try:
        conn.execute("BEGIN")  # one snapshot for all the statements of the request
        try:
            return fn(conn)
        finally:
            conn.rollback()
    except sqlite3.Error as exc:
        raise ReadModelError(f"cannot read {path.name}: {exc}") from exc
    finally:
        conn.close()


def _run(directory: Path, fn: Query[T], default: T) -> T:
    for attempt in (1, 2):
        path = readmodel.current_path(directory)
        if path is None or not path.exists():
            return default
        try:
            return _once(path, fn)
        except ReadModelError:
            # A rebuild may have swapped and pruned between reading CURRENT and opening.
            if attempt == 2 or readmodel.current_path(directory) == path:
                raise
    raise AssertionError("unreachable")


async def read(directory: Path, fn: Query[T], default: T) -> T:
    """``fn(conn)`` on the current generation, or ``default`` when there is none yet."""
    return await asyncio.to_thread(_run, directory, fn, default)
