"""GET /photos (filtered, sorted, keyset-paged), GET /photos/{content_hash}, and the
content's bytes: /photos/{content_hash}/thumbnail and /photos/{content_hash}/original."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import re
import sqlite3
import stat
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter

from eventsvc.ids import HASH_RE
from projections.api import db, geo, rows
from projections.api.context import ApiContext, Ctx
from projections.api.errors import bad_parameter, error_responses
from projections.api.paging import decode_cursor, encode_cursor
from projections.api.schemas import ErrorDetail, PhotoDetail, PhotoPage, PhotoPerson
from projections.api.sendfile import content_disposition, guess_media_type, send_file

__all__ = ["PhotosController", "check_hash"]

Sort = Literal["path", "-path", "mtime", "-mtime", "taken", "-taken"]
_COLUMN = {"path": "path", "mtime": "mtime_ns", "taken": "date_taken"}
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "path": (str,), "mtime": (int,), "taken": (str, type(None)),
}  # fmt: skip
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_IMMUTABLE = "max-age=31536000, immutable"
_WHEN = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?)?)?$"
)


def check_hash(content_hash: str, name: str = "content_hash") -> str:
    if not HASH_RE.fullmatch(content_hash):
        raise bad_parameter(name, "must be 64 lowercase hex characters")
    return content_hash


def _prefix_upper(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1 if not 0xD800 <= last + 1 <= 0xDFFF else 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


def _after(cursor: str, sort: Sort) -> tuple[Any, str]:
    data = decode_cursor(cursor)
    key, file_id = data.get("k"), data.get("id")
    if data.get("s") != sort:
        raise bad_parameter("cursor", f"it was made for sort={data.get('s')!r}, not {sort!r}")
    if type(key) not in _KEY_TYPES[sort.lstrip("-")] or not isinstance(file_id, str):
        raise bad_parameter("cursor", "not a cursor handed out by this API")
    return key, file_id


# ------------------------------------------------------------------ parameter parsing


def _fmt(moment: datetime) -> str:
    """As the projector writes dates: milliseconds only when there are some."""
    text = moment.replace(microsecond=0).isoformat()
    millis = moment.microsecond // 1000
    return text + (f".{millis:03d}" if millis else "")


def taken_bound(name: str, value: str, *, upper: bool) -> str:
    """A string bound on files.date_taken (ISO text, compared as text).

    ``taken_from`` is inclusive; ``taken_to`` includes the whole unit it names (a bare
    date: that day; ``...T12:30``: that minute), so it becomes an exclusive bound.
    Offsets are refused: date_taken is wall-clock text (camera time, or UTC for
    container and filesystem dates), so they could not be applied honestly.
    """
    m = _WHEN.match(value.strip())
    if m is None:
        raise bad_parameter(
            name,
            "expected an ISO date or date-time without offset (YYYY-MM-DD or "
            "YYYY-MM-DDTHH:MM[:SS[.fff]])",
        )
    y, mo, d, hh, mi, ss, frac = m.groups()
    try:
        day = date(int(y), int(mo), int(d))
        moment = datetime(
            day.year, day.month, day.day, int(hh or 0), int(mi or 0), int(ss or 0),
            int((frac or "0").ljust(6, "0")),
        )  # fmt: skip
    except ValueError as exc:
        raise bad_parameter(name, f"{value!r} is not a valid date: {exc}") from exc
    millis = frac is not None
    if not upper:
        return day.isoformat() if hh is None else _fmt(moment)
    try:
        if hh is None:
            return (day + timedelta(days=1)).isoformat()
        if millis:
            moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
            unit = timedelta(milliseconds=1)
        else:
            unit = (
                timedelta(seconds=1) if ss else timedelta(minutes=1) if mi else timedelta(hours=1)
            )
        return _fmt(moment + unit)
    except OverflowError:  # the end of 9999-12-31: above every date there is
        return "9999-12-32"


def _floats(name: str, value: str, count: int, shape: str) -> list[float]:
    parts = value.split(",")
    if len(parts) != count:
        raise bad_parameter(name, f"expected {shape}")
    try:
        out = [float(p) for p in parts]
    except ValueError:
        raise bad_parameter(name, f"expected {shape}, numbers in degrees") from None
    if not all(math.isfinite(x) for x in out):
        raise bad_parameter(name, "coordinates must be finite numbers")
    return out


def _check_lat(name: str, lat: float) -> None:
    if not -90.0 <= lat <= 90.0:
        raise bad_parameter(name, f"latitude {lat} is outside -90..90")


def _check_lon(name: str, lon: float) -> None:
    if not -180.0 <= lon <= 180.0:
        raise bad_parameter(name, f"longitude {lon} is outside -180..180")


def _text_match(column: str, value: str) -> tuple[str, list[Any]]:
    """Case-insensitive (ASCII) exact match; ``*`` matches any run of characters."""
    if "*" not in value:
        return f"{column} = ? COLLATE NOCASE", [value]
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{column} LIKE ? ESCAPE '\\'", [escaped.replace("*", "%")]


@dataclass
class Query:
    """The WHERE of a /photos listing: SQL fragments over ``files f``, ``media m``."""

    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    near: tuple[float, float, float] | None = None

    def add(self, sql: str, *params: Any) -> None:
        self.where.append(sql)
        self.params.extend(params)


def build_query(
    *, library: str | None = None, media_kind: str | None = None,
    path_prefix: str | None = None, hashed: bool | None = None,
    taken_from: str | None = None, taken_to: str | None = None,
    make: str | None = None, model: str | None = None, lens: str | None = None,
    bbox: str | None = None, near: str | None = None, radius_km: float | None = None,
    has_gps: bool | None = None, orientation: int | None = None,
    person: str | None = None, tag: str | None = None,
) -> Query:  # fmt: skip
    q = Query()
    if person is not None:
        _add_person(q, person)
    if tag is not None:
        _add_tag(q, tag)
    if library is not None:
        q.add("f.library_id = ?", library)
    if media_kind is not None:
        q.add("f.media_kind = ?", media_kind)
    if path_prefix:
        q.add("f.path >= ?", path_prefix)
        upper = _prefix_upper(path_prefix)
        if upper is not None:
            q.add("f.path < ?", upper)
    if hashed is not None:
        q.add(f"f.content_hash IS {'NOT ' if hashed else ''}NULL")
    lower_bound = taken_bound("taken_from", taken_from, upper=False) if taken_from else None
    upper_bound = taken_bound("taken_to", taken_to, upper=True) if taken_to else None
    if lower_bound is not None:
        q.add("f.date_taken >= ?", lower_bound)
    if upper_bound is not None:
        if lower_bound is not None and upper_bound <= lower_bound:
            raise bad_parameter("taken_to", "is before taken_from")
        q.add("f.date_taken < ?", upper_bound)
    for name, value in (("make", make), ("model", model), ("lens", lens)):
        if value is not None:
            if not value.strip("* "):
                raise bad_parameter(name, "must name something (not only '*')")
            sql, params = _text_match(f"m.{name}", value)
            q.add(sql, *params)
    if has_gps is not None:
        q.add(
            "m.gps_lat IS NOT NULL AND m.gps_lon IS NOT NULL"
            if has_gps
            else "(m.gps_lat IS NULL OR m.gps_lon IS NULL)"
        )
    if orientation is not None:
        q.add("m.orientation = ?", orientation)
    if bbox is not None:
        shape = "min_lat,min_lon,max_lat,max_lon"
        min_lat, min_lon, max_lat, max_lon = _floats("bbox", bbox, 4, shape)
        for lat in (min_lat, max_lat):
            _check_lat("bbox", lat)
        for lon in (min_lon, max_lon):
            _check_lon("bbox", lon)
        if min_lat > max_lat:
            raise bad_parameter("bbox", f"min_lat {min_lat} is above max_lat {max_lat}")
        _add_box(q, min_lat, max_lat, geo.lon_ranges(min_lon, max_lon))
    if radius_km is not None and near is None:
        raise bad_parameter("radius_km", "only applies with near=lat,lon")
    if near is not None:
        lat, lon = _floats("near", near, 2, "lat,lon")
        _check_lat("near", lat)
        _check_lon("near", lon)
        if radius_km is None:
            raise bad_parameter("radius_km", "is required with near")
        if not (math.isfinite(radius_km) and 0 < radius_km <= geo.MAX_RADIUS_KM):
            raise bad_parameter("radius_km", f"must be above 0 and at most {geo.MAX_RADIUS_KM:.0f}")
        _add_box(q, *geo.near_box(lat, lon, radius_km))
        q.add("haversine_km(m.gps_lat, m.gps_lon, ?, ?) <= ?", lat, lon, radius_km)
        q.near = (lat, lon, radius_km)
    return q


def _add_person(q: Query, person: str) -> None:
    """Contents with a face of that person (an id, merges followed, or a name: the
    "auto-bind" of names as tags), rejected faces left out."""
    if not person.strip():
        raise bad_parameter("person", "must be a person id or name")
    q.add(
        "EXISTS (SELECT 1 FROM faces AS pf WHERE pf.content_hash = f.content_hash"
        " AND pf.rejected = 0 AND pf.person_id IN (SELECT coalesce(pp.merged_into, pp.person_id)"
        " FROM people AS pp WHERE pp.person_id = ? OR pp.name = ? COLLATE NOCASE))",
        person, person.strip(),
    )  # fmt: skip


def _add_tag(q: Query, tag: str) -> None:
    """Contents whose ``tags`` hold this name (case-insensitive): ``person=NAME`` less
    hidden people and the names people merged away had."""
    if not tag.strip():
        raise bad_parameter("tag", "must be a name")
    q.add(
        "EXISTS (SELECT 1 FROM faces AS tf JOIN people AS tp ON tp.person_id = tf.person_id"
        " WHERE tf.content_hash = f.content_hash AND tf.rejected = 0 AND tp.hidden = 0"
        " AND tp.name = ? COLLATE NOCASE)",
        tag.strip(),
    )


def _add_box(q: Query, min_lat: float, max_lat: float, lons: geo.LonRanges) -> None:
    # Latitude first: the media_by_gps index (gps_lat, gps_lon) serves it.
    q.add("m.gps_lat BETWEEN ? AND ?", min_lat, max_lat)
    if lons != [(-180.0, 180.0)]:
        q.add(
            "(" + " OR ".join("m.gps_lon BETWEEN ? AND ?" for _ in lons) + ")",
            *(x for r in lons for x in r),
        )
    else:
        q.add("m.gps_lon IS NOT NULL")


def _select(q: Query, extra: list[str], extra_params: list[Any], order: str,
            limit: int) -> tuple[str, list[Any]]:  # fmt: skip
    where = q.where + extra
    sql = (
        f"SELECT {rows.PHOTO_COLUMNS} FROM files AS f{rows.PHOTO_JOINS}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {order} LIMIT ?"
    )
    return sql, [*q.params, *extra_params, limit]


def list_rows(
    conn: sqlite3.Connection, q: Query, sort: Sort, after: tuple[Any, str] | None, limit: int
) -> list[sqlite3.Row]:
    """Up to ``limit`` rows in ``sort`` order after the cursor position ``after``."""
    if q.near is not None:
        conn.create_function("haversine_km", 4, geo.haversine_km, deterministic=True)
    desc = sort.startswith("-")
    direction, cmp = ("DESC", "<") if desc else ("ASC", ">")
    col = "f." + _COLUMN[sort.lstrip("-")]
    if sort.lstrip("-") != "taken":
        extra, extra_params = [], []
        if after is not None:
            extra, extra_params = [f"({col}, f.file_id) {cmp} (?, ?)"], list(after)
        sql, params = _select(
            q, extra, extra_params, f"{col} {direction}, f.file_id {direction}", limit
        )
        return conn.execute(sql, params).fetchall()
    # By date taken, rows without one last: two index-ordered passes over files_by_taken.
    found: list[sqlite3.Row] = []
    if after is None or after[0] is not None:
        extra = ["f.date_taken IS NOT NULL"]
        extra_params: list[Any] = []
        if after is not None:
            extra.append(f"(f.date_taken, f.file_id) {cmp} (?, ?)")
            extra_params = list(after)
        sql, params = _select(
            q, extra, extra_params, f"f.date_taken {direction}, f.file_id {direction}", limit
        )
        found = conn.execute(sql, params).fetchall()
    if len(found) < limit:
        extra = ["f.date_taken IS NULL"]
        extra_params = []
        if after is not None and after[0] is None:
            extra.append(f"f.file_id {cmp} ?")
            extra_params = [after[1]]
        sql, params = _select(q, extra, extra_params, f"f.file_id {direction}", limit - len(found))
        found += conn.execute(sql, params).fetchall()
    return found


# ------------------------------------------------------------------ one content


def _detail(content_hash: str, conn: sqlite3.Connection) -> PhotoDetail | None:
    content = conn.execute(
        "SELECT size, media_kind, phash, dhash, width, height, decode_error"
        " FROM content WHERE content_hash = ?",
        (content_hash,),
    ).fetchone()
    locs = conn.execute(
        f"SELECT {rows.LOCATION_COLUMNS} FROM files WHERE content_hash = ?"
        " ORDER BY library_id, path, file_id",
        (content_hash,),
    ).fetchall()
    if content is None and not locs:
        return None
    meta: dict[str, Any] = (
        dict(content)
        if content is not None
        else {"size": locs[0]["size"], "media_kind": locs[0]["media_kind"], "phash": None,
              "dhash": None, "width": None, "height": None, "decode_error": None}
    )  # fmt: skip
    media = conn.execute(
        f"SELECT {', '.join(rows.MEDIA_COLUMNS)} FROM media WHERE content_hash = ?",
        (content_hash,),
    ).fetchone()
    thumbs = conn.execute(
        "SELECT sizes FROM thumbnails WHERE content_hash = ?", (content_hash,)
    ).fetchone()
    people = conn.execute(
        "SELECT fc.person_id, p.name, fc.face_id FROM faces AS fc"
        " JOIN people AS p ON p.person_id = fc.person_id"
        " WHERE fc.content_hash = ? AND fc.rejected = 0 AND p.hidden = 0 ORDER BY fc.face_id",
        (content_hash,),
    ).fetchall()
    return PhotoDetail(
        content_hash=content_hash,
        **meta,
        locations=[rows.location(r) for r in locs],
        exif=rows.exif(media),
        thumbnails=rows.thumbnail_urls(content_hash, thumbs["sizes"] if thumbs else None),
        tags=rows.person_tags(conn, [content_hash]).get(content_hash, []),
        people=[PhotoPerson(**dict(r)) for r in people],
    )


def _known(conn: sqlite3.Connection, content_hash: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM content WHERE content_hash = ?", (content_hash,)).fetchone()
        or conn.execute("SELECT 1 FROM files WHERE content_hash = ?", (content_hash,)).fetchone()
    ) is not None


def _cache_control(ctx: ApiContext) -> str:
    # Content-addressed bytes never change; behind a token, shared caches keep out.
    return ("private, " if ctx.settings.api_token else "public, ") + _IMMUTABLE


def _thumbnail_lookup(conn: sqlite3.Connection, content_hash: str, size: str) -> str:
    """The thumbnail's path under the thumbnail root; NotFoundException saying why not."""
    row = conn.execute(
        "SELECT sizes FROM thumbnails WHERE content_hash = ?", (content_hash,)
    ).fetchone()
    if row is not None:
        try:
            sizes = json.loads(row["sizes"])
        except ValueError:
            sizes = {}
        rel = sizes.get(size) if isinstance(sizes, dict) else None
        if not isinstance(rel, str) or not rel:
            have = ", ".join(sorted(sizes)) if isinstance(sizes, dict) else ""
            raise NotFoundException(
                detail=f"no {size!r} thumbnail for {content_hash} (has: {have or 'none'})"
            )
        return rel
    if not _known(conn, content_hash):
        raise NotFoundException(detail=f"unknown content_hash {content_hash}")
    failure = conn.execute(
        "SELECT reason FROM failures WHERE stage = 'thumbnail' AND content_hash = ?"
        " ORDER BY seq DESC LIMIT 1",
        (content_hash,),
    ).fetchone()
    if failure is not None:
        raise NotFoundException(detail=f"thumbnail for {content_hash} failed: {failure['reason']}")
    raise NotFoundException(detail=f"thumbnail for {content_hash} is pending (not made yet)")


