"""Facts derived from a content (keyed by its blake3): hash, media facts, thumbnails,
CLIP vectors, playlists, and the failures of the derivers."""

from __future__ import annotations

import base64
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from eventsvc.core.events.base import Event
from eventsvc.core.events.facts import MediaFacts

__all__ = [
    "ClipEncoded",
    "DerivationFailed",
    "ExifExtracted",
    "HashComputed",
    "PlaylistReady",
    "PlaylistRemoved",
    "ThumbnailReady",
]

_CONTENT: tuple[str, ...] = ("content_hash",)


class HashComputed(Event):
    """Content identity of a location: the blake3 of the bytes read, and the size and
    mtime they had. v2: perceptual hashes, dimensions and the decode error are the media
    deriver's (``ThumbnailReady``, ``DerivationFailed``); v1 bodies are upcast
    (:mod:`eventsvc.core.events.upcast`)."""

    aggregate: ClassVar[str] = "content"
    key_fields: ClassVar[tuple[str, ...]] = _CONTENT
    type: Literal["HashComputed"] = "HashComputed"
    v: Literal[2] = 2
    content_hash: str
    library_id: str
    file_id: str
    path: str | None = None
    """The location that was hashed (body only, never in the subject)."""
    raw_path: str | None = None
    size: int
    mtime_ns: int
    media_kind: Literal["image", "video"]

    def path_bytes(self) -> bytes | None:
        if self.raw_path is not None:
            return base64.b64decode(self.raw_path)
        return self.path.encode("utf-8") if self.path is not None else None


class DerivationFailed(Event):
    """A deriver gave up on an input: about a content when it knows one, else a file,
    else the stage itself.

    ``stage`` is the stage (the worker) that failed: ``hasher``, ``media``, ``faces``,
    ``clip-<model>``, ``playlist``, ``rederive-<stage>``...; ``operation`` is what it was
    doing: the media stage's ``exif`` and ``thumbnail``, else the stage's name. v2: in v1
    the media stage wrote its operation as the stage; v1 bodies are upcast
    (:mod:`eventsvc.core.events.upcast`). The message id is keyed by the operation, so a
    content's EXIF and thumbnail failures stay two facts, under the ids v1 gave them."""

    key_choice: ClassVar[tuple[tuple[str, str], ...]] = (
        ("content_hash", "content"),
        ("file_id", "file"),
        ("stage", "stage"),
    )
    msg_id_fields: ClassVar[tuple[str, ...]] = ("operation", "causation")
    type: Literal["DerivationFailed"] = "DerivationFailed"
    v: Literal[2] = 2
    stage: str
    operation: str
    """What failed; when not given, the stage's name (a stage doing one thing)."""
    reason: str
    permanent: bool = True
    input_subject: str
    deliveries: int = 1
    file_id: str | None = None
    content_hash: str | None = None
    library_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _operation_defaults_to_stage(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("operation") is None and "stage" in data:
            return {**data, "operation": data["stage"]}
        return data


class _Fact(Event):
    """A once-only fact about a content, versioned by its deriver."""

    aggregate: ClassVar[str] = "content"
    key_fields: ClassVar[tuple[str, ...]] = _CONTENT
    once: ClassVar[bool] = True


DeriverVersion = Annotated[int, Field(ge=1)]
"""``deriver_version`` of a fact: the version of the deriver that made it (part of the
once-only key: a newer deriver derives again and its fact replaces this one). Absent in
older logs: 1. Declared last in each fact, where it has always been on the wire."""


class ExifExtracted(_Fact):
    type: Literal["ExifExtracted"] = "ExifExtracted"
    v: Literal[1] = 1
    content_hash: str
    media_kind: Literal["image", "video"] = "image"
    fields: MediaFacts
    """Camera, lens, exposure, GPS, dates, dimensions, video stream facts."""
    date_taken: str | None = None
    date_source: str | None = None
    """Where date_taken came from, among the content's own sources (EXIF, container)."""
    warnings: list[str] = Field(default_factory=list)
    deriver_version: DeriverVersion = 1


class ThumbnailReady(_Fact):
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
    deriver_version: DeriverVersion = 1


class ClipEncoded(_Fact):
    variant_field: ClassVar[str | None] = "model_version"
    msg_id_fields: ClassVar[tuple[str, ...]] = ("content_hash", "model_version")
    type: Literal["ClipEncoded"] = "ClipEncoded"
    v: Literal[1] = 1
    content_hash: str
    model_version: str
    dim: int
    vector: list[float]
    deriver_version: DeriverVersion = 1


class PlaylistReady(_Fact):
    """An HLS VOD playlist (fMP4 segments), a poster and a preview clip for a video's
    content, under ``<video_root>/<2-hex shard>/<blake3>/``. Paths are relative to the
    video root."""

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
    deriver_version: DeriverVersion = 1


class PlaylistRemoved(Event):
    """The guarded clean-up removed a content's playlist directory: no live location held
    the content on two consecutive healthy ticks. Published before the removal (a crash
    in between leaves the directory for the next tick, which announces it again). If the
    content comes back, the playlist worker makes the playlist again (a new PlaylistReady,
    guarded by the sequence of the one this removal ended)."""

    aggregate: ClassVar[str] = "content"
    key_fields: ClassVar[tuple[str, ...]] = _CONTENT
    msg_id_fields: ClassVar[tuple[str, ...]] = ("content_hash", "occurred_at")
    type: Literal["PlaylistRemoved"] = "PlaylistRemoved"
    v: Literal[1] = 1
    content_hash: str
    reason: str
