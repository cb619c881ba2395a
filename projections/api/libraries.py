"""GET /libraries: each library's state (online, stale, disabled, pending) and counts,
with the scanner's last report; the writes (issue 16) are in :mod:`library_writes`."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from typing import Any

import msgspec
from litestar import get

from eventsvc.core.library_config import check_root
from eventsvc.core.log import EventLog
from projections.api import db
from projections.api.context import Ctx
from projections.api.errors import error_responses
from projections.api.library_writes import LibraryWritesController
from projections.api.nats_status import TIMEOUT, last_scan
from projections.api.redact import redactor_for
from projections.api.schemas import LibraryPage, LibraryStatus, WatchState

__all__ = ["LibrariesController", "watch_state"]

log = logging.getLogger(__name__)

_SQL = """
WITH ids AS (
    SELECT library_id FROM libraries
    WHERE library_id NOT IN (SELECT library_id FROM library_config WHERE removed = 1)
    UNION
    SELECT library_id FROM library_config WHERE removed = 0
)
SELECT i.library_id, coalesce(c.name, l.name) AS name, coalesce(c.root, l.root) AS root,
       coalesce(l.state, 'unknown') AS health, l.reason,
       coalesce(l.state_since, c.config_since) AS state_since, c.config_since,
       coalesce(c.enabled, 1) AS enabled, coalesce(c.excludes, '[]') AS excludes,
       c.library_id IS NOT NULL AS configured,
       coalesce(s.files, 0) AS files, coalesce(s.images, 0) AS images,
       coalesce(s.videos, 0) AS videos, coalesce(s.hashed, 0) AS hashed,
       coalesce(s.bytes, 0) AS bytes
FROM ids AS i
LEFT JOIN library_config AS c ON c.library_id = i.library_id AND c.removed = 0
LEFT JOIN libraries AS l ON l.library_id = i.library_id
LEFT JOIN (
    SELECT library_id, count(*) AS files,
           sum(media_kind = 'image') AS images, sum(media_kind = 'video') AS videos,
           count(content_hash) AS hashed, sum(size) AS bytes
    FROM files GROUP BY library_id
) AS s ON s.library_id = i.library_id
ORDER BY i.library_id
"""


def _shape(r: dict[str, Any]) -> dict[str, Any]:
    """A row as the Library fields: 'disabled' wins over the probe's verdict."""
    enabled = bool(r.pop("enabled"))
    since = r.pop("config_since")
    r["enabled"], r["configured"] = enabled, bool(r["configured"])
    r["excludes"] = json.loads(r["excludes"])
    if not enabled:
        r["state"], r["reason"], r["state_since"] = "disabled", None, since or r["state_since"]
    elif r["health"] == "unknown":
        r["state"] = "pending"
    else:
        r["state"] = r["health"]
    return r


def _rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [_shape(dict(r)) for r in conn.execute(_SQL)]


async def watch_state(event_log: EventLog | None, library_id: str) -> WatchState | None:
    """Key ``watch.<library_id>`` of the status bucket; None without NATS, bucket or key."""
    if event_log is None:
        return None
    try:
        value = await asyncio.wait_for(event_log.get_status(f"watch.{library_id}"), TIMEOUT)
    except Exception as exc:  # NATS trouble is "unknown", never a 500
        log.debug("no watch status for %s: %r", library_id, exc)
        return None
    try:
        return msgspec.convert(value, WatchState, strict=False) if value else None
    except msgspec.ValidationError as exc:
        log.warning("watch status for %s does not parse: %s", library_id, exc)
        return None


class LibrariesController(LibraryWritesController):
    """GET here; POST, PATCH and DELETE from :mod:`projections.api.library_writes`."""

    path = "/libraries"
    tags = ("libraries",)

    @get(
        "/",
        summary="Libraries",
        description="Every library with its state, file counts and last scan report.",
        responses=error_responses(),
    )
    async def list_libraries(self, ctx: Ctx) -> LibraryPage:
        rows = await db.read(ctx.settings.readmodel_dir, _rows, [])
        # a configured root the projector could not refuse (it knows no data dir) is
        # ignored by every component here: not listed either
        data_dir = ctx.settings.data_dir
        rows = [
            r for r in rows
            if not r["configured"] or check_root(r["root"], r["library_id"], [], data_dir) is None
        ]  # fmt: skip
        ids = [r["library_id"] for r in rows]
        scans = await asyncio.gather(*(last_scan(ctx.event_log, i) for i in ids))
        watches = await asyncio.gather(*(watch_state(ctx.event_log, i) for i in ids))
        redact = redactor_for(ctx.settings, roots=[(r["library_id"], r["root"]) for r in rows])
        for r, s in zip(rows, scans, strict=True):
            r["reason"] = redact(r["reason"])
            if s is not None:
                s.error, s.issues = redact(s.error), redact.tree(s.issues)
        return LibraryPage(
            items=[
                LibraryStatus(**r, last_scan=s, watch=w)
                for r, s, w in zip(rows, scans, watches, strict=True)
            ]
        )