def _open_thumbnail(root: Path, rel: str) -> tuple[BinaryIO, os.stat_result]:
    """Open ``root / rel`` only if it resolves inside ``root``."""
    base = root.resolve()
    try:
        target = (base / rel).resolve()
    except (OSError, ValueError) as exc:  # a NUL byte, a symlink loop
        raise NotFoundException(detail=f"thumbnail path unusable: {exc}") from exc
    if target == base or not target.is_relative_to(base):
        raise NotFoundException(detail="thumbnail path is outside the thumbnail store; refused")
    try:
        f = open(target, "rb", buffering=0)  # closed by the response
    except (OSError, ValueError) as exc:
        raise NotFoundException(detail=f"thumbnail file missing from the store: {rel}") from exc
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise NotFoundException(detail=f"thumbnail is not a file: {rel}")
    return f, st


@dataclass
class _Live:
    file: BinaryIO
    size: int
    name: str


def _rel_bytes(row: sqlite3.Row) -> bytes:
    if row["raw_path"]:
        return base64.b64decode(row["raw_path"])
    return str(row["path"]).encode("utf-8")


def _open_location(row: sqlite3.Row) -> BinaryIO | str:
    """The opened file of a location, or why it cannot be served."""
    if row["root"] is None:
        return "its library is unknown"
    try:
        root = os.path.realpath(os.fsencode(row["root"]))
        target = os.path.realpath(os.path.join(root, _rel_bytes(row)))
    except (OSError, ValueError) as exc:  # a NUL byte, undecodable base64, a loop
        return f"its path is unusable ({exc})"
    if target == root or os.path.commonpath([root, target]) != root:
        return "it resolves outside its library root; refused"
    try:
        # realpath resolved every link: one appearing now at the last step is refused.
        fd = os.open(target, os.O_RDONLY | _NOFOLLOW)
    except OSError as exc:
        return f"cannot open it ({exc.strerror or type(exc).__name__})"
    f = os.fdopen(fd, "rb", buffering=0)
    st = os.fstat(fd)
    why = None
    if not stat.S_ISREG(st.st_mode):
        why = "it is not a regular file"
    elif (st.st_size, st.st_mtime_ns) != (row["size"], row["mtime_ns"]):
        why = "it changed since it was hashed (size or mtime differ)"
    if why is not None:
        f.close()
        return why
    return f


