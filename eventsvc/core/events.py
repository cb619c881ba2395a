"""The event catalog: one frozen model per event, and the one codec for all of them.

Bodies are compact JSON carrying ``type`` and ``v`` (schema version) so the ``nats``
CLI shows readable events. Old versions are upcast in one place (``UPCASTERS``)
before validation. Subjects put the aggregate key before the event type::

    photos.file.<file_id>.FileSeen
    photos.content.<blake3>.HashComputed
    photos.library.<library_id>.LibraryStale

Facts derived once per (content, model) add the model as a fifth token, so each model
has its own subject (and its own once-only guard)::

    photos.content.<blake3>.ClipEncoded.<model_token>
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eventsvc.core.errors import DecodeError

__all__ = [
    "EVENT_TYPES",
    "HDR_CAUSATION",
    "HDR_TYPE",
    "HDR_VERSION",
    "ClipEncoded",
    "DerivationFailed",
    "Event",
    "ExifExtracted",
    "FaceAssigned",
    "FaceBox",
    "FaceReassigned",
    "FaceRejected",
    "FacesDetected",
    "FileMissing",
    "FileSeen",
    "HashComputed",
    "LibraryOnline",
    "LibraryStale",
    "NotDuplicate",
    "PeopleMerged",
    "PersonCreated",
    "PersonHidden",
    "PersonNamed",
    "PlaylistReady",
    "PlaylistRemoved",
    "ThumbnailReady",
    "decode",
    "encode",
    "face_id",
    "headers_for",
    "now",
    "subject_token",
]

HDR_TYPE = "Eventsvc-Type"
HDR_VERSION = "Eventsvc-Version"
HDR_CAUSATION = "Eventsvc-Causation"


def now() -> datetime:
    return datetime.now(UTC)


_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_-]")


def subject_token(text: str) -> str:
    """``text`` made safe as one subject token (no dots, wildcards or spaces)."""
    return _TOKEN_BAD.sub("_", text)[:128] or "_"


class Event(BaseModel):
    """Base of every event. Subclasses set ``type`` and ``v`` as literals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aggregate: ClassVar[str] = "file"
    once: ClassVar[bool] = False
    """Derived once per subject: published with Nats-Expected-Last-Subject-Sequence 0."""
    occurred_at: datetime = Field(default_factory=now)
    causation: int | None = None
    """Stream sequence of the event this one was derived from (None for observations)."""
    variant_field: ClassVar[str | None] = None
    """A field whose value (a model version) becomes a fifth subject token."""

    @property
    def fact_version(self) -> int:
        """The version of the deriver that made this once-only fact (1 for events that
        carry none: every event written before deriver versions existed)."""
        return int(getattr(self, "deriver_version", 1))

    @property
    def key(self) -> str:
        """The aggregate key that goes into the subject (never a path)."""
        raise NotImplementedError

    def subject(self, prefix: str = "photos") -> str:
        base = f"{prefix}.{self.aggregate}.{self.key}.{self.type}"  # type: ignore[attr-defined]
        if self.variant_field is None:
            return base
        return f"{base}.{subject_token(str(getattr(self, self.variant_field)))}"

    def default_msg_id(self) -> str:
        """Deterministic ``Nats-Msg-Id``: derived events dedupe on their cause (and, for
        a versioned fact, on the deriver's version: a re-derivation is a new fact)."""
        return f"{self.type}:{self.key}:{self.causation}{self._version_suffix()}"  # type: ignore[attr-defined]

    def _version_suffix(self) -> str:
        return f":v{self.fact_version}" if self.fact_version > 1 else ""


# ---------------------------------------------------------------- the scanner's facts


class FileSeen(Event):
    type: Literal["FileSeen"] = "FileSeen"
    v: Literal[1] = 1
    library_id: str
    file_id: str
    path: str
    """Relative path, '/'-separated; non-UTF-8 bytes shown as U+FFFD (see raw_path)."""
    raw_path: str | None = None
    """Base64 of the raw relative path bytes when they are not valid UTF-8."""
    size: int
    mtime_ns: int
    media_kind: Literal["image", "video"]

    @property
    def key(self) -> str:
        return self.file_id

    def path_bytes(self) -> bytes:
        if self.raw_path is not None:
            return base64.b64decode(self.raw_path)
        return self.path.encode("utf-8")


class FileMissing(Event):
    type: Literal["FileMissing"] = "FileMissing"
    v: Literal[1] = 1
    library_id: str
    file_id: str
    path: str

    @property
    def key(self) -> str:
        return self.file_id


