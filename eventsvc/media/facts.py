"""What metadata extraction yields: :class:`ExifFacts` and :class:`MediaError`.

Shared by the image (:mod:`eventsvc.media.exif`) and video (:mod:`eventsvc.media.video_meta`)
extractors and by the decoder sandbox that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExifFacts", "MediaError"]


class MediaError(Exception):
    """The file cannot be read (or, for a video, opened as a media container) at all."""


@dataclass(frozen=True, slots=True)
class ExifFacts:
    """Normalised metadata of one media file; every field is optional.

    ``width``/``height`` are the stored pixel dimensions before ``orientation`` is applied
    (so display size is swapped for orientations 5-8), read from the image's own header
    (JPEG SOF, PNG IHDR, TIFF IFD0, WebP VP8/VP8L/VP8X, HEIF ispe via pillow-heif; a video's
    stream), never from EXIF PixelXDimension or a reduced decode; None when the header
    cannot be read. For HEIF, whose decoder applies the
    container transforms itself, they are chosen so that this rule gives the decoded size.
    Dates are local wall time (``YYYY-MM-DDTHH:MM:SS[.fff]``) with the offset, when known,
    in ``utc_offset``; ``creation_time`` (videos) is UTC (``...Z``). ``rotation`` is the
    clockwise degrees needed to display a video upright.
    """

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
    """Local date from the embedded XMP packet (``xmp:CreateDate``, else
    ``photoshop:DateCreated``), same form as ``date_original``."""
    warnings: tuple[str, ...] = ()
