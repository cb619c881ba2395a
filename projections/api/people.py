"""People and faces: GET /people, /people/{id}, /people/{id}/photos, the decisions
(PATCH /people/{id}, POST /people/{id}/merge, POST /faces/{id}/reassign,
POST /faces/{id}/reject) and GET /faces, /faces/{id}, /faces/{id}/thumbnail (a crop).

Decisions are published as events (the API never writes the read model); the projector
applies them so they win over the clusterer, on replay too.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.exceptions import NotFoundException, ServiceUnavailableException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from PIL import Image

from eventsvc.core.errors import LogError, TransientError
from eventsvc.core.events import (
    Event,
    FaceReassigned,
    FaceRejected,
    PeopleMerged,
    PersonHidden,
    PersonNamed,
)
from eventsvc.core.ids import RAW_EXTENSIONS
from eventsvc.core.roots import LibraryRoots
from eventsvc.media import thumbs
from eventsvc.media.sandbox import DecodeFailed, DecodeSandbox, shared_sandbox
from projections.api import db
from projections.api.context import ApiContext, Ctx
from projections.api.errors import WRITES, bad_parameter, error_responses
from projections.api.idempotency import IdempotencyKey, decision_msg_id, keyed_person_id
from projections.api.paging import decode_cursor, encode_cursor
from projections.api.params import (
    CURSOR_PATTERN,
    FACE_PATTERN,
    HASH_PATTERN,
    PERSON_PATTERN,
    binary_operation,
    body_operation,
    decode_body,
    full,
)
from projections.api.people_schemas import (
    DecisionAccepted,
    Face,
    FacePage,
    MergeRequest,
    Person,
    PersonPage,
    PersonPatch,
    PersonPhoto,
    PersonPhotoPage,
    ReassignRequest,
)
from projections.api.photos import _BYTES_RESPONSES, _rel_bytes, check_hash
from projections.api.schemas import ErrorDetail
from projections.api.sendfile import open_location, send_file

__all__ = ["FacesController", "PeopleController"]

PERSON_RE = full(PERSON_PATTERN)
FACE_RE = full(FACE_PATTERN)
PersonId = Annotated[str, Parameter(description="A person id.", pattern=PERSON_PATTERN)]
FaceId = Annotated[
    str, Parameter(description="A face id: <content_hash>-<6 hex>-<index>.", pattern=FACE_PATTERN)
]
CROP_EDGE = 256
_FACE_COLS = "face_id, content_hash, model, box, score, landmarks, person_id, assigned_by, rejected"


def _check_person(person_id: str, name: str = "person_id") -> str:
    if not PERSON_RE.fullmatch(person_id):
        raise bad_parameter(name, "must be a person id (p- and 16 hex characters)")
    return person_id


def _check_face(face_id: str) -> str:
    if not FACE_RE.fullmatch(face_id):
        raise bad_parameter("face_id", "must be a face id (<content_hash>-<6 hex>-<index>)")
    return face_id


def _face(r: sqlite3.Row) -> Face:
    return Face(
        face_id=r["face_id"], content_hash=r["content_hash"], model=r["model"],
        box=json.loads(r["box"]), score=r["score"], landmarks=json.loads(r["landmarks"]),
        person_id=r["person_id"], assigned_by=r["assigned_by"], rejected=bool(r["rejected"]),
        thumbnail=f"/faces/{r['face_id']}/thumbnail",
    )  # fmt: skip


def _resolve(conn: sqlite3.Connection, person_id: str) -> sqlite3.Row | None:
    """The person row meant by an id (merges followed), or None."""
    row = conn.execute(
        "SELECT coalesce(merged_into, person_id) AS pid FROM people WHERE person_id = ?",
        (person_id,),
    ).fetchone()
    if row is None:
        return None
    return conn.execute(  # type: ignore[no-any-return]
        "SELECT person_id, name, hidden FROM people WHERE person_id = ?", (row["pid"],)
    ).fetchone()


def _person(conn: sqlite3.Connection, p: sqlite3.Row, n: int, photos: int) -> Person:
    cover = conn.execute(
        f"SELECT {_FACE_COLS} FROM faces WHERE person_id = ? AND rejected = 0"
        " ORDER BY area * score DESC, face_id LIMIT 1",
        (p["person_id"],),
    ).fetchone()
    return Person(
        person_id=p["person_id"], name=p["name"], hidden=bool(p["hidden"]), face_count=n,
        photo_count=photos, cover=_face(cover) if cover is not None else None,
    )  # fmt: skip


def _list_people(
    conn: sqlite3.Connection,
    hidden: bool,
    named: bool | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[Person]:
    where = ["p.merged_into IS NULL"]
    if not hidden:
        where.append("p.hidden = 0")
    if named is not None:
        where.append(f"p.name IS {'NOT ' if named else ''}NULL")
    having, params = "", []
    if after is not None:
        having = " HAVING n < ? OR (n = ? AND p.person_id > ?)"
        params = [after[0], after[0], after[1]]
    found = conn.execute(
        "SELECT p.person_id, p.name, p.hidden, count(*) AS n,"
        " count(DISTINCT f.content_hash) AS photos FROM people AS p"
        " JOIN faces AS f ON f.person_id = p.person_id AND f.rejected = 0"
        f" WHERE {' AND '.join(where)} GROUP BY p.person_id{having}"
        " ORDER BY n DESC, p.person_id LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [_person(conn, r, r["n"], r["photos"]) for r in found]


def _get_person(conn: sqlite3.Connection, person_id: str) -> Person | None:
    p = _resolve(conn, person_id)
    if p is None:
        return None
    n, photos = conn.execute(
        "SELECT count(*), count(DISTINCT content_hash) FROM faces"
        " WHERE person_id = ? AND rejected = 0",
        (p["person_id"],),
    ).fetchone()
    return _person(conn, p, n, photos)


def _person_photos(
    conn: sqlite3.Connection, person_id: str, after: str | None, limit: int
) -> list[PersonPhoto] | None:
    p = _resolve(conn, person_id)
    if p is None:
        return None
    found = conn.execute(
        f"SELECT {_FACE_COLS} FROM faces WHERE person_id = ? AND rejected = 0"
        + (" AND content_hash > ?" if after else "")
        + " ORDER BY content_hash, face_id",
        [p["person_id"], *([after] if after else [])],
    )
    by_content: dict[str, list[Face]] = {}
    for r in found:
        if r["content_hash"] not in by_content and len(by_content) == limit:
            break
        by_content.setdefault(r["content_hash"], []).append(_face(r))
    out = []
    for h, faces in by_content.items():
        t = conn.execute("SELECT sizes FROM thumbnails WHERE content_hash = ?", (h,)).fetchone()
        taken = conn.execute(
            "SELECT min(date_taken) FROM files WHERE content_hash = ?", (h,)
        ).fetchone()[0]
        sizes = json.loads(t["sizes"]) if t is not None else {}
        thumb = f"/photos/{h}/thumbnail?size=small" if "small" in sizes else None
        out.append(PersonPhoto(content_hash=h, thumbnail=thumb, date_taken=taken, faces=faces))
    return out


def _list_faces(
    conn: sqlite3.Connection,
    person: str | None,
    content_hash: str | None,
    unassigned: bool | None,
    after: str | None,
    limit: int,
) -> list[Face] | None:
    where, params = [], []
    if person is not None:
        p = _resolve(conn, person)
        if p is None:
            return None
        where.append("person_id = ?")
        params.append(p["person_id"])
    if content_hash is not None:
        where.append("content_hash = ?")
        params.append(content_hash)
    if unassigned is not None:
        where.append(f"person_id IS {'' if unassigned else 'NOT '}NULL AND rejected = 0")
    if after is not None:
        where.append("face_id > ?")
        params.append(after)
    sql = f"SELECT {_FACE_COLS} FROM faces" + (f" WHERE {' AND '.join(where)}" if where else "")
    return [_face(r) for r in conn.execute(sql + " ORDER BY face_id LIMIT ?", [*params, limit])]


def _get_face(conn: sqlite3.Connection, face_id: str) -> Face | None:
    r = conn.execute(f"SELECT {_FACE_COLS} FROM faces WHERE face_id = ?", (face_id,)).fetchone()
    return _face(r) if r is not None else None


# ------------------------------------------------------------------ crops


def crop_path(thumbs_dir: Path, face_id: str) -> Path:
    return Path(thumbs_dir) / "faces" / face_id[:2] / f"{face_id}.jpg"


def _sources(conn: sqlite3.Connection, face_id: str) -> dict[str, Any] | None:
    r = conn.execute("SELECT content_hash, box FROM faces WHERE face_id = ?", (face_id,)).fetchone()
    if r is None:
        return None
    t = conn.execute(
        "SELECT sizes FROM thumbnails WHERE content_hash = ?", (r["content_hash"],)
    ).fetchone()
    locs = conn.execute(
        "SELECT f.library_id, f.path, f.raw_path, f.size, f.mtime_ns, l.root FROM files AS f"
        " LEFT JOIN libraries AS l USING (library_id) WHERE f.content_hash = ?"
        " ORDER BY f.library_id, f.path",
        (r["content_hash"],),
    ).fetchall()
    return {
        "box": json.loads(r["box"]),
        "sizes": json.loads(t["sizes"]) if t is not None else {},
        "locations": [dict(x) | {"rel": _rel_bytes(x)} for x in locs],
    }


def _is_raw(loc: dict[str, Any]) -> bool:
    return os.path.splitext(str(loc.get("path") or ""))[1].lower() in RAW_EXTENSIONS


def _source_image(
    thumbs_dir: Path,
    src: dict[str, Any],
    roots: LibraryRoots | None = None,
    sandbox: DecodeSandbox | None = None,
) -> Image.Image:
    """The largest thumbnail (our own JPEG, 1440 px: more than the faces worker saw),
    else the original (first live location, opened under its configured root only),
    decoded in the decode sandbox: the API process never decodes an original itself."""
    sizes = src["sizes"] if isinstance(src["sizes"], dict) else {}
    for name in sorted(sizes, key=lambda n: -thumbs.SIZES.get(n, 0)):
        path = (Path(thumbs_dir) / sizes[name]).resolve()
        if path.is_relative_to(Path(thumbs_dir).resolve()) and path.is_file():
            with Image.open(path, formats=["JPEG"]) as img:
                return img.convert("RGB")
    from eventsvc.media.load import load_upright

    for loc in src["locations"]:  # opened under its configured root only
        opened = open_location(roots, loc["library_id"], loc["rel"], loc["size"], loc["mtime_ns"])
        if isinstance(opened, str):
            continue
        with opened:
            if sandbox is None:
                raise NotFoundException(detail="no thumbnail to crop the face from yet")
            try:
                return load_upright(
                    "faces", opened.fileno(), 1440, raw=_is_raw(loc), sandbox=sandbox
                )
            except (DecodeFailed, TransientError) as exc:
                raise NotFoundException(detail=f"the photo cannot be decoded: {exc}") from exc
    raise NotFoundException(detail="no thumbnail and no live location to crop the face from")


def make_crop(
    thumbs_dir: Path,
    face_id: str,
    src: dict[str, Any],
    roots: LibraryRoots | None = None,
    sandbox: DecodeSandbox | None = None,
) -> Path:
    """Crop the face (with a margin), at most CROP_EDGE px, cached under thumbs_dir/faces."""
    target = crop_path(thumbs_dir, face_id)
    if target.is_file():
        return target
    img = _source_image(thumbs_dir, src, roots, sandbox)
    w, h = img.size
    left, top, right, bottom = src["box"]
    cx, cy = (left + right) / 2 * w, (top + bottom) / 2 * h
    half = max((right - left) * w, (bottom - top) * h) * 0.8
    box = (
        max(int(cx - half), 0), max(int(cy - half), 0),
        min(int(cx + half), w), min(int(cy + half), h),
    )  # fmt: skip
    if box[2] <= box[0] or box[3] <= box[1]:
        raise NotFoundException(detail=f"face {face_id} has an empty box")
    crop = img.crop(box)
    crop.thumbnail((CROP_EDGE, CROP_EDGE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=88)
    thumbs.write_atomic(target, buf.getvalue())
    return target


# ------------------------------------------------------------------ decisions


async def _publish(
    ctx: ApiContext, events: list[Event], key: str | None = None
) -> tuple[list[int], bool]:
    event_log = ctx.event_log
    if event_log is None or not event_log.nc.is_connected:
        why = ctx.nats_error or "NATS connection lost"
        raise ServiceUnavailableException(detail=f"cannot record the decision: {why}")
    seqs, dup = [], True
    try:
        for ev in events:
            published = await event_log.publish(
                ev, msg_id=decision_msg_id(ev, key), dedupe_after=0 if key else None
            )
            seqs.append(published.seq)
            dup = dup and published.duplicate
    except LogError as exc:
        raise ServiceUnavailableException(detail=f"cannot record the decision: {exc}") from exc
    return seqs, dup


async def _require_person(ctx: ApiContext, person_id: str, name: str = "person_id") -> str:
    """The live person meant by ``person_id`` (merges followed); 404 if unknown."""
    _check_person(person_id, name)
    found = await db.read(ctx.settings.readmodel_dir, lambda c: _resolve(c, person_id), None)
    if found is None:
        raise NotFoundException(detail=f"unknown person {person_id}")
    return str(found["person_id"])


async def _require_face(ctx: ApiContext, face_id: str) -> Face:
    _check_face(face_id)
    found = await db.read(ctx.settings.readmodel_dir, lambda c: _get_face(c, face_id), None)
    if found is None:
        raise NotFoundException(detail=f"unknown face {face_id}")
    return found


_DECISION_RESPONSES = {
    **error_responses(400, 404, *WRITES),
    503: ResponseSpec(
        ErrorDetail, description="No NATS connection (or the publish failed), or no read model."
    ),
}


class PeopleController(Controller):
    path = "/people"
    tags = ("people",)

    @get(
        "/",
        summary="People",
        description="People with at least one face, most faces first (then id); hidden "
        "people only with hidden=true. Each has its name, face and photo counts and a "
        "cover face (largest box x detector score).",
        responses=error_responses(400),
    )
    async def list_people(
        self,
        ctx: Ctx,
        hidden: Annotated[bool, Parameter(description="Include hidden people.")] = False,
        named: Annotated[
            bool | None, Parameter(description="Only named (true) or unnamed (false) people.")
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size.")] = 100,
        cursor: Annotated[
            str | None,
            Parameter(description="The `next` of the previous page.", pattern=CURSOR_PATTERN),
        ] = None,
    ) -> PersonPage:
        after = None
        if cursor is not None:
            data = decode_cursor(cursor)
            if type(data.get("n")) is not int or not isinstance(data.get("id"), str):
                raise bad_parameter("cursor", "not a people cursor handed out by this API")
            after = (data["n"], data["id"])
        found = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: _list_people(c, hidden, named, after, limit + 1),
            [],
        )
        nxt = None
        if len(found) > limit:
            last = found[limit - 1]
            nxt = encode_cursor({"n": last.face_count, "id": last.person_id})
        return PersonPage(items=found[:limit], next=nxt)

    @get(
        "/{person_id:str}",
        summary="One person",
        description="A merged person's id answers the person it was merged into.",
        responses=error_responses(400, 404),
    )
    async def get_person(self, ctx: Ctx, person_id: PersonId) -> Person:
        _check_person(person_id)
        found = await db.read(ctx.settings.readmodel_dir, lambda c: _get_person(c, person_id), None)
        if found is None:
            raise NotFoundException(detail=f"unknown person {person_id}")
        return found

    @get(
        "/{person_id:str}/photos",
        summary="A person's photos",
        description="Contents showing the person, by content hash, each with the person's "
        "faces in it. For file locations with the other filters use GET /photos?person=.",
        responses=error_responses(400, 404),
    )
    async def person_photos(
        self,
        ctx: Ctx,
        person_id: PersonId,
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size.")] = 100,
        cursor: Annotated[
            str | None,
            Parameter(description="The `next` of the previous page.", pattern=CURSOR_PATTERN),
        ] = None,
    ) -> PersonPhotoPage:
        _check_person(person_id)
        after = None
        if cursor is not None:
            after = decode_cursor(cursor).get("h")
            if not isinstance(after, str):
                raise bad_parameter("cursor", "not a cursor handed out by this API")
            check_hash(after, "cursor")
        found = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: _person_photos(c, person_id, after, limit + 1),
            None,
        )
        if found is None:
            raise NotFoundException(detail=f"unknown person {person_id}")
        nxt = encode_cursor({"h": found[limit - 1].content_hash}) if len(found) > limit else None
        return PersonPhotoPage(items=found[:limit], next=nxt)

    @patch(
        "/{person_id:str}",
        status_code=202,
        summary="Name, hide or show a person",
        description="Publishes PersonNamed and/or PersonHidden. A named person's photos "
        "match GET /photos?person=<name>.",
        responses=_DECISION_RESPONSES,
        operation_class=body_operation("PersonPatch"),
    )
    async def patch_person(
        self,
        ctx: Ctx,
        person_id: PersonId,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
    ) -> DecisionAccepted:
        import msgspec

        data = await decode_body(request, PersonPatch)
        target = await _require_person(ctx, person_id)
        events: list[Event] = []
        if data.name is not msgspec.UNSET:
            name = (data.name or "").strip() or None
            if name is not None and len(name) > 200:
                raise bad_parameter("name", "at most 200 characters")
            events.append(PersonNamed(person_id=target, name=name))
        if data.hidden is not msgspec.UNSET:
            events.append(PersonHidden(person_id=target, hidden=bool(data.hidden)))
        if not events:
            raise bad_parameter("body", "give name and/or hidden")
        seqs, dup = await _publish(ctx, events, idempotency_key)
        return DecisionAccepted(seqs=seqs, duplicate=dup, person_id=target)

    @post(
        "/{person_id:str}/merge",
        status_code=202,
        summary="Merge people into this one",
        description="Publishes one PeopleMerged per person given: their faces, and any "
        "later automatic assignment to them, go to this person.",
        responses=_DECISION_RESPONSES,
        operation_class=body_operation("MergeRequest"),
    )
    async def merge(
        self,
        ctx: Ctx,
        person_id: PersonId,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
    ) -> DecisionAccepted:
        data = await decode_body(request, MergeRequest)
        target = await _require_person(ctx, person_id)
        sources = []
        for other in data.people:
            src = await _require_person(ctx, other, "people")
            if src == target:
                raise bad_parameter("people", f"{other} is already this person")
            if src not in sources:
                sources.append(src)
        seqs, dup = await _publish(
            ctx, [PeopleMerged(source=src, target=target) for src in sources], idempotency_key
        )
        return DecisionAccepted(seqs=seqs, duplicate=dup, person_id=target)


class FacesController(Controller):
    path = "/faces"
    tags = ("people",)

    @get(
        "/",
        summary="Faces",
        description="Detected faces by id, filtered by person, photo or assignment.",
        responses=error_responses(400, 404),
    )
    async def list_faces(
        self,
        ctx: Ctx,
        person: Annotated[
            str | None,
            Parameter(description="Only this person's faces (an id).", pattern=PERSON_PATTERN),
        ] = None,
        content_hash: Annotated[
            str | None, Parameter(description="Only this photo's.", pattern=HASH_PATTERN)
        ] = None,
        unassigned: Annotated[
            bool | None,
            Parameter(description="Only faces without (true) or with (false) a person."),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size.")] = 100,
        cursor: Annotated[
            str | None,
            Parameter(description="The `next` of the previous page.", pattern=CURSOR_PATTERN),
        ] = None,
    ) -> FacePage:
        if person is not None:
            _check_person(person, "person")
        if content_hash is not None:
            check_hash(content_hash)
        after = None
        if cursor is not None:
            after = decode_cursor(cursor).get("f")
            if not isinstance(after, str):
                raise bad_parameter("cursor", "not a cursor handed out by this API")
        found = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: _list_faces(c, person, content_hash, unassigned, after, limit + 1),
            [],
        )
        if found is None:
            raise NotFoundException(detail=f"unknown person {person}")
        nxt = encode_cursor({"f": found[limit - 1].face_id}) if len(found) > limit else None
        return FacePage(items=found[:limit], next=nxt)

    @get("/{face_id:str}", summary="One face", responses=error_responses(400, 404))
    async def get_face(self, ctx: Ctx, face_id: FaceId) -> Face:
        return await _require_face(ctx, face_id)

    @get(
        "/{face_id:str}/thumbnail",
        summary="The face, cropped",
        description="A JPEG crop around the face (at most 256 px), from the photo's largest "
        "thumbnail, else its original; cached under the thumbnail store.",
        media_type="image/jpeg",
        response_description="The crop (image/jpeg).",
        responses={**error_responses(400, 404), **_BYTES_RESPONSES},
        operation_class=binary_operation(["image/jpeg"]),
    )
    async def face_thumbnail(
        self,
        ctx: Ctx,
        request: Request[Any, Any, Any],
        face_id: FaceId,
    ) -> Response[Any]:
        _check_face(face_id)
        src = await db.read(ctx.settings.readmodel_dir, lambda c: _sources(c, face_id), None)
        if src is None:
            raise NotFoundException(detail=f"unknown face {face_id}")
        box = shared_sandbox(ctx.settings)
        path = await asyncio.to_thread(
            make_crop, ctx.settings.thumbs_dir, face_id, src, ctx.roots, box
        )
        f = open(path, "rb", buffering=0)  # closed by the response
        st = os.fstat(f.fileno())
        return send_file(
            request, f, size=st.st_size, media_type="image/jpeg",
            etag=f'"{face_id}-{st.st_size:x}"',
            headers={"Cache-Control": "private, max-age=31536000, immutable"},
        )  # fmt: skip

    @post(
        "/{face_id:str}/reassign",
        status_code=202,
        summary="Move a face to a person (the split)",
        description="Publishes FaceReassigned: the face belongs to person_id (or, with "
        "new_person, to a new person whose id is answered) whatever the clusterer says.",
        responses=_DECISION_RESPONSES,
        operation_class=body_operation("ReassignRequest"),
    )
    async def reassign(
        self,
        ctx: Ctx,
        face_id: FaceId,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
    ) -> DecisionAccepted:
        data = await decode_body(request, ReassignRequest)
        await _require_face(ctx, face_id)
        if data.new_person == (data.person_id is not None):
            raise bad_parameter("body", "give either person_id or new_person=true")
        if data.new_person and idempotency_key is not None:
            target = keyed_person_id(face_id, idempotency_key)  # a retry: the same person
        elif data.new_person:
            target = "p-" + secrets.token_hex(8)
        else:
            target = await _require_person(ctx, str(data.person_id))
        ev = FaceReassigned(face_id=face_id, person_id=target, new_person=data.new_person)
        seqs, dup = await _publish(ctx, [ev], idempotency_key)
        return DecisionAccepted(seqs=seqs, duplicate=dup, person_id=target, face_id=face_id)

    @post(
        "/{face_id:str}/reject",
        status_code=202,
        summary="Not a face",
        description="Publishes FaceRejected: the face leaves its person and is never "
        "assigned again (a later reassign takes it back).",
        responses=_DECISION_RESPONSES,
    )
    async def reject(
        self, ctx: Ctx, face_id: FaceId, idempotency_key: IdempotencyKey = None
    ) -> DecisionAccepted:
        face = await _require_face(ctx, face_id)
        seqs, dup = await _publish(ctx, [FaceRejected(face_id=face_id)], idempotency_key)
        return DecisionAccepted(seqs=seqs, duplicate=dup, person_id=face.person_id, face_id=face_id)
