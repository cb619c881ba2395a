"""The metadata filters shared by /photos, /photos/search and /photos/{hash}/similar:
query parameters in, a SQL WHERE over ``files f`` and ``media m`` out.

:func:`photo_filters` is a Litestar dependency, so the three endpoints take the same
parameters with the same documentation and the same 400s; :func:`build_query` is the
plain function behind it.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from litestar.di import Provide

try:  # litestar >= 2.23: say explicitly that ``filters`` is injected by name
    from litestar.di import NamedDependency
except ImportError:  # pragma: no cover - older litestar infers it
    NamedDependency = None  # type: ignore[assignment,misc]
from litestar.openapi.spec import Example
from litestar.params import Parameter

from eventsvc.core.events import tag_key, tag_name
from eventsvc.core.ids import library_ids_named
from projections.api import db, geo
from projections.api.context import Ctx
from projections.api.errors import bad_parameter
from projections.api.params import (
    BBOX_PATTERN,
    NAMES_SOMETHING,
    NEAR_PATTERN,
    NOT_BLANK,
    WHEN_PATTERN,
    strict,
)

__all__ = [
    "LIBRARY_DESCRIPTION", "Filters", "Query", "build_query", "filter_dependencies",
    "library_clause", "photo_filters", "resolve_library", "taken_bound",
]  # fmt: skip

LIBRARY_DESCRIPTION = (
    "Only this library: its id, or its name (case-insensitive exact; every library so "
    "named). An id wins over a name."
)

_WHEN = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2})(?::([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,6}))?)?)?)?$"
)


def _prefix_upper(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1 if not 0xD800 <= last + 1 <= 0xDFFF else 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


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
    m = _WHEN.fullmatch(value)
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
    *, library: str | Sequence[str] | None = None, media_kind: str | None = None,
    path_prefix: str | None = None,
    taken_from: str | None = None, taken_to: str | None = None,
    make: str | None = None, model: str | None = None, lens: str | None = None,
    bbox: str | None = None, near: str | None = None, radius_km: float | None = None,
    has_gps: bool | None = None, orientation: int | None = None,
    person: str | None = None, tag: str | Sequence[str] | None = None,
    tag_mode: str = "and", favorite: bool | None = None,
) -> Query:  # fmt: skip
    q = Query()
    if person is not None:
        _add_person(q, person)
    if tag is not None:
        _add_tags(q, [tag] if isinstance(tag, str) else list(tag), tag_mode)
    if favorite is not None:
        q.add(
            ("" if favorite else "NOT ")
            + "EXISTS (SELECT 1 FROM favorites AS fv WHERE fv.content_hash = f.content_hash)"
        )
    if library is not None:  # an id, or the ids resolve_library found
        ids = [library] if isinstance(library, str) else list(library)
        if not ids or not all(i.strip() for i in ids):
            raise bad_parameter("library", "must be a library id or name")
        sql, params = library_clause("f.library_id", ids)
        q.add(sql, *params)
    if media_kind is not None:
        q.add("f.media_kind = ?", media_kind)
    if path_prefix:
        q.add("f.path >= ?", path_prefix)
        upper = _prefix_upper(path_prefix)
        if upper is not None:
            q.add("f.path < ?", upper)
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
        strict("bbox", bbox, BBOX_PATTERN, f"expected {shape}, decimal degrees")
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
        strict("near", near, NEAR_PATTERN, "expected lat,lon, decimal degrees")
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


def resolve_library(conn: sqlite3.Connection, library: str) -> list[str]:
    """The library ids ``library`` names (``eventsvc.core.settings.library_ids_named``: an id
    wins; else every library whose name it is, case-insensitive exact, in id order);
    else itself: an unknown library, which then matches nothing."""
    if not library.strip():
        raise bad_parameter("library", "must be a library id or name")
    known = dict(conn.execute("SELECT library_id, name FROM libraries").fetchall())
    return library_ids_named(library, known) or [library]


def library_clause(column: str, ids: Sequence[str]) -> tuple[str, list[Any]]:
    """SQL (and its parameters) keeping rows whose ``column`` is one of ``ids`` (one id:
    an equality, so an index on (library_id, path) still gives the path order)."""
    if len(ids) == 1:
        return f"{column} = ?", [ids[0]]
    return f"{column} IN ({','.join('?' * len(ids))})", list(ids)


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


_TAG_SQL = (
    "(EXISTS (SELECT 1 FROM faces AS tf JOIN people AS tp ON tp.person_id = tf.person_id"
    " WHERE tf.content_hash = f.content_hash AND tf.rejected = 0 AND tp.hidden = 0"
    " AND tp.name = ? COLLATE NOCASE)"
    " OR EXISTS (SELECT 1 FROM user_tags AS ut WHERE ut.content_hash = f.content_hash"
    " AND ut.tag_key = ?))"
)


def _add_tags(q: Query, tags: list[str], mode: str) -> None:
    """Contents whose ``tags`` hold these names (case-insensitive): every one of them
    (``mode`` "and") or any ("or"). A name is a person's (``person=NAME`` less hidden
    people and the names people merged away had) or a user's tag (issue 16)."""
    if mode not in ("and", "or"):
        raise bad_parameter("tag_mode", "must be 'and' or 'or'")
    if not tags or not all(t.strip() for t in tags):
        raise bad_parameter("tag", "must be a name")
    names = list(dict.fromkeys(tag_name(t) or "" for t in tags))
    clauses = [_TAG_SQL] * len(names)
    q.add(
        "(" + (" AND " if mode == "and" else " OR ").join(clauses) + ")",
        *(x for n in names for x in (n, tag_key(n))),
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


Filters = NamedDependency[Query] if NamedDependency is not None else Query
"""How handlers declare the ``filters`` dependency (with ``filter_dependencies()``)."""


async def photo_filters(
    ctx: Ctx,
    library: Annotated[
        str | None, Parameter(description=LIBRARY_DESCRIPTION, pattern=NOT_BLANK)
    ] = None,
    media_kind: Annotated[
        Literal["image", "video"] | None, Parameter(description="Only images or videos.")
    ] = None,
    path_prefix: Annotated[
        str | None, Parameter(description="Only paths starting with this string.")
    ] = None,
    taken_from: Annotated[
        str | None,
        Parameter(
            description="Only files taken at or after this ISO date or date-time "
            "(no offset; compared with date_taken as wall-clock text).",
            pattern=WHEN_PATTERN,
            examples=[Example(value="2023-06-01")],
        ),
    ] = None,
    taken_to: Annotated[
        str | None,
        Parameter(
            description="Only files taken at or before this ISO date or date-time (no "
            "offset). It includes the whole unit given: a bare date that whole day, "
            "'2023-06-01T12:30' that whole minute. Not before taken_from (400).",
            pattern=WHEN_PATTERN,
            examples=[Example(value="2023-06-30")],
        ),
    ] = None,
    make: Annotated[
        str | None,
        Parameter(
            description="Camera maker, case-insensitive exact; '*' matches any run of "
            "characters (not only '*').",
            pattern=NAMES_SOMETHING,
        ),
    ] = None,
    model: Annotated[
        str | None,
        Parameter(
            description="Camera model, case-insensitive exact; '*' matches any run of "
            "characters ('*EOS*' for a substring; not only '*').",
            pattern=NAMES_SOMETHING,
        ),
    ] = None,
    lens: Annotated[
        str | None,
        Parameter(
            description="Lens, case-insensitive exact; '*' matches any run of characters "
            "(not only '*').",
            pattern=NAMES_SOMETHING,
        ),
    ] = None,
    bbox: Annotated[
        str | None,
        Parameter(
            description="Only positions in min_lat,min_lon,max_lat,max_lon (degrees). "
            "min_lon > max_lon is a box across the antimeridian; min_lat above max_lat "
            "answers 400.",
            pattern=BBOX_PATTERN,
            examples=[Example(value="45.8,5.9,47.8,10.5")],
        ),
    ] = None,
    near: Annotated[
        str | None,
        Parameter(
            description="Only positions within radius_km (great circle) of lat,lon "
            "(degrees). Needs radius_km: without it, 400.",
            pattern=NEAR_PATTERN,
            examples=[Example(value="48.8584,2.2945")],
        ),
    ] = None,
    radius_km: Annotated[
        float | None,
        Parameter(
            description="Radius in km for `near`: required with it, and only with it (400 "
            "otherwise).",
            gt=0,
            schema_extra={"exclusiveMinimum": 0},  # Litestar drops a 0 bound
            le=geo.MAX_RADIUS_KM,
        ),
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
            "(case-insensitive exact).",
            pattern=NOT_BLANK,
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        Parameter(
            description="Only contents tagged with this name (case-insensitive exact): "
            "the items whose `tags` hold it: a user's tag (POST /photos/{hash}/tags), or "
            "a face, not rejected, of a person so named (an alias of `person=NAME`, "
            "except that a hidden person, or the old name of one merged into another, is "
            "no tag). Repeat it for several: see `tag_mode`.",
            schema_extra={"items": {"type": "string", "pattern": NOT_BLANK}},
        ),
    ] = None,
    tag_mode: Annotated[
        Literal["and", "or"],
        Parameter(description="With several `tag`: contents with all of them, or any."),
    ] = "and",
    favorite: Annotated[
        bool | None,
        Parameter(description="Only favourites (true) or only contents that are none (false)."),
    ] = None,
) -> Query:
    """The filters as a dependency (``Provide(photo_filters)``); a library name is
    resolved to its ids on the read model."""
    ids: list[str] | None = None
    if library is not None:
        if not library.strip():
            raise bad_parameter("library", "must be a library id or name")
        ids = await db.read(
            ctx.settings.readmodel_dir, lambda c: resolve_library(c, library), [library]
        )
    return build_query(
        library=ids, media_kind=media_kind, path_prefix=path_prefix,
        taken_from=taken_from, taken_to=taken_to, make=make, model=model, lens=lens,
        bbox=bbox, near=near, radius_km=radius_km, has_gps=has_gps, orientation=orientation,
        person=person, tag=tag, tag_mode=tag_mode, favorite=favorite,
    )  # fmt: skip


def filter_dependencies() -> dict[str, Provide]:
    """``dependencies=`` for a handler that takes ``filters: Query``."""
    return {"filters": Provide(photo_filters)}
