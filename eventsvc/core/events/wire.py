"""The one codec: compact JSON bodies with ``type`` and ``v``, and the headers."""

from __future__ import annotations

import json

from pydantic import ValidationError

from eventsvc.core.errors import DecodeError
from eventsvc.core.events.base import HDR_CAUSATION, HDR_TYPE, HDR_VERSION, Event
from eventsvc.core.events.derived import (
    ClipEncoded,
    DerivationFailed,
    ExifExtracted,
    HashComputed,
    PlaylistReady,
    PlaylistRemoved,
    ThumbnailReady,
)
from eventsvc.core.events.files import FileMissing, FileSeen, LibraryOnline, LibraryStale
from eventsvc.core.events.libraries import LibraryAdded, LibraryRemoved, LibraryUpdated
from eventsvc.core.events.people import (
    FaceAssigned,
    FaceReassigned,
    FaceRejected,
    FacesDetected,
    NotDuplicate,
    PeopleMerged,
    PersonCreated,
    PersonHidden,
    PersonNamed,
)
from eventsvc.core.events.tags import Favorited, TagAdded, TagRemoved, Unfavorited
from eventsvc.core.events.upcast import UPCASTERS

__all__ = ["CURRENT_VERSION", "EVENT_TYPES", "decode", "encode", "headers_for"]

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
    LibraryAdded,
    LibraryUpdated,
    LibraryRemoved,
    TagAdded,
    TagRemoved,
    Favorited,
    Unfavorited,
)
EVENT_TYPES: dict[str, type[Event]] = {c.model_fields["type"].default: c for c in _CLASSES}
CURRENT_VERSION: dict[str, int] = {t: c.model_fields["v"].default for t, c in EVENT_TYPES.items()}


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
    """The one deserialiser. Fast path when the headers name a current type/version;
    older versions go through :data:`UPCASTERS` before validation."""
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