def _find_live(found: list[sqlite3.Row], content_hash: str) -> _Live:
    reasons = []
    for row in found:
        opened = _open_location(row)
        if not isinstance(opened, str):
            return _Live(opened, row["size"], str(row["path"]).rsplit("/", 1)[-1])
        reasons.append(f"{row['library_id']}:{row['path']}: {opened}")
    detail = f"no live location for {content_hash}"
    if reasons:
        more = f"; and {len(reasons) - 5} more" if len(reasons) > 5 else ""
        detail += f" ({'; '.join(reasons[:5])}{more})"
    raise NotFoundException(detail=detail)


def _original_rows(conn: sqlite3.Connection, content_hash: str) -> list[sqlite3.Row] | None:
    found = conn.execute(
        "SELECT f.library_id, f.path, f.raw_path, f.size, f.mtime_ns, l.root"
        " FROM files AS f LEFT JOIN libraries AS l USING (library_id)"
        " WHERE f.content_hash = ? ORDER BY f.library_id, f.path, f.file_id",
        (content_hash,),
    ).fetchall()
    if not found and not _known(conn, content_hash):
        return None
    return found


_BYTES_RESPONSES = {
    206: ResponseSpec(None, description="The requested byte range (Content-Range says which)."),
    304: ResponseSpec(None, description="If-None-Match matched the ETag: nothing sent."),
    416: ResponseSpec(
        ErrorDetail, description="The range is beyond the end; Content-Range: bytes */size."
    ),
}


