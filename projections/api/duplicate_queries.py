"""The queries behind GET /duplicates: exact groups (same BLAKE3, two or more live
locations) and near groups (pHashes within a Hamming distance, linked pair by pair),
with their page cursors. See :mod:`projections.api.duplicates` for the rules."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np

from eventsvc.core.ids import HASH_RE
from projections import near, readmodel
from projections.api import rows
from projections.api.duplicate_schemas import (
    DuplicateGroup,
    NearDuplicateGroup,
    NearDuplicateMember,
    NearPair,
)
from projections.api.errors import bad_parameter
from projections.api.filters import library_clause, resolve_library
from projections.api.paging import decode_cursor

__all__ = [
    "DEFAULT_MAX_DISTANCE",
    "MAX_MAX_DISTANCE",
    "exact_after",
    "exact_groups",
    "near_after",
    "near_groups",
]

DEFAULT_MAX_DISTANCE = 6
MAX_MAX_DISTANCE = 16
_PHASH = re.compile(r"^[0-9a-f]{16}$")
_CHUNK = 500  # SQLite parameters per IN (...)


# ------------------------------------------------------------------ exact


def _chunks(hashes: list[str]) -> Iterator[tuple[list[str], str]]:
    """``hashes`` in slices of at most ``_CHUNK``, each with its ``?,?,…`` placeholders."""
    for start in range(0, len(hashes), _CHUNK):
        part = hashes[start : start + _CHUNK]
        yield part, ",".join("?" * len(part))


def _library_sql(
    conn: sqlite3.Connection, column: str, library: str | None
) -> tuple[str, list[Any]]:
    """`` AND <the library filter>`` (an id or a name), or nothing without one."""
    if library is None:
        return "", []
    sql, params = library_clause(column, resolve_library(conn, library))
    return " AND " + sql, params


def exact_after(cursor: str) -> tuple[int, str]:
    data = decode_cursor(cursor)
    wasted, content_hash = data.get("w"), data.get("h")
    if (
        type(wasted) is not int
        or not isinstance(content_hash, str)
        or not HASH_RE.fullmatch(content_hash)
    ):
        raise bad_parameter("cursor", "not a duplicates cursor handed out by this API")
    return wasted, content_hash


def exact_groups(
    conn: sqlite3.Connection, library: str | None, after: tuple[int, str] | None, limit: int
) -> list[DuplicateGroup]:
    lib_sql, lib_params = _library_sql(conn, "library_id", library)
    page_sql, page_params = "", []
    if after is not None:
        page_sql = " WHERE wasted < ? OR (wasted = ? AND content_hash > ?)"
        page_params = [after[0], after[0], after[1]]
    groups = conn.execute(
        f"""WITH g AS (
                SELECT content_hash, count(*) AS n, max(size) AS size,
                       max(size) * (count(*) - 1) AS wasted
                FROM files WHERE content_hash IS NOT NULL{lib_sql}
                GROUP BY content_hash HAVING count(*) >= 2
            )
            SELECT content_hash, n, size, wasted FROM g{page_sql}
            ORDER BY wasted DESC, content_hash ASC LIMIT ?""",
        [*lib_params, *page_params, limit],
    ).fetchall()
    if not groups:
        return []
    hashes = [g["content_hash"] for g in groups]
    by_hash = _locations(conn, hashes, library)
    return [
        DuplicateGroup(
            content_hash=g["content_hash"],
            size=g["size"],
            count=g["n"],
            wasted_bytes=g["wasted"],
            locations=by_hash[g["content_hash"]],
        )
        for g in groups
    ]


def _locations(
    conn: sqlite3.Connection, hashes: list[str], library: str | None
) -> dict[str, list[Any]]:
    lib_sql, lib_params = _library_sql(conn, "library_id", library)
    by_hash: dict[str, list[Any]] = {h: [] for h in hashes}
    for part, marks in _chunks(hashes):
        for r in conn.execute(
            f"SELECT {rows.LOCATION_COLUMNS} FROM files WHERE content_hash IN ({marks}){lib_sql}"
            " ORDER BY library_id, path, file_id",
            [*part, *lib_params],
        ):
            by_hash[r["content_hash"]].append(rows.location(r))
    return by_hash


# ------------------------------------------------------------------ near

_CACHE: OrderedDict[tuple[Any, ...], tuple[list[str], near.Pairs]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def _candidates(
    conn: sqlite3.Connection, library: str | None, max_distance: int
) -> tuple[list[str], near.Pairs]:
    """Contents with a usable pHash and a live location, and their pairs within the
    distance. Cached per (generation, checkpoint, library, distance): paging through
    the groups of one read-model state searches once."""
    db_file = conn.execute("PRAGMA database_list").fetchone()[2]
    key = (db_file, readmodel.checkpoint(conn), library, max_distance)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    lib_sql, lib_params = _library_sql(conn, "f.library_id", library)
    found = conn.execute(
        "SELECT c.content_hash, c.phash FROM content AS c WHERE c.phash IS NOT NULL"
        f" AND EXISTS (SELECT 1 FROM files AS f WHERE f.content_hash = c.content_hash{lib_sql})"
        " ORDER BY c.content_hash",
        lib_params,
    ).fetchall()
    hashes, phashes = [], []
    for r in found:
        ph = str(r["phash"]).lower()
        if _PHASH.fullmatch(ph):  # 64-bit hashes only; anything else cannot be compared
            hashes.append(r["content_hash"])
            phashes.append(ph)
    pairs = near.near_pairs(phashes, max_distance)
    with _CACHE_LOCK:
        _CACHE[key] = (hashes, pairs)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return hashes, pairs


def _wall(text: str | None) -> datetime | None:
    """A date_taken as naive wall-clock time (an offset or 'Z' is dropped)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def _dates(
    conn: sqlite3.Connection, hashes: list[str], library: str | None
) -> dict[str, str | None]:
    """Earliest date_taken among each content's live locations (in the library)."""
    lib_sql, lib_params = _library_sql(conn, "library_id", library)
    out: dict[str, str | None] = dict.fromkeys(hashes)
    for part, marks in _chunks(hashes):
        for r in conn.execute(
            f"SELECT content_hash, min(date_taken) AS taken FROM files"
            f" WHERE content_hash IN ({marks}){lib_sql} GROUP BY content_hash",
            [*part, *lib_params],
        ):
            out[r["content_hash"]] = r["taken"]
    return out


