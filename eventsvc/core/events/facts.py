"""Typed facts carried inside events (the shape of ``ExifExtracted.fields``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["MediaFacts"]


class MediaFacts(BaseModel):
    """Normalised metadata of one content, as the media deriver extracted it; every
    field is optional (absent on the wire when None).

    The extractor's ``eventsvc.media.exif.ExifFacts`` has the same fields (plus its
    warnings, which the event carries beside these); ``xmp_sidecar_date`` comes from the
    XMP sidecar file next to a location. ``width``/``height`` are the stored pixel
    dimensions before ``orientation``; dates are local wall time with the offset, when
    known, in ``utc_offset``; ``creation_time`` (videos) is UTC; ``rotation`` is the
    clockwise degrees that display a video upright.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    make: str | None = None
    model: str | None = None
    lens: str | None = None
    width: int | None = None
    height: int | None = None
    orientation: int | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    gps_alt: float | None = None
    focal_length: float | None = None
    f_number: float | None = None
    exposure_time: float | None = None
    iso: int | None = None
    date_original: str | None = None
    date_digitized: str | None = None
    utc_offset: str | None = None
    duration: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    rotation: int | None = None
    creation_time: str | None = None
    xmp_date: str | None = None
    xmp_sidecar_date: str | None = None
