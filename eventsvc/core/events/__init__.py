"""The event catalog: one frozen model per event, and the one codec for all of them.

Bodies are compact JSON carrying ``type`` and ``v`` (schema version) so the ``nats``
CLI shows readable events. Old versions are upcast in one place
(:mod:`eventsvc.core.events.upcast`) before validation. Subjects put the aggregate key
before the event type, and never a path; facts derived once per (content, model) add the
model as a fifth token, so each model has its own subject (and its own once-only guard).
Keys and message ids are declared per class (:mod:`eventsvc.core.events.base`). The
modules: ``base`` (the Event base, headers), ``files`` (the scanner's facts),
``derived`` (content facts), ``facts`` (typed facts inside events), ``people`` (faces,
people and the user's decisions), ``libraries`` (library configuration), ``tags``
(tags and favourites), ``upcast``,
``wire`` (the codec, the type registry).

The catalog (``catalog()`` gives it; a test keeps this list complete). ``<causation>``
is the stream sequence of the event derived from; ``[:v<N>]`` is added for a fact of a
deriver version above 1; ``<occurred_at>`` is ISO 8601. The scanner passes its own
message ids for its facts; the API passes one keyed by the request for a decision made
with an idempotency key.

FileSeen v1, msg id ``FileSeen:<file_id>:<causation>``::

    photos.file.<file_id>.FileSeen

FileMissing v1, msg id ``FileMissing:<file_id>:<causation>``::

    photos.file.<file_id>.FileMissing

LibraryStale v1, msg id ``LibraryStale:<library_id>:<causation>``::

    photos.library.<library_id>.LibraryStale

LibraryOnline v1, msg id ``LibraryOnline:<library_id>:<causation>``::

    photos.library.<library_id>.LibraryOnline

HashComputed v2, msg id ``HashComputed:<content_hash>:<causation>``::

    photos.content.<content_hash>.HashComputed

DerivationFailed v2, msg id ``DerivationFailed:<operation>:<causation>``::

    photos.content.<content_hash>.DerivationFailed
    photos.file.<file_id>.DerivationFailed
    photos.stage.<stage>.DerivationFailed

ExifExtracted v1, msg id ``ExifExtracted:<content_hash>:<causation>[:v<N>]``::

    photos.content.<content_hash>.ExifExtracted

ThumbnailReady v1, msg id ``ThumbnailReady:<content_hash>:<causation>[:v<N>]``::

    photos.content.<content_hash>.ThumbnailReady

ClipEncoded v1, msg id ``ClipEncoded:<content_hash>:<model_version>[:v<N>]``::

    photos.content.<content_hash>.ClipEncoded.<model_version>

FacesDetected v1, msg id ``FacesDetected:<content_hash>:<model>[:v<N>]``::

    photos.content.<content_hash>.FacesDetected.<model>

PlaylistReady v1, msg id ``PlaylistReady:<content_hash>:<causation>[:v<N>]``::

    photos.content.<content_hash>.PlaylistReady

PlaylistRemoved v1, msg id ``PlaylistRemoved:<content_hash>:<occurred_at>``::

    photos.content.<content_hash>.PlaylistRemoved

NotDuplicate v1, msg id ``NotDuplicate:<a-b>:<undo>:<occurred_at>``::

    photos.pair.<a>-<b>.NotDuplicate

PersonCreated v1, msg id ``PersonCreated:<person_id>``::

    photos.person.<person_id>.PersonCreated

FaceAssigned v1, msg id ``FaceAssigned:<face_id>:<person_id>``::

    photos.face.<face_id>.FaceAssigned

PersonNamed v1, msg id ``PersonNamed:<person_id>:<occurred_at>``::

    photos.person.<person_id>.PersonNamed

PersonHidden v1, msg id ``PersonHidden:<person_id>:<occurred_at>``::

    photos.person.<person_id>.PersonHidden

PeopleMerged v1, msg id ``PeopleMerged:<source>:<occurred_at>``::

    photos.person.<source>.PeopleMerged

FaceReassigned v1, msg id ``FaceReassigned:<face_id>:<occurred_at>``::

    photos.face.<face_id>.FaceReassigned

FaceRejected v1, msg id ``FaceRejected:<face_id>:<occurred_at>``::

    photos.face.<face_id>.FaceRejected

LibraryAdded v1, msg id ``LibraryAdded:<library_id>:<occurred_at>``::

    photos.library.<library_id>.LibraryAdded

LibraryUpdated v1, msg id ``LibraryUpdated:<library_id>:<occurred_at>``::

    photos.library.<library_id>.LibraryUpdated

LibraryRemoved v1, msg id ``LibraryRemoved:<library_id>:<occurred_at>``::

    photos.library.<library_id>.LibraryRemoved

TagAdded v1, msg id ``TagAdded:<content_hash>:<tag>:<occurred_at>``::

    photos.content.<content_hash>.TagAdded

TagRemoved v1, msg id ``TagRemoved:<content_hash>:<tag>:<occurred_at>``::

    photos.content.<content_hash>.TagRemoved

Favorited v1, msg id ``Favorited:<content_hash>:<occurred_at>``::

    photos.content.<content_hash>.Favorited

Unfavorited v1, msg id ``Unfavorited:<content_hash>:<occurred_at>``::

    photos.content.<content_hash>.Unfavorited
"""

