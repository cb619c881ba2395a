"""``/photo/{content_hash}``: one photo or video, its facts, faces and neighbours.

``?f=<file_id>`` plus the timeline's filters and sort name the listing the photo was
opened from: previous and next are that listing's neighbours (arrow keys). Near
duplicates are a fragment (``/web/photo/{hash}/near``) loaded after the page; the
"similar" strip is fetched by app.js from ``/photos/{hash}/similar`` (CLIP).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter
from litestar.response import Template

from eventsvc.core.settings import Settings
from projections import near
from projections.api import db
from projections.api.context import Ctx
from projections.api.filters import Query
from projections.api.photo_queries import check_hash, list_rows, photo_detail
from projections.api.redact import redacted
from projections.api.schemas import PhotoDetail
from projections.api.tags import ContentTags, content_tags
from projections.api.videos import video_state
from projections.web.common import PAGE_HEADERS, page
from projections.web.filters import Form, parse_form
from projections.web.render import with_query
from projections.web.search import embedding_known

__all__ = ["NEAR_DISTANCE", "PhotoPages", "near_duplicates", "neighbours"]

NEAR_DISTANCE = 6
"""Hamming distance of perceptual hashes shown as near duplicates (the API's default)."""
_REVERSE = {"taken": "-taken", "-taken": "taken", "path": "-path", "-path": "path",
            "mtime": "-mtime", "-mtime": "mtime"}  # fmt: skip
_KEY = {"path": "path", "mtime": "mtime_ns", "taken": "date_taken"}


@dataclass
class FaceBox:
    face_id: str
    box: list[float]
    person_id: str | None
    name: str | None
    assigned_by: str | None


@dataclass
class View:
    detail: PhotoDetail
    video: Any = None
    faces: list[FaceBox] = field(default_factory=list)
    people: list[tuple[str, str]] = field(default_factory=list)
    """(person_id, name) of the named, visible people: the name choices."""
    libraries: dict[str, str] = field(default_factory=dict)
    prev: str | None = None
    next: str | None = None
    error: str | None = None
    tags: ContentTags | None = None
    """The content's tags with their sources, and whether it is a favourite (issue 16)."""


def _step(
    conn: sqlite3.Connection, q: Query, sort: str, row: sqlite3.Row, forward: bool
) -> str | None:
    """The file id next to ``row`` in the ``sort`` listing (``forward``: after it)."""
    key = row[_KEY[sort.lstrip("-")]]
    if forward:
        found = list_rows(conn, q, sort, (key, row["file_id"]), 1)  # type: ignore[arg-type]
    else:
        rev = _REVERSE[sort]
        if sort.lstrip("-") == "taken" and key is None:
            # Undated rows come last in both directions: before an undated row is the
            # previous undated one, else the last dated row of the listing.
            found = list_rows(conn, q, rev, (None, row["file_id"]), 1)  # type: ignore[arg-type]
            if not found:
                found = [
                    r
                    for r in list_rows(conn, q, rev, None, 1)  # type: ignore[arg-type]
                    if r["date_taken"] is not None
                ]
        else:
            found = list_rows(conn, q, rev, (key, row["file_id"]), 1)  # type: ignore[arg-type]
            if sort.lstrip("-") == "taken" and found and found[0]["date_taken"] is None:
                found = []  # undated rows are not before the first dated one
    if not found:
        return None
    return f"{found[0]['content_hash']}|{found[0]['file_id']}" if found[0]["content_hash"] else None


def neighbours(conn: sqlite3.Connection, form: Form, file_id: str) -> tuple[str | None, str | None]:
    """(previous, next) as ``content_hash|file_id`` in the listing ``form`` describes."""
    row = conn.execute(
        "SELECT file_id, path, mtime_ns, date_taken FROM files WHERE file_id = ?", (file_id,)
    ).fetchone()
    if row is None:
        return None, None
    q = form.query(conn)
    return _step(conn, q, form.sort, row, False), _step(conn, q, form.sort, row, True)


def _faces(conn: sqlite3.Connection, content_hash: str) -> list[FaceBox]:
    out = []
    for r in conn.execute(
        "SELECT fc.face_id, fc.box, fc.person_id, fc.assigned_by, p.name FROM faces AS fc"
        " LEFT JOIN people AS p ON p.person_id = fc.person_id"
        " WHERE fc.content_hash = ? AND fc.rejected = 0 ORDER BY fc.face_id",
        (content_hash,),
    ):
        try:
            box = [float(x) for x in json.loads(r["box"])]
        except (ValueError, TypeError):
            continue
        if len(box) == 4:
            out.append(FaceBox(r["face_id"], box, r["person_id"], r["name"], r["assigned_by"]))
    return out


def _view(
    conn: sqlite3.Connection, settings: Settings, content_hash: str, form: Form,
    file_id: str | None,
) -> View | None:  # fmt: skip
    detail = redacted(settings, conn, photo_detail(content_hash, conn), "decode_error")
    if detail is None:
        return None
    v = View(detail=detail)
    if detail.media_kind == "video":
        v.video = redacted(settings, conn, video_state(conn, content_hash), "reason")
    v.faces = _faces(conn, content_hash)
    v.tags = content_tags(conn, content_hash)
    v.people = [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT person_id, name FROM people WHERE name IS NOT NULL AND hidden = 0"
            " AND merged_into IS NULL ORDER BY name COLLATE NOCASE"
        )
    ]
    v.libraries = dict(conn.execute("SELECT library_id, name FROM libraries").fetchall())
    if file_id is None and detail.locations:
        file_id = detail.locations[0].file_id
    if file_id is not None:
        try:
            v.prev, v.next = neighbours(conn, form, file_id)
        except ClientException as exc:
            v.error = str(exc.detail)
    return v