class LibraryStale(Event):
    aggregate: ClassVar[str] = "library"
    type: Literal["LibraryStale"] = "LibraryStale"
    v: Literal[1] = 1
    library_id: str
    name: str
    root: str
    reason: str

    @property
    def key(self) -> str:
        return self.library_id


class LibraryOnline(Event):
    aggregate: ClassVar[str] = "library"
    type: Literal["LibraryOnline"] = "LibraryOnline"
    v: Literal[1] = 1
    library_id: str
    name: str
    root: str

    @property
    def key(self) -> str:
        return self.library_id


# ---------------------------------------------------------------- derived facts


class HashComputed(Event):
    aggregate: ClassVar[str] = "content"
    type: Literal["HashComputed"] = "HashComputed"
    v: Literal[1] = 1
    content_hash: str
    library_id: str
    file_id: str
    path: str | None = None
    """The location that was hashed (body only, never in the subject)."""
    raw_path: str | None = None
    size: int
    mtime_ns: int
    media_kind: Literal["image", "video"]
    phash: str | None = None
    dhash: str | None = None
    width: int | None = None
    height: int | None = None
    decode_error: str | None = None
    """Why perceptual hashes are missing for an image that did not decode."""

    @property
    def key(self) -> str:
        return self.content_hash

    def path_bytes(self) -> bytes | None:
        if self.raw_path is not None:
            return base64.b64decode(self.raw_path)
        return self.path.encode("utf-8") if self.path is not None else None


class DerivationFailed(Event):
    type: Literal["DerivationFailed"] = "DerivationFailed"
    v: Literal[1] = 1
    stage: str
    reason: str
    permanent: bool = True
    input_subject: str
    deliveries: int = 1
    file_id: str | None = None
    content_hash: str | None = None
    library_id: str | None = None

    @property
    def aggregate(self) -> str:  # type: ignore[override]
        if self.content_hash:
            return "content"
        if self.file_id:
            return "file"
        return "stage"

    @property
    def key(self) -> str:
        return self.content_hash or self.file_id or self.stage

    def default_msg_id(self) -> str:
        return f"DerivationFailed:{self.stage}:{self.causation}"


class ExifExtracted(Event):
    aggregate: ClassVar[str] = "content"
    type: Literal["ExifExtracted"] = "ExifExtracted"
    v: Literal[1] = 1
    content_hash: str
    media_kind: Literal["image", "video"] = "image"
    fields: dict[str, Any]
    """Camera, lens, exposure, GPS, dates, dimensions, video stream facts (see ExifFacts)."""
    date_taken: str | None = None
    date_source: str | None = None
    """Where date_taken came from, among the content's own sources (EXIF, container)."""
    warnings: list[str] = Field(default_factory=list)
    deriver_version: int = Field(default=1, ge=1)
    """Version of the deriver that made it (part of the once-only key: a newer deriver
    derives again and its fact replaces this one). Absent in older logs: 1."""
    once: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return self.content_hash


class ThumbnailReady(Event):
    aggregate: ClassVar[str] = "content"
    type: Literal["ThumbnailReady"] = "ThumbnailReady"
    v: Literal[1] = 1
    content_hash: str
    sizes: dict[str, str]
    """Size name -> path relative to the thumbnail root."""
    width: int | None = None
    height: int | None = None
    """Upright dimensions of the decoded image (orientation applied)."""
    phash: str | None = None
    dhash: str | None = None
    """64-bit perceptual hashes (imagehash) from the same decode as the thumbnails."""
    deriver_version: int = Field(default=1, ge=1)
    """Version of the deriver that made it (part of the once-only key: a newer deriver
    derives again and its fact replaces this one). Absent in older logs: 1."""
    once: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return self.content_hash


class ClipEncoded(Event):
    aggregate: ClassVar[str] = "content"
    type: Literal["ClipEncoded"] = "ClipEncoded"
    v: Literal[1] = 1
    content_hash: str
    model_version: str
    dim: int
    vector: list[float]
    variant_field: ClassVar[str | None] = "model_version"
    deriver_version: int = Field(default=1, ge=1)
    """Version of the deriver that made it (part of the once-only key: a newer deriver
    derives again and its fact replaces this one). Absent in older logs: 1."""
    once: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return self.content_hash

    def default_msg_id(self) -> str:
        return f"ClipEncoded:{self.content_hash}:{self.model_version}{self._version_suffix()}"