from __future__ import annotations

from eventsvc.core.events.base import (
    HDR_CAUSATION,
    HDR_TYPE,
    HDR_VERSION,
    Event,
    now,
    subject_token,
)
from eventsvc.core.events.derived import (
    ClipEncoded,
    DerivationFailed,
    ExifExtracted,
    HashComputed,
    PlaylistReady,
    PlaylistRemoved,
    ThumbnailReady,
)
from eventsvc.core.events.facts import MediaFacts
from eventsvc.core.events.files import FileMissing, FileSeen, LibraryOnline, LibraryStale
from eventsvc.core.events.libraries import LibraryAdded, LibraryRemoved, LibraryUpdated
from eventsvc.core.events.people import (
    FaceAssigned,
    FaceBox,
    FaceReassigned,
    FaceRejected,
    FacesDetected,
    NotDuplicate,
    PeopleMerged,
    PersonCreated,
    PersonHidden,
    PersonNamed,
    face_id,
)
from eventsvc.core.events.tags import (
    MAX_TAG_LENGTH,
    Favorited,
    TagAdded,
    TagRemoved,
    Unfavorited,
    has_control,
    tag_key,
    tag_name,
)
from eventsvc.core.events.upcast import UPCASTERS, Upcaster
from eventsvc.core.events.wire import CURRENT_VERSION, EVENT_TYPES, decode, encode, headers_for

__all__ = [
    "CURRENT_VERSION",
    "EVENT_TYPES",
    "HDR_CAUSATION",
    "HDR_TYPE",
    "HDR_VERSION",
    "MAX_TAG_LENGTH",
    "UPCASTERS",
    "ClipEncoded",
    "DerivationFailed",
    "Event",
    "ExifExtracted",
    "FaceAssigned",
    "FaceBox",
    "FaceReassigned",
    "FaceRejected",
    "FacesDetected",
    "Favorited",
    "FileMissing",
    "FileSeen",
    "HashComputed",
    "LibraryAdded",
    "LibraryOnline",
    "LibraryRemoved",
    "LibraryStale",
    "LibraryUpdated",
    "MediaFacts",
    "NotDuplicate",
    "PeopleMerged",
    "PersonCreated",
    "PersonHidden",
    "PersonNamed",
    "PlaylistReady",
    "PlaylistRemoved",
    "TagAdded",
    "TagRemoved",
    "ThumbnailReady",
    "Unfavorited",
    "Upcaster",
    "catalog",
    "decode",
    "encode",
    "face_id",
    "has_control",
    "headers_for",
    "now",
    "subject_token",
    "tag_key",
    "tag_name",
]


def catalog(prefix: str = "photos") -> list[tuple[str, int, str, str]]:
    """(type, version, subject pattern, msg id pattern) of every event type, from the
    class-level declarations (the table in this module's docstring)."""
    rows = []
    for etype, cls in EVENT_TYPES.items():
        key = "|".join(f for f, _ in cls.key_choice) or "-".join(cls.key_fields)
        parts = [f"<{key if n == 'key' else n}>" for n in cls.msg_id_fields]
        suffix = "[:v<N>]" if "deriver_version" in cls.model_fields else ""
        msg_id = ":".join([etype, *parts]) + suffix
        rows.append((etype, CURRENT_VERSION[etype], cls.subject_pattern(prefix), msg_id))
    return rows
