"""The projector's library configuration (issue 16): the ``library_config`` table.

``LibraryAdded`` upserts a library (ignored, as by every folder, when its root fails the
checks of :func:`eventsvc.core.library_config.check_root` against the libraries
configured now); ``LibraryUpdated`` changes name, excludes or enabled flag;
``LibraryRemoved`` marks it removed and deletes its locations from ``files`` (its photos
leave every listing; content rows, and what was derived from them, stay: another
location may hold the same content, and the derived facts are in the log).
"""

from __future__ import annotations

import json
import logging
import sqlite3

from eventsvc.core.events import LibraryAdded, LibraryRemoved, LibraryUpdated
from eventsvc.core.library_config import check_root

__all__ = ["APPLIERS"]

log = logging.getLogger(__name__)


def _added(conn: sqlite3.Connection, seq: int, e: LibraryAdded) -> None:
    others = conn.execute(
        "SELECT library_id, root FROM library_config WHERE removed = 0"
    ).fetchall()
    why = check_root(e.root, e.library_id, [(r[0], r[1]) for r in others], None)
    if why is not None:
        log.warning("LibraryAdded %s at seq %d ignored: %s", e.library_id, seq, why)
        return
    conn.execute(
        """INSERT INTO library_config
               (library_id, name, root, excludes, enabled, removed, config_seq, config_since)
           VALUES (?, ?, ?, ?, ?, 0, ?, ?)
           ON CONFLICT (library_id) DO UPDATE SET name = excluded.name, root = excluded.root,
              excludes = excluded.excludes, enabled = excluded.enabled, removed = 0,
              config_seq = excluded.config_seq, config_since = excluded.config_since""",
        (
            e.library_id, e.name, e.root, json.dumps(list(e.excludes)), int(e.enabled), seq,
            e.occurred_at.isoformat(),
        ),
    )  # fmt: skip


def _updated(conn: sqlite3.Connection, seq: int, e: LibraryUpdated) -> None:
    conn.execute(
        """UPDATE library_config SET name = coalesce(?, name),
              excludes = coalesce(?, excludes), enabled = coalesce(?, enabled),
              config_seq = ?, config_since = ?
           WHERE library_id = ? AND removed = 0""",
        (
            e.name, None if e.excludes is None else json.dumps(list(e.excludes)),
            None if e.enabled is None else int(e.enabled), seq, e.occurred_at.isoformat(),
            e.library_id,
        ),
    )  # fmt: skip


def _removed(conn: sqlite3.Connection, seq: int, e: LibraryRemoved) -> None:
    cur = conn.execute(
        """UPDATE library_config SET removed = 1, config_seq = ?, config_since = ?
           WHERE library_id = ? AND removed = 0""",
        (seq, e.occurred_at.isoformat(), e.library_id),
    )
    if cur.rowcount:
        conn.execute("DELETE FROM files WHERE library_id = ?", (e.library_id,))


APPLIERS = {
    LibraryAdded: _added,
    LibraryUpdated: _updated,
    LibraryRemoved: _removed,
}