def near_groups(
    conn: sqlite3.Connection,
    library: str | None,
    max_distance: int,
    window: float | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[NearDuplicateGroup]:
    hashes, pairs = _candidates(conn, library, max_distance)
    if not len(pairs):
        return []
    involved = np.unique(np.concatenate((pairs.i, pairs.j))).tolist()
    taken = _dates(conn, [hashes[k] for k in involved], library)
    wall = {h: _wall(t) for h, t in taken.items()}
    refused = {
        (r["a"], r["b"]) for r in conn.execute("SELECT a, b FROM not_duplicates")
    }  # a < b, as hashes are sorted
    kept: list[tuple[int, int, int, float | None]] = []
    for i, j, d in pairs.as_tuples():
        a, b = hashes[i], hashes[j]
        if (a, b) in refused:
            continue
        ta, tb = wall[a], wall[b]
        apart = abs((ta - tb).total_seconds()) if ta is not None and tb is not None else None
        if window is not None and (apart is None or apart > window):
            continue
        kept.append((i, j, d, apart))
    comps = near.components(len(hashes), [k[0] for k in kept], [k[1] for k in kept])
    comps.sort(key=lambda g: (-len(g), hashes[g[0]]))
    if after is not None:
        comps = [g for g in comps if (-len(g), hashes[g[0]]) > (-after[0], after[1])]
    page = comps[:limit]
    if not page:
        return []
    members = [hashes[k] for g in page for k in g]
    info = _member_info(conn, members)
    locs = _locations(conn, members, library)
    edges: dict[int, list[NearPair]] = {}
    where = {k: n for n, g in enumerate(page) for k in g}
    for i, j, d, apart in kept:
        if i in where:
            edges.setdefault(where[i], []).append(
                NearPair(a=hashes[i], b=hashes[j], distance=d, seconds_apart=apart)
            )
    out = []
    for n, g in enumerate(page):
        group_members = [
            NearDuplicateMember(
                content_hash=hashes[k],
                **info[hashes[k]],
                date_taken=taken[hashes[k]],
                locations=locs[hashes[k]],
            )
            for k in g
        ]
        group_members.sort(key=lambda m: (m.date_taken is None, m.date_taken or "", m.content_hash))
        out.append(
            NearDuplicateGroup(
                count=len(g),
                members=group_members,
                pairs=sorted(edges.get(n, []), key=lambda p: (p.distance, p.a, p.b)),
            )
        )
    return out


def _member_info(conn: sqlite3.Connection, hashes: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for part, marks in _chunks(hashes):
        for r in conn.execute(
            "SELECT c.content_hash, c.phash, c.size, c.media_kind, c.width, c.height,"
            " m.width AS m_width, m.height AS m_height, m.orientation, t.sizes"
            " FROM content AS c LEFT JOIN media AS m USING (content_hash)"
            " LEFT JOIN thumbnails AS t USING (content_hash)"
            f" WHERE c.content_hash IN ({marks})",
            part,
        ):
            width, height = rows.upright(
                (r["width"], r["height"]), (r["m_width"], r["m_height"]), r["orientation"]
            )
            thumbs = rows.thumbnail_urls(r["content_hash"], r["sizes"])
            out[r["content_hash"]] = {
                "phash": str(r["phash"]).lower(), "size": r["size"],
                "media_kind": r["media_kind"], "width": width, "height": height,
                "thumbnail": next(iter(thumbs.values()), None),
            }  # fmt: skip
    return out


def near_after(cursor: str, max_distance: int, window: float | None) -> tuple[int, str]:
    data = decode_cursor(cursor)
    count, first = data.get("n"), data.get("h")
    if (
        data.get("k") != "near"
        or type(count) is not int
        or not isinstance(first, str)
        or not HASH_RE.fullmatch(first)
    ):
        raise bad_parameter("cursor", "not a near-duplicates cursor handed out by this API")
    if data.get("d") != max_distance or data.get("w") != window:
        raise bad_parameter(
            "cursor",
            f"it was made for max_distance={data.get('d')!r}, window={data.get('w')!r}",
        )
    return count, first
