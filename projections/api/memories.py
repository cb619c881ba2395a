"""GET /memories: "on this day" (issue 16).

Photos (and videos) taken on a month and day in earlier years, grouped by year (newest
first), best first within a year, one per burst. The date is the resolved date taken
(``files.date_taken``), compared as wall-clock text: the local time cameras record,
whatever the server's time zone. A location whose date is only the file system's mtime
(``date_source`` 'filesystem') is left out: that date says when a file was copied, not
when it was shot.

A *burst*: photos of one day taken at most ``memories_burst_seconds`` apart (chained:
each within that of the one before), or whose pHashes are within
``memories_near_distance`` bits (near-duplicates), linked pair by pair. Each burst shows
its best photo: a favourite first, then the most faces (not rejected), then the most
pixels, then the earliest. Within a year the chosen photos are in that order too.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from dataclasses import dataclass
from datetime import date as Day
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import Parameter
from msgspec import Meta

from projections.api import db, rows
from projections.api.context import Ctx
from projections.api.errors import bad_parameter, error_responses
from projections.near import hamming

__all__ = ["MemoriesController", "Memory", "MemoryYear", "Shot", "bursts", "memories"]

_MMDD = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


class Memory(msgspec.Struct):
    content_hash: Annotated[str, Meta(description="The content (BLAKE3 hex).")]
    file_id: Annotated[str, Meta(description="Its earliest location with a usable date.")]
    library: Annotated[str, Meta(description="Library id of that location.")]
    path: Annotated[str, Meta(description="Path of that location in its library.")]
    media_kind: Annotated[str, Meta(description="'image' or 'video'.")]
    date_taken: Annotated[str, Meta(description="The resolved date taken (wall time).")]
    date_source: Annotated[str, Meta(description="Where it came from (never 'filesystem').")]
    favorite: Annotated[bool, Meta(description="A favourite of the user.")]
    faces: Annotated[int, Meta(description="Faces (not rejected) in the content.")]
    burst: Annotated[int, Meta(description="Photos in its burst (1: none other).")]
    width: Annotated[int | None, Meta(description="Upright width in pixels, if known.")]
    height: Annotated[int | None, Meta(description="Upright height in pixels, if known.")]
    thumbnail: Annotated[str | None, Meta(description="URL of the small thumbnail, if any.")]
    tags: Annotated[list[str], Meta(description="Its tags (people's names and the user's).")]


class MemoryYear(msgspec.Struct):
    year: Annotated[int, Meta(description="The year taken.")]
    items: Annotated[list[Memory], Meta(description="Best first, one per burst.")]


class Memories(msgspec.Struct):
    date: Annotated[str, Meta(description="The month and day: MM-DD.")]
    years: Annotated[list[MemoryYear], Meta(description="Earlier years, newest first.")]


@dataclass
class Shot:
    """One content taken on the day (its earliest live location with a usable date)."""

    content_hash: str
    file_id: str
    library: str
    path: str
    media_kind: str
    date_taken: str
    date_source: str
    phash: str | None
    width: int | None
    height: int | None
    favorite: bool
    faces: int
    thumbs: str | None

    @property
    def when(self) -> datetime | None:
        text = self.date_taken.replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed.replace(tzinfo=None)  # wall time as recorded

    def rank(self) -> tuple[int, int, int, str, str]:
        """Smaller is better."""
        pixels = (self.width or 0) * (self.height or 0)
        return (0 if self.favorite else 1, -self.faces, -pixels, self.date_taken, self.path)


def bursts(shots: list[Shot], seconds: float, near: int) -> list[list[Shot]]:
    """``shots`` of one day in bursts (see the module docstring), each best first."""
    parent = list(range(len(shots)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    timed = sorted(
        ((s.when, i) for i, s in enumerate(shots) if s.when is not None), key=lambda x: x[0]
    )
    for (t0, i), (t1, j) in itertools.pairwise(timed):
        if (t1 - t0).total_seconds() <= seconds:  # type: ignore[operator]
            union(i, j)
    hashed = [(i, s.phash) for i, s in enumerate(shots) if s.phash]
    for a, (i, hi) in enumerate(hashed):
        for j, hj in hashed[a + 1 :]:
            if hamming(hi, hj) <= near:  # type: ignore[arg-type]
                union(i, j)
    groups: dict[int, list[Shot]] = {}
    for i, s in enumerate(shots):
        groups.setdefault(find(i), []).append(s)
    return [sorted(g, key=Shot.rank) for g in groups.values()]


def _shots(conn: sqlite3.Connection, mmdd: str, before_year: int) -> list[Shot]:
    found: dict[str, Shot] = {}
    for r in conn.execute(
        "SELECT f.content_hash, f.file_id, f.library_id, f.path, f.media_kind, f.date_taken,"
        " f.date_source, c.phash, c.width, c.height,"
        " EXISTS (SELECT 1 FROM favorites AS fv WHERE fv.content_hash = f.content_hash) AS fav,"
        " (SELECT count(*) FROM faces AS fc WHERE fc.content_hash = f.content_hash"
        "  AND fc.rejected = 0) AS nfaces, t.sizes"
        " FROM files AS f JOIN content AS c ON c.content_hash = f.content_hash"
        " LEFT JOIN thumbnails AS t ON t.content_hash = f.content_hash"
        " WHERE f.date_taken IS NOT NULL AND f.date_source IS NOT NULL"
        " AND f.date_source != 'filesystem'"
        " AND substr(f.date_taken, 6, 5) = ? AND substr(f.date_taken, 1, 4) < ?"
        " ORDER BY f.date_taken, f.file_id",
        (mmdd, f"{before_year:04d}"),
    ):
        if r[0] in found:
            continue  # the content's earliest location
        found[r[0]] = Shot(
            content_hash=r[0], file_id=r[1], library=r[2], path=r[3], media_kind=r[4],
            date_taken=r[5], date_source=r[6], phash=r[7], width=r[8], height=r[9],
            favorite=bool(r[10]), faces=int(r[11]), thumbs=r[12],
        )  # fmt: skip
    return list(found.values())


def memories(
    conn: sqlite3.Connection, mmdd: str, before_year: int, seconds: float, near: int
) -> list[MemoryYear]:
    """The memories of ``mmdd`` (MM-DD) in the years before ``before_year``."""
    by_year: dict[int, dict[str, list[Shot]]] = {}
    for s in _shots(conn, mmdd, before_year):
        by_year.setdefault(int(s.date_taken[:4]), {}).setdefault(s.date_taken[:10], []).append(s)
    chosen: dict[int, list[tuple[Shot, int]]] = {}
    for year, days in by_year.items():
        for shots in days.values():  # one calendar day per year, but keep it general
            for group in bursts(shots, seconds, near):
                chosen.setdefault(year, []).append((group[0], len(group)))
    tags = rows.person_tags(conn, (s.content_hash for picks in chosen.values() for s, _ in picks))
    out = []
    for year in sorted(chosen, reverse=True):
        picks = sorted(chosen[year], key=lambda p: p[0].rank())
        out.append(MemoryYear(year=year, items=[_memory(s, n, tags) for s, n in picks]))
    return out


def _memory(s: Shot, n: int, tags: dict[str, list[str]]) -> Memory:
    return Memory(
        content_hash=s.content_hash, file_id=s.file_id, library=s.library, path=s.path,
        media_kind=s.media_kind, date_taken=s.date_taken, date_source=s.date_source,
        favorite=s.favorite, faces=s.faces, burst=n, width=s.width, height=s.height,
        thumbnail=rows.thumbnail_urls(s.content_hash, s.thumbs).get("small"),
        tags=tags.get(s.content_hash, []),
    )  # fmt: skip


def parse_day(value: str | None, today: Day | None = None) -> tuple[str, int]:
    """(MM-DD, the current year) for ``date=``: default today in the server's local time."""
    today = today or Day.today()
    if value is None:
        return today.strftime("%m-%d"), today.year
    if not _MMDD.fullmatch(value):
        raise bad_parameter("date", "must be MM-DD (e.g. 06-01)")
    try:
        Day(2000, int(value[:2]), int(value[3:]))  # a leap year: 02-29 is a day
    except ValueError:
        raise bad_parameter("date", f"{value} is no day of the year") from None
    return value, today.year


class MemoriesController(Controller):
    path = "/memories"
    tags = ("photos",)

    @get(
        "/",
        summary="On this day",
        description="Photos and videos taken on this month and day (date_taken's wall "
        "time, as the camera recorded it) in earlier years, grouped by year, newest first; "
        "best first within a year (favourites, then most faces, then most pixels), one per "
        "burst (same day within memories_burst_seconds, or near-duplicate pHashes). "
        "Locations whose date is only the file's mtime (date_source 'filesystem') are left "
        "out.",
        responses=error_responses(400),
    )
    async def get_memories(
        self,
        ctx: Ctx,
        date: Annotated[
            str | None,
            Parameter(
                description="MM-DD; default today in the server's local time.",
                pattern=_MMDD.pattern,
            ),
        ] = None,
    ) -> Memories:
        mmdd, year = parse_day(date)
        s = ctx.settings
        found = await db.read(
            s.readmodel_dir,
            lambda c: memories(c, mmdd, year, s.memories_burst_seconds, s.memories_near_distance),
            [],
        )
        return Memories(date=mmdd, years=found)
