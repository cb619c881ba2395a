"""People and faces: GET /people, /people/{id}, /people/{id}/photos, the decisions
(PATCH /people/{id}, POST /people/{id}/merge, POST /faces/{id}/reassign,
POST /faces/{id}/reject) and GET /faces, /faces/{id}, /faces/{id}/thumbnail (a crop).
The SQL is in :mod:`projections.api.people_queries`, the crop files in
:mod:`projections.api.crops`.

Decisions are published as events (the API never writes the read model); the projector
applies them so they win over the clusterer, on replay too.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from eventsvc.core.events import (
    Event,
    FaceReassigned,
    FaceRejected,
    PeopleMerged,
    PersonHidden,
    PersonNamed,
)
from projections.api import db
from projections.api import people_queries as q
from projections.api.context import ApiContext, Ctx
from projections.api.crops import make_crop
from projections.api.decisions import DECISION_RESPONSES, publish_decisions
from projections.api.errors import bad_parameter, error_responses
from projections.api.idempotency import IdempotencyKey, keyed_person_id
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
    PersonPhotoPage,
    ReassignRequest,
)
from projections.api.photos import check_hash
from projections.api.sendfile import BYTES_RESPONSES, send_file

__all__ = ["FacesController", "PeopleController", "check_person"]

PERSON_RE = full(PERSON_PATTERN)
FACE_RE = full(FACE_PATTERN)
PersonId = Annotated[str, Parameter(description="A person id.", pattern=PERSON_PATTERN)]
FaceId = Annotated[
    str, Parameter(description="A face id: <content_hash>-<6 hex>-<index>.", pattern=FACE_PATTERN)
]


def check_person(person_id: str, name: str = "person_id") -> str:
    if not PERSON_RE.fullmatch(person_id):
        raise bad_parameter(name, "must be a person id (p- and 16 hex characters)")
    return person_id


def _check_face(face_id: str) -> str:
    if not FACE_RE.fullmatch(face_id):
        raise bad_parameter("face_id", "must be a face id (<content_hash>-<6 hex>-<index>)")
    return face_id


# ------------------------------------------------------------------ decisions


async def _require_person(ctx: ApiContext, person_id: str, name: str = "person_id") -> str:
    """The live person meant by ``person_id`` (merges followed); 404 if unknown."""
    check_person(person_id, name)
    found = await db.read(
        ctx.settings.readmodel_dir, lambda c: q.resolve_person(c, person_id), None
    )
    if found is None:
        raise NotFoundException(detail=f"unknown person {person_id}")
    return str(found["person_id"])


async def _require_face(ctx: ApiContext, face_id: str) -> Face:
    _check_face(face_id)
    found = await db.read(ctx.settings.readmodel_dir, lambda c: q.get_face(c, face_id), None)
    if found is None:
        raise NotFoundException(detail=f"unknown face {face_id}")
    return found


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
            lambda c: q.list_people(c, hidden, named, after, limit + 1),
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
        check_person(person_id)
        found = await db.read(
            ctx.settings.readmodel_dir, lambda c: q.get_person(c, person_id), None
        )
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
        check_person(person_id)
        after = None
        if cursor is not None:
            after = decode_cursor(cursor).get("h")
            if not isinstance(after, str):
                raise bad_parameter("cursor", "not a cursor handed out by this API")
            check_hash(after, "cursor")
        found = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: q.person_photos(c, person_id, after, limit + 1),
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
        responses=DECISION_RESPONSES,
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
        seqs, dup = await publish_decisions(ctx, events, idempotency_key)
        return DecisionAccepted(seqs=seqs, duplicate=dup, person_id=target)

    @post(
        "/{person_id:str}/merge",
        status_code=202,
        summary="Merge people into this one",
        description="Publishes one PeopleMerged per person given: their faces, and any "
        "later automatic assignment to them, go to this person.",
        responses=DECISION_RESPONSES,
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
        seqs, dup = await publish_decisions(
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
            check_person(person, "person")
        if content_hash is not None:
            check_hash(content_hash)
        after = None
        if cursor is not None:
            after = decode_cursor(cursor).get("f")
            if not isinstance(after, str):
                raise bad_parameter("cursor", "not a cursor handed out by this API")
        found = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: q.list_faces(c, person, content_hash, unassigned, after, limit + 1),
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
        responses={**error_responses(400, 404), **BYTES_RESPONSES},
        operation_class=binary_operation(["image/jpeg"]),
    )
    async def face_thumbnail(
        self,
        ctx: Ctx,
        state: State,
        request: Request[Any, Any, Any],
        face_id: FaceId,
    ) -> Response[Any]:
        _check_face(face_id)
        src = await db.read(ctx.settings.readmodel_dir, lambda c: q.crop_sources(c, face_id), None)
        if src is None:
            raise NotFoundException(detail=f"unknown face {face_id}")
        decode = state.get("originals")  # the composition's OriginalDecoder, or None
        path = await asyncio.to_thread(
            make_crop, ctx.settings.thumbs_dir, face_id, src, ctx.roots, decode
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
        responses=DECISION_RESPONSES,
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
        seqs, dup = await publish_decisions(ctx, [ev], idempotency_key)
        return DecisionAccepted(seqs=seqs, duplicate=dup, person_id=target, face_id=face_id)

    @post(
        "/{face_id:str}/reject",
        status_code=202,
        summary="Not a face",
        description="Publishes FaceRejected: the face leaves its person and is never "
        "assigned again (a later reassign takes it back).",
        responses=DECISION_RESPONSES,
    )
    async def reject(
        self, ctx: Ctx, face_id: FaceId, idempotency_key: IdempotencyKey = None
    ) -> DecisionAccepted:
        face = await _require_face(ctx, face_id)
        seqs, dup = await publish_decisions(ctx, [FaceRejected(face_id=face_id)], idempotency_key)
        return DecisionAccepted(seqs=seqs, duplicate=dup, person_id=face.person_id, face_id=face_id)