def near_duplicates(conn: sqlite3.Connection, content_hash: str) -> list[dict[str, Any]]:
    """Contents whose perceptual hash is within NEAR_DISTANCE of this one's, nearest first,
    less the pairs marked "not a duplicate"."""
    row = conn.execute(
        "SELECT phash FROM content WHERE content_hash = ?", (content_hash,)
    ).fetchone()
    if row is None or not row["phash"]:
        return []
    found = [
        r
        for r in conn.execute(
            "SELECT content_hash, phash FROM content WHERE phash IS NOT NULL AND content_hash != ?",
            (content_hash,),
        )
        if len(r["phash"]) == 16
    ]
    if not found:
        return []
    try:
        mine = near.to_uint64([row["phash"]])
        theirs = near.to_uint64([r["phash"] for r in found])
    except ValueError:
        return []
    dist = near.popcount64(np.bitwise_xor(theirs, mine[0]))
    hits = sorted(
        (int(d), found[i]["content_hash"]) for i, d in enumerate(dist) if d <= NEAR_DISTANCE
    )
    if not hits:
        return []
    refused = {
        r[0] if r[1] == content_hash else r[1]
        for r in conn.execute(
            "SELECT a, b FROM not_duplicates WHERE a = ? OR b = ?", (content_hash, content_hash)
        )
    }
    out = []
    for d, h in hits[:24]:
        if h in refused:
            continue
        thumb = conn.execute(
            "SELECT f.path, t.sizes FROM files AS f LEFT JOIN thumbnails AS t"
            " ON t.content_hash = f.content_hash WHERE f.content_hash = ? LIMIT 1",
            (h,),
        ).fetchone()
        has_small = bool(thumb and thumb["sizes"] and '"small"' in thumb["sizes"])
        out.append({
            "content_hash": h, "distance": d, "path": thumb["path"] if thumb else h[:12],
            "thumbnail": f"/photos/{h}/thumbnail?size=small" if has_small else None,
        })  # fmt: skip
    return out


def _link(value: str | None, form: Form) -> str | None:
    if value is None:
        return None
    h, _, f = value.partition("|")
    return with_query(f"/photo/{h}", form.params(f=f))


class PhotoPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/photo/{content_hash:str}", name="web-photo")
    async def photo(
        self, request: Request[Any, Any, Any], ctx: Ctx, state: State,
        content_hash: Annotated[str, Parameter(description="BLAKE3 hex of the content.")],
        f: Annotated[str | None, Parameter(description="The file id opened.")] = None,
    ) -> Template:  # fmt: skip
        check_hash(content_hash)
        form = parse_form(request)
        settings = ctx.settings
        view = await db.read(
            settings.readmodel_dir,
            lambda c: _view(c, settings, content_hash, form, f),
            None,
        )
        if view is None:
            raise NotFoundException(detail=f"unknown content_hash {content_hash}")
        p = view.detail
        words = (request.query_params.get("q") or "").strip()[:1000]  # opened from a search
        similar = p.media_kind == "image" and await embedding_known(state, settings, content_hash)
        return page(
            request, "photo.html", "timeline", p=p, v=view, form=form,
            prev_url=None if words else _link(view.prev, form),
            next_url=None if words else _link(view.next, form),
            back_url=with_query("/search", form.params(q=words)) if words
            else with_query("/", form.params()),
            similar=similar,
            title=p.locations[0].path.rsplit("/", 1)[-1] if p.locations else content_hash[:12],
        )  # fmt: skip

    @get("/web/photo/{content_hash:str}/near", name="web-photo-near")
    async def near(
        self, ctx: Ctx, content_hash: Annotated[str, Parameter(description="BLAKE3 hex.")]
    ) -> Template:
        check_hash(content_hash)
        found = await db.read(
            ctx.settings.readmodel_dir, lambda c: near_duplicates(c, content_hash), []
        )
        return Template(
            template_name="photo_near.html",
            context={"items": found, "max_distance": NEAR_DISTANCE},
            headers=PAGE_HEADERS,
        )