class FaceBox(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    box: tuple[float, float, float, float]
    """(left, top, right, bottom) in relative coordinates."""
    score: float
    landmarks: list[tuple[float, float]]
    embedding: list[float]


class FacesDetected(Event):
    aggregate: ClassVar[str] = "content"
    type: Literal["FacesDetected"] = "FacesDetected"
    v: Literal[1] = 1
    content_hash: str
    model: str
    faces: list[FaceBox]
    variant_field: ClassVar[str | None] = "model"
    deriver_version: int = Field(default=1, ge=1)
    """Version of the deriver that made it (part of the once-only key: a newer deriver
    derives again and its fact replaces this one). Absent in older logs: 1."""
    once: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return self.content_hash

    def default_msg_id(self) -> str:
        return f"FacesDetected:{self.content_hash}:{self.model}{self._version_suffix()}"


def face_id(content_hash: str, model: str, index: int) -> str:
    """The stable id of the ``index``-th face a model found in a content."""
    token = hashlib.blake2b(model.encode(), digest_size=3).hexdigest()
    return f"{content_hash}-{token}-{index}"


class PersonCreated(Event):
    """The clusterer founded a person from a core face and its neighbours."""

    aggregate: ClassVar[str] = "person"
    type: Literal["PersonCreated"] = "PersonCreated"
    v: Literal[1] = 1
    person_id: str
    founder: str
    """The face id whose neighbourhood founded the person (the id derives from it)."""

    @property
    def key(self) -> str:
        return self.person_id

    def default_msg_id(self) -> str:
        return f"PersonCreated:{self.person_id}"


class FaceAssigned(Event):
    """The clusterer put a face into a person (automatic; human decisions win)."""

    aggregate: ClassVar[str] = "face"
    type: Literal["FaceAssigned"] = "FaceAssigned"
    v: Literal[1] = 1
    face_id: str
    person_id: str
    content_hash: str
    distance: float | None = None
    """Distance to the person's centroid when it joined (None: a founding member)."""

    @property
    def key(self) -> str:
        return self.face_id

    def default_msg_id(self) -> str:
        return f"FaceAssigned:{self.face_id}:{self.person_id}"


class _Decision(Event):
    """A user's decision: always wins over automatic results, on replay too."""

    def default_msg_id(self) -> str:
        return f"{self.type}:{self.key}:{self.occurred_at.isoformat()}"  # type: ignore[attr-defined]


class PersonNamed(_Decision):
    aggregate: ClassVar[str] = "person"
    type: Literal["PersonNamed"] = "PersonNamed"
    v: Literal[1] = 1
    person_id: str
    name: str | None = None
    """None (or a blank string) clears the name. The default keeps bodies that carry no
    ``name`` (a clear: ``encode`` leaves None out) decodable, also those an older build
    appended while the field had no default."""

    @property
    def key(self) -> str:
        return self.person_id


class PersonHidden(_Decision):
    aggregate: ClassVar[str] = "person"
    type: Literal["PersonHidden"] = "PersonHidden"
    v: Literal[1] = 1
    person_id: str
    hidden: bool = True

    @property
    def key(self) -> str:
        return self.person_id


class PeopleMerged(_Decision):
    """``source`` joins ``target``: its faces, and later assignments to it, go there."""

    aggregate: ClassVar[str] = "person"
    type: Literal["PeopleMerged"] = "PeopleMerged"
    v: Literal[1] = 1
    source: str
    target: str

    @property
    def key(self) -> str:
        return self.source


class FaceReassigned(_Decision):
    """A face moved by hand (the split): it stays there whatever the clusterer says."""

    aggregate: ClassVar[str] = "face"
    type: Literal["FaceReassigned"] = "FaceReassigned"
    v: Literal[1] = 1
    face_id: str
    person_id: str
    """An existing person, or a new id (a split into a new person)."""
    new_person: bool = False

    @property
    def key(self) -> str:
        return self.face_id


class FaceRejected(_Decision):
    """Not a face (or not one to keep): never assigned again."""

    aggregate: ClassVar[str] = "face"
    type: Literal["FaceRejected"] = "FaceRejected"
    v: Literal[1] = 1
    face_id: str

    @property
    def key(self) -> str:
        return self.face_id


class PlaylistReady(Event):
    """An HLS VOD playlist (fMP4 segments), a poster and a preview clip for a video's
    content, under ``<video_root>/<2-hex shard>/<blake3>/``. Paths are relative to the
    video root."""

    aggregate: ClassVar[str] = "content"
    type: Literal["PlaylistReady"] = "PlaylistReady"
    v: Literal[1] = 1
    content_hash: str
    playlist_path: str
    duration: float
    """Sum of the segments' EXTINF durations, seconds."""
    segments: int
    codecs: str
    """RFC 6381 codecs of the output (``avc1.64001f,mp4a.40.2``)."""
    mode: Literal["remux", "transcode"]
    reason: str = ""
    """Why this mode (e.g. 'key frames up to 10.0 s apart (> 4 s)')."""
    width: int | None = None
    height: int | None = None
    """Coded size of the output (a remuxed rotated video keeps its display matrix)."""
    poster: str | None = None
    preview: str | None = None
    deriver_version: int = Field(default=1, ge=1)
    """Version of the deriver that made it (part of the once-only key: a newer deriver
    derives again and its fact replaces this one). Absent in older logs: 1."""
    once: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return self.content_hash


class PlaylistRemoved(Event):
    """The guarded clean-up removed a content's playlist directory: no live location held
    the content on two consecutive healthy ticks. Published before the removal (a crash
    in between leaves the directory for the next tick, which announces it again). If the
    content comes back, the playlist worker makes the playlist again (a new PlaylistReady,
    guarded by the sequence of the one this removal ended)."""

    aggregate: ClassVar[str] = "content"
    type: Literal["PlaylistRemoved"] = "PlaylistRemoved"
    v: Literal[1] = 1
    content_hash: str
    reason: str

    @property
    def key(self) -> str:
        return self.content_hash

    def default_msg_id(self) -> str:
        return f"PlaylistRemoved:{self.content_hash}:{self.occurred_at.isoformat()}"


class NotDuplicate(Event):
    """A user's decision that two contents are not duplicates (or, undone, that they may be)."""

    aggregate: ClassVar[str] = "pair"
    type: Literal["NotDuplicate"] = "NotDuplicate"
    v: Literal[1] = 1
    a: str
    b: str
    undo: bool = False

    @property
    def key(self) -> str:
        return f"{self.a}-{self.b}"

    def default_msg_id(self) -> str:
        return f"NotDuplicate:{self.key}:{self.undo}:{self.occurred_at.isoformat()}"


_CLASSES: tuple[type[Event], ...] = (
    FileSeen,
    FileMissing,
    LibraryStale,
    LibraryOnline,
    HashComputed,
    DerivationFailed,
    ExifExtracted,
    ThumbnailReady,
    ClipEncoded,
    FacesDetected,
    PlaylistReady,
    PlaylistRemoved,
    NotDuplicate,
    PersonCreated,
    FaceAssigned,
    PersonNamed,
    PersonHidden,
    PeopleMerged,
    FaceReassigned,
    FaceRejected,
)
EVENT_TYPES: dict[str, type[Event]] = {c.model_fields["type"].default: c for c in _CLASSES}
CURRENT_VERSION: dict[str, int] = {t: c.model_fields["v"].default for t, c in EVENT_TYPES.items()}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""(type, version) -> function turning a body of that version into one of version + 1.

Register one per schema change, e.g. ``UPCASTERS[("FileSeen", 1)] = _fileseen_1_to_2``.
"""


def encode(event: Event) -> bytes:
    """The one serialiser: compact JSON of the frozen model."""
    return event.model_dump_json(exclude_none=True).encode()


def headers_for(event: Event, msg_id: str | None = None) -> dict[str, str]:
    hdrs = {
        "Nats-Msg-Id": msg_id or event.default_msg_id(),
        HDR_TYPE: event.type,  # type: ignore[attr-defined]
        HDR_VERSION: str(event.v),  # type: ignore[attr-defined]
    }
    if event.causation is not None:
        hdrs[HDR_CAUSATION] = str(event.causation)
    return hdrs


def decode(data: bytes, headers: dict[str, str] | None = None) -> Event:
    """The one deserialiser. Fast path when the headers name a current type/version."""
    if headers:
        etype = headers.get(HDR_TYPE)
        cls = EVENT_TYPES.get(etype) if etype else None
        if cls is not None and headers.get(HDR_VERSION) == str(CURRENT_VERSION[etype]):
            try:
                return cls.model_validate_json(data)
            except ValidationError:
                pass  # fall through: the slow path gives the precise reason
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise DecodeError("body is not a JSON object")
    etype = body.get("type")
    named = headers.get(HDR_TYPE) if headers else None
    if named is not None and etype != named:  # the log binds it to the subject's type
        raise DecodeError(f"a {etype!r} body where the subject says {named!r}")
    cls = EVENT_TYPES.get(etype) if isinstance(etype, str) else None
    if cls is None:
        raise DecodeError(f"unknown event type {etype!r}")
    version = body.get("v", 1)
    if not isinstance(version, int) or version > CURRENT_VERSION[etype]:
        raise DecodeError(f"{etype} version {version!r} is newer than this build knows")
    while version < CURRENT_VERSION[etype]:
        up = UPCASTERS.get((etype, version))
        if up is None:
            raise DecodeError(f"no upcaster for {etype} v{version}")
        body = up(body)
        version += 1
        body["v"] = version
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        raise DecodeError(f"invalid {etype}: {exc.errors()[0]['msg']}") from exc
