"""Faces and people: what the face deriver found, what the clusterer made of it, and the
user's decisions about people, faces and duplicate pairs (decisions always win over
automatic results, on replay too)."""

from __future__ import annotations

import hashlib
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from eventsvc.core.events.base import Event
from eventsvc.core.events.derived import DeriverVersion

__all__ = [
    "FaceAssigned",
    "FaceBox",
    "FaceReassigned",
    "FaceRejected",
    "FacesDetected",
    "NotDuplicate",
    "PeopleMerged",
    "PersonCreated",
    "PersonHidden",
    "PersonNamed",
    "face_id",
]


class FaceBox(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    box: tuple[float, float, float, float]
    """(left, top, right, bottom) in relative coordinates."""
    score: float
    landmarks: list[tuple[float, float]]
    embedding: list[float]


class FacesDetected(Event):
    """The faces one model found in a content (once per content and model)."""

    aggregate: ClassVar[str] = "content"
    key_fields: ClassVar[tuple[str, ...]] = ("content_hash",)
    variant_field: ClassVar[str | None] = "model"
    msg_id_fields: ClassVar[tuple[str, ...]] = ("content_hash", "model")
    once: ClassVar[bool] = True
    type: Literal["FacesDetected"] = "FacesDetected"
    v: Literal[1] = 1
    content_hash: str
    model: str
    faces: list[FaceBox]
    deriver_version: DeriverVersion = 1


def face_id(content_hash: str, model: str, index: int) -> str:
    """The stable id of the ``index``-th face a model found in a content."""
    token = hashlib.blake2b(model.encode(), digest_size=3).hexdigest()
    return f"{content_hash}-{token}-{index}"


class PersonCreated(Event):
    """The clusterer founded a person from a core face and its neighbours."""

    aggregate: ClassVar[str] = "person"
    key_fields: ClassVar[tuple[str, ...]] = ("person_id",)
    msg_id_fields: ClassVar[tuple[str, ...]] = ("person_id",)
    type: Literal["PersonCreated"] = "PersonCreated"
    v: Literal[1] = 1
    person_id: str
    founder: str
    """The face id whose neighbourhood founded the person (the id derives from it)."""


class FaceAssigned(Event):
    """The clusterer put a face into a person (automatic; human decisions win)."""

    aggregate: ClassVar[str] = "face"
    key_fields: ClassVar[tuple[str, ...]] = ("face_id",)
    msg_id_fields: ClassVar[tuple[str, ...]] = ("face_id", "person_id")
    type: Literal["FaceAssigned"] = "FaceAssigned"
    v: Literal[1] = 1
    face_id: str
    person_id: str
    content_hash: str
    distance: float | None = None
    """Distance to the person's centroid when it joined (None: a founding member)."""


class _Decision(Event):
    """A user's decision: always wins over automatic results, on replay too. Its message
    id is its subject key and the moment it was made (the API passes its own, keyed by
    the request, where the client sent an idempotency key)."""

    msg_id_fields: ClassVar[tuple[str, ...]] = ("key", "occurred_at")


class PersonNamed(_Decision):
    aggregate: ClassVar[str] = "person"
    key_fields: ClassVar[tuple[str, ...]] = ("person_id",)
    type: Literal["PersonNamed"] = "PersonNamed"
    v: Literal[1] = 1
    person_id: str
    name: str | None = None
    """None (or a blank string) clears the name. The default keeps bodies that carry no
    ``name`` (a clear: ``encode`` leaves None out) decodable, also those an older build
    appended while the field had no default."""


class PersonHidden(_Decision):
    aggregate: ClassVar[str] = "person"
    key_fields: ClassVar[tuple[str, ...]] = ("person_id",)
    type: Literal["PersonHidden"] = "PersonHidden"
    v: Literal[1] = 1
    person_id: str
    hidden: bool = True


class PeopleMerged(_Decision):
    """``source`` joins ``target``: its faces, and later assignments to it, go there."""

    aggregate: ClassVar[str] = "person"
    key_fields: ClassVar[tuple[str, ...]] = ("source",)
    type: Literal["PeopleMerged"] = "PeopleMerged"
    v: Literal[1] = 1
    source: str
    target: str


class FaceReassigned(_Decision):
    """A face moved by hand (the split): it stays there whatever the clusterer says."""

    aggregate: ClassVar[str] = "face"
    key_fields: ClassVar[tuple[str, ...]] = ("face_id",)
    type: Literal["FaceReassigned"] = "FaceReassigned"
    v: Literal[1] = 1
    face_id: str
    person_id: str
    """An existing person, or a new id (a split into a new person)."""
    new_person: bool = False


class FaceRejected(_Decision):
    """Not a face (or not one to keep): never assigned again."""

    aggregate: ClassVar[str] = "face"
    key_fields: ClassVar[tuple[str, ...]] = ("face_id",)
    type: Literal["FaceRejected"] = "FaceRejected"
    v: Literal[1] = 1
    face_id: str


class NotDuplicate(_Decision):
    """A user's decision that two contents are not duplicates (or, undone, that they may
    be). The pair's key is ``<a>-<b>`` as the user gave them (the read model sorts)."""

    aggregate: ClassVar[str] = "pair"
    key_fields: ClassVar[tuple[str, ...]] = ("a", "b")
    msg_id_fields: ClassVar[tuple[str, ...]] = ("key", "undo", "occurred_at")
    type: Literal["NotDuplicate"] = "NotDuplicate"
    v: Literal[1] = 1
    a: str
    b: str
    undo: bool = False
