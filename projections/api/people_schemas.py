"""Response and request schemas of the people and faces endpoints (msgspec Structs).

(No ``from __future__ import annotations`` here: the Annotated metadata is read at runtime.)
"""

from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = [
    "DecisionAccepted",
    "Face",
    "FacePage",
    "MergeRequest",
    "Person",
    "PersonPage",
    "PersonPatch",
    "PersonPhoto",
    "PersonPhotoPage",
    "ReassignRequest",
]

NEXT = "Opaque cursor for the next page (pass it as `cursor`); null on the last page."


class Face(msgspec.Struct):
    """One detected face."""

    face_id: Annotated[str, Meta(description="Stable id: <content_hash>-<model token>-<index>.")]
    content_hash: Annotated[str, Meta(description="The photo (BLAKE3 of its bytes).")]
    model: Annotated[str, Meta(description="The face model that found it.")]
    box: Annotated[
        list[float], Meta(description="[left, top, right, bottom], relative to the upright photo.")
    ]
    score: Annotated[float, Meta(description="Detector score.")]
    landmarks: Annotated[list[list[float]], Meta(description="Five [x, y] points, relative.")]
    person_id: Annotated[str | None, Meta(description="Its person; null when unassigned.")]
    assigned_by: Annotated[
        str | None, Meta(description="'auto' (the clusterer) or 'user' (a decision).")
    ]
    rejected: Annotated[bool, Meta(description="Marked 'not a face' by a user.")]
    thumbnail: Annotated[str, Meta(description="URL path of the face crop.")]


class Person(msgspec.Struct):
    """A person: faces the clusterer (or a user) put together."""

    person_id: Annotated[str, Meta(description="Stable id (p-<16 hex>).")]
    name: Annotated[str | None, Meta(description="The name a user gave; null until named.")]
    hidden: Annotated[bool, Meta(description="Hidden by a user (left out of GET /people).")]
    face_count: Annotated[int, Meta(description="Faces in this person (rejected ones left out).")]
    photo_count: Annotated[int, Meta(description="Distinct photos (contents) with such a face.")]
    cover: Annotated[Face | None, Meta(description="The largest, surest face of the person.")]


class PersonPage(msgspec.Struct):
    items: Annotated[list[Person], Meta(description="People, most faces first.")]
    next: Annotated[str | None, Meta(description=NEXT)]


class FacePage(msgspec.Struct):
    items: Annotated[list[Face], Meta(description="Faces, by id.")]
    next: Annotated[str | None, Meta(description=NEXT)]


class PersonPhoto(msgspec.Struct):
    content_hash: Annotated[str, Meta(description="The photo (BLAKE3 of its bytes).")]
    thumbnail: Annotated[str | None, Meta(description="URL path of its small thumbnail.")]
    date_taken: Annotated[str | None, Meta(description="Earliest date taken of its locations.")]
    faces: Annotated[list[Face], Meta(description="The person's faces in this photo.")]


class PersonPhotoPage(msgspec.Struct):
    items: Annotated[list[PersonPhoto], Meta(description="Photos, by content hash.")]
    next: Annotated[str | None, Meta(description=NEXT)]


class PersonPatch(msgspec.Struct, forbid_unknown_fields=True):
    """What to change; fields left out stay as they are."""

    name: Annotated[
        Annotated[str, Meta(max_length=200)] | msgspec.UnsetType | None,
        Meta(description="A name, at most 200 characters (null or '' clears it)."),
    ] = msgspec.UNSET
    hidden: Annotated[bool | msgspec.UnsetType, Meta(description="Hide or show.")] = msgspec.UNSET


class MergeRequest(msgspec.Struct, forbid_unknown_fields=True):
    people: Annotated[
        list[str], Meta(min_length=1, description="Person ids merged into the one in the path.")
    ]


class ReassignRequest(msgspec.Struct, forbid_unknown_fields=True):
    person_id: Annotated[
        str | None, Meta(description="The person the face belongs to (null with new_person).")
    ] = None
    new_person: Annotated[
        bool, Meta(description="Split: the face starts a new person (its id is answered).")
    ] = False


class DecisionAccepted(msgspec.Struct):
    """Decisions are events: they take effect once the projector applied them (seq)."""

    seqs: Annotated[list[int], Meta(description="Stream sequences of the published events.")]
    duplicate: Annotated[bool, Meta(description="Every event was a duplicate publish.")]
    person_id: Annotated[str | None, Meta(description="The person decided on (or created).")]
    face_id: Annotated[str | None, Meta(description="The face decided on, if any.")] = None