class PhotosController(Controller):
    path = "/photos"
    tags = ("photos",)

    @get(
        "/",
        summary="File locations",
        description="Live files, filtered and sorted, paged with an opaque keyset cursor. "
        "Filters combine with AND. Camera and GPS filters use the metadata extracted from "
        "the file's content, so they match only files already hashed and analysed.",
        responses=error_responses(400),
    )
    async def list_photos(
        self,
        ctx: Ctx,
        library: Annotated[str | None, Parameter(description="Only this library id.")] = None,
        media_kind: Annotated[
            Literal["image", "video"] | None, Parameter(description="Only images or videos.")
        ] = None,
        path_prefix: Annotated[
            str | None, Parameter(description="Only paths starting with this string.")
        ] = None,
        hashed: Annotated[
            bool | None, Parameter(description="Only files whose hash is (not) known.")
        ] = None,
        taken_from: Annotated[
            str | None,
            Parameter(
                description="Only files taken at or after this ISO date or date-time "
                "(no offset; compared with date_taken as wall-clock text).",
                examples=[Example(value="2023-06-01")],
            ),
        ] = None,
        taken_to: Annotated[
            str | None,
            Parameter(
                description="Only files taken at or before this ISO date or date-time (no "
                "offset). It includes the whole unit given: a bare date that whole day, "
                "'2023-06-01T12:30' that whole minute.",
                examples=[Example(value="2023-06-30")],
            ),
        ] = None,
        make: Annotated[
            str | None,
            Parameter(
                description="Camera maker, case-insensitive exact; '*' matches any run "
                "of characters."
            ),
        ] = None,
        model: Annotated[
            str | None,
            Parameter(
                description="Camera model, case-insensitive exact; '*' matches any run of "
                "characters ('*EOS*' for a substring).",
            ),
        ] = None,
        lens: Annotated[
            str | None,
            Parameter(
                description="Lens, case-insensitive exact; '*' matches any run of characters."
            ),
        ] = None,
        bbox: Annotated[
            str | None,
            Parameter(
                description="Only positions in min_lat,min_lon,max_lat,max_lon (degrees). "
                "min_lon > max_lon is a box across the antimeridian.",
                examples=[Example(value="45.8,5.9,47.8,10.5")],
            ),
        ] = None,
        near: Annotated[
            str | None,
            Parameter(
                description="Only positions within radius_km (great circle) of lat,lon.",
                examples=[Example(value="48.8584,2.2945")],
            ),
        ] = None,
        radius_km: Annotated[
            float | None,
            Parameter(description="Radius in km for `near` (required with it, > 0)."),
        ] = None,
        has_gps: Annotated[
            bool | None, Parameter(description="Only files whose metadata has (no) position.")
        ] = None,
        orientation: Annotated[
            int | None, Parameter(ge=1, le=8, description="Only this EXIF orientation (1-8).")
        ] = None,
        person: Annotated[
            str | None,
            Parameter(
                description="Only contents showing this person: a person id, or a name "
                "(case-insensitive exact)."
            ),
        ] = None,
        tag: Annotated[
            str | None,
            Parameter(
                description="Only contents tagged with this name (case-insensitive exact): "
                "the items whose `tags` hold it (a face, not rejected, of a person so named). "
                "An alias of `person=NAME`, except that a hidden person, or the old name of "
                "one merged into another, is no tag."
            ),
        ] = None,
        sort: Annotated[
            Sort,
            Parameter(
                description="Order: path, mtime or taken (date_taken; files without one "
                "last), '-' for descending."
            ),
        ] = "path",
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size.")] = 100,
        cursor: Annotated[
            str | None, Parameter(description="The `next` of the previous page.")
        ] = None,
    ) -> PhotoPage:
        q = build_query(
            library=library, media_kind=media_kind, path_prefix=path_prefix, hashed=hashed,
            taken_from=taken_from, taken_to=taken_to, make=make, model=model, lens=lens,
            bbox=bbox, near=near, radius_km=radius_km, has_gps=has_gps, orientation=orientation,
            person=person, tag=tag,
        )  # fmt: skip
        after = _after(cursor, sort) if cursor is not None else None

        def page(c: sqlite3.Connection) -> tuple[list[sqlite3.Row], dict[str, list[str]]]:
            found = list_rows(c, q, sort, after, limit + 1)
            return found, rows.person_tags(c, (r["content_hash"] for r in found[:limit]))

        found, tags = await db.read(ctx.settings.readmodel_dir, page, ([], {}))
        items = [rows.photo(r, tags.get(r["content_hash"], [])) for r in found[:limit]]
        nxt = None
        if len(found) > limit:
            last = found[limit - 1]
            key = last[_COLUMN[sort.lstrip("-")]]
            nxt = encode_cursor({"s": sort, "k": key, "id": last["file_id"]})
        return PhotoPage(items=items, next=nxt)

    @get(
        "/{content_hash:str}",
        summary="One content",
        description="A content's metadata, every live location holding it (each with its "
        "date taken), what was read from its bytes and its thumbnails.",
        responses=error_responses(400, 404),
    )
    async def get_photo(
        self,
        ctx: Ctx,
        content_hash: Annotated[
            str,
            Parameter(
                description="BLAKE3 hex of the content.",
                examples=[Example(value="0" * 64)],
            ),
        ],
    ) -> PhotoDetail:
        check_hash(content_hash)
        found = await db.read(ctx.settings.readmodel_dir, lambda c: _detail(content_hash, c), None)
        if found is None:
            raise NotFoundException(detail=f"unknown content_hash {content_hash}")
        return found

    @get(
        "/{content_hash:str}/thumbnail",
        summary="A thumbnail",
        description="The content's JPEG thumbnail, with an ETag and year-long cache headers "
        "(thumbnails are content-addressed). 404 says whether the content is unknown or "
        "the thumbnail is pending or failed. Byte ranges are honoured.",
        media_type="image/jpeg",
        response_description="The thumbnail (image/jpeg).",
        responses={**error_responses(400, 404), **_BYTES_RESPONSES},
    )
    async def get_thumbnail(
        self,
        ctx: Ctx,
        request: Request[Any, Any, Any],
        content_hash: Annotated[str, Parameter(description="BLAKE3 hex of the content.")],
        size: Annotated[
            Literal["small", "large"],
            Parameter(description="'small' (256 px edge) or 'large' (1440 px edge)."),
        ] = "small",
    ) -> Response[Any]:
        check_hash(content_hash)
        rel = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: _thumbnail_lookup(c, content_hash, size),
            None,
        )
        if rel is None:  # no read model yet
            raise NotFoundException(detail=f"unknown content_hash {content_hash}")
        f, st = await asyncio.to_thread(_open_thumbnail, ctx.settings.thumbs_dir, rel)
        etag = f'"{content_hash[:32]}-{size}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        return send_file(
            request, f, size=st.st_size, media_type="image/jpeg", etag=etag,
            headers={"Cache-Control": _cache_control(ctx)},
        )  # fmt: skip

    @get(
        "/{content_hash:str}/original",
        summary="The original file",
        description="Streams the content's bytes from its first live location (the file "
        "exists inside its library root, symlinks resolved, with the size and mtime it "
        "was hashed at). Supports single byte ranges (206, 416), If-None-Match and "
        "If-Range; the ETag is the content hash.",
        response_description="The file, with a content type guessed from its name.",
        responses={**error_responses(400, 404), **_BYTES_RESPONSES},
    )
    async def get_original(
        self,
        ctx: Ctx,
        request: Request[Any, Any, Any],
        content_hash: Annotated[str, Parameter(description="BLAKE3 hex of the content.")],
    ) -> Response[Any]:
        check_hash(content_hash)
        found = await db.read(
            ctx.settings.readmodel_dir, lambda c: _original_rows(c, content_hash), None
        )
        if found is None:
            raise NotFoundException(detail=f"unknown content_hash {content_hash}")
        live = await asyncio.to_thread(_find_live, found, content_hash)
        return send_file(
            request, live.file, size=live.size, media_type=guess_media_type(live.name),
            etag=f'"{content_hash}"',
            headers={"Cache-Control": _cache_control(ctx),
                     "Content-Disposition": content_disposition(live.name)},
        )  # fmt: skip
