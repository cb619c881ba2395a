"""Response schemas: msgspec Structs, separate from the event models, every field documented.

(No ``from __future__ import annotations`` here: the Annotated metadata is read at runtime.)
"""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from projections.api.pipeline_schemas import (  # re-exported: /pipeline's, kept importable here
    ConsumerStatus,
    Failure,
    FailureSummary,
    NatsStatus,
    PipelineStatus,
    ProjectorStatus,
    StreamStatus,
)

__all__ = [
    "ConsumerStatus",
    "ErrorDetail",
    "Exif",
    "Failure",
    "FailureSummary",
    "Gps",
    "Health",
    "LastScan",
    "LibraryPage",
    "LibraryStatus",
    "Location",
    "NatsStatus",
    "Photo",
    "PhotoDetail",
    "PhotoPage",
    "PhotoPerson",
    "PipelineStatus",
    "ProjectorStatus",
    "StreamStatus",
]

NEXT = "Opaque cursor for the next page (pass it as `cursor`); null on the last page."
HASH = "BLAKE3 of the file's bytes, 64 lowercase hex characters."
DATE_TAKEN = (
    "When the photo or video was taken, ISO 8601 without offset: the content's own date "
    "(EXIF original/digitized, XMP, XMP sidecar: camera wall-clock time; video container: "
    "UTC, ending in 'Z'), "
    "else a date in the file name (local), else the file's mtime (UTC, 'Z')."
)
DATE_SOURCE = (
    "Where date_taken came from: 'exif_original', 'exif_digitized', 'xmp' (the file's "
    "XMP xmp:CreateDate or photoshop:DateCreated), 'xmp_sidecar' (the same in a .xmp "
    "file next to it), 'container', 'filename' or 'filesystem'."
)
UPRIGHT_WIDTH = (
    "Width in pixels as displayed (after the EXIF orientation / video rotation) of the full "
    "image, from its own header (JPEG SOF, PNG IHDR, HEIF ispe, video stream); null if unknown."
)
UPRIGHT_HEIGHT = "Height in pixels as displayed, like width; null if unknown."
THUMBNAIL_URL = "URL path of the thumbnail endpoint for that size"
TAGS = (
    "Names of the named, not hidden people with a face (not rejected) in this content, "
    "merges followed: sorted case-insensitively, each once; empty if none. `tag=NAME` "
    "filters /photos by them."
)


class ErrorDetail(msgspec.Struct):
    """The body of every error response."""

    detail: Annotated[str, Meta(description="What went wrong, naming the cause or parameter.")]


class Health(msgspec.Struct):
    """Liveness: the process answers."""

    status: Annotated[Literal["ok"], Meta(description="Always 'ok'.")]


# ------------------------------------------------------------------ libraries


class LastScan(msgspec.Struct, kw_only=True):
    """The scanner's report of its latest scan of a library (NATS KV EVENTSVC_STATUS)."""

    started_at: Annotated[str | None, Meta(description="When the scan started (ISO 8601).")] = None
    finished_at: Annotated[str | None, Meta(description="When it finished (ISO 8601).")] = None
    full: Annotated[bool | None, Meta(description="A full scan (else a quick one).")] = None
    duration_s: Annotated[float | None, Meta(description="Wall time in seconds.")] = None
    files: Annotated[int | None, Meta(description="Files seen by the scan.")] = None
    new: Annotated[int | None, Meta(description="Files new since the previous scan.")] = None
    changed: Annotated[int | None, Meta(description="Files whose size or mtime changed.")] = None
    missing: Annotated[int | None, Meta(description="Files reported missing.")] = None
    missing_deferred: Annotated[
        int | None, Meta(description="Missing files left for the next tick (per-tick cap).")
    ] = None
    state: Annotated[str | None, Meta(description="Library state the scan ended in.")] = None
    error: Annotated[str | None, Meta(description="Why the scan failed, if it did.")] = None
    issue_count: Annotated[int | None, Meta(description="Entries that could not be read.")] = None
    issues: Annotated[
        list[str] | None, Meta(description="A sample of those entries and their errors.")
    ] = None


class WatchState(msgspec.Struct, kw_only=True):
    """The scanner's file watching (inotify) of a library (NATS KV EVENTSVC_STATUS)."""

    state: Annotated[
        Literal["watching", "failed", "off"],
        Meta(description="'watching'; 'failed' (retried with back-off; ticks still scan); 'off'."),
    ]
    reason: Annotated[
        str | None, Meta(description="Why it failed or is off; null if watching.")
    ] = None
    since: Annotated[str | None, Meta(description="When it entered this state (ISO 8601).")] = None


class LibraryStatus(msgspec.Struct):
    """A library (a root directory) and what the read model holds for it."""

    library_id: Annotated[str, Meta(description="Stable library id (goes into subjects).")]
    name: Annotated[str, Meta(description="Display name.")]
    root: Annotated[str, Meta(description="Root directory on the scanning host.")]
    state: Annotated[
        Literal["online", "stale", "disabled", "pending"],
        Meta(
            description="'online'; 'stale' when the root looked unmounted or emptied (we "
            "wanted to scan it but could not); 'disabled' when its configuration says not "
            "to scan it (we don't want to); 'pending' when configured but not probed yet."
        ),
    ]
    reason: Annotated[str | None, Meta(description="Why the library is stale; null if online.")]
    state_since: Annotated[str, Meta(description="When the library entered this state (ISO).")]
    files: Annotated[int, Meta(description="Live file locations in the library.")]
    images: Annotated[int, Meta(description="Of those, images.")]
    videos: Annotated[int, Meta(description="Of those, videos.")]
    hashed: Annotated[int, Meta(description="Of those, files whose content hash is known.")]
    bytes: Annotated[int, Meta(description="Sum of the file sizes in bytes.")]
    last_scan: Annotated[
        LastScan | None, Meta(description="Latest scan report; null without NATS or report.")
    ]
    watch: Annotated[
        WatchState | None,
        Meta(description="File watching between scans; null without NATS or a scanner report."),
    ] = None
    enabled: Annotated[
        bool, Meta(description="Scanned (its configuration enables it); false: disabled.")
    ] = True
    health: Annotated[
        Literal["online", "stale", "unknown"],
        Meta(description="The last probe's verdict, whatever the configuration says."),
    ] = "unknown"
    excludes: Annotated[
        list[str], Meta(description="The library's own excludes (added to the global ones).")
    ] = []
    configured: Annotated[
        bool,
        Meta(
            description="Its configuration is in the log (LibraryAdded); false for a "
            "library only known from the scanner's health events (a log from before issue 16)."
        ),
    ] = False


class LibraryPage(msgspec.Struct):
    """All libraries (never paged)."""

    items: Annotated[list[LibraryStatus], Meta(description="Libraries ordered by library_id.")]
    next: Annotated[str | None, Meta(description="Always null: libraries are not paged.")] = None


# ------------------------------------------------------------------ photos


class Location(msgspec.Struct):
    """One place a content lives: a file in a library."""

    file_id: Annotated[str, Meta(description="Id of the location (hash of library and path).")]
    library: Annotated[str, Meta(description="Library id.")]
    path: Annotated[
        str,
        Meta(
            description="Path relative to the library root, '/'-separated (U+FFFD "
            "stands for bytes that are not UTF-8)."
        ),
    ]
    size: Annotated[int, Meta(description="Size in bytes.")]
    mtime_ns: Annotated[int, Meta(description="Modification time, nanoseconds since the epoch.")]
    mtime: Annotated[str, Meta(description="Modification time, ISO 8601 in UTC.")]
    date_taken: Annotated[str | None, Meta(description=DATE_TAKEN + " Per location.")]
    date_source: Annotated[str | None, Meta(description=DATE_SOURCE)]


class Gps(msgspec.Struct):
    """A position from the content's metadata (WGS 84)."""

    lat: Annotated[float, Meta(description="Latitude in degrees, -90..90 (north positive).")]
    lon: Annotated[float, Meta(description="Longitude in degrees, -180..180 (east positive).")]
    alt: Annotated[
        float | None, Meta(description="Altitude in metres above sea level; null if unknown.")
    ]


class Photo(msgspec.Struct):
    """A file location (image or video) as listed by /photos."""

    file_id: Annotated[str, Meta(description="Id of the location (hash of library and path).")]
    library: Annotated[str, Meta(description="Library id.")]
    path: Annotated[str, Meta(description="Path relative to the library root, '/'-separated.")]
    size: Annotated[int, Meta(description="Size in bytes.")]
    mtime_ns: Annotated[int, Meta(description="Modification time, nanoseconds since the epoch.")]
    mtime: Annotated[str, Meta(description="Modification time, ISO 8601 in UTC.")]
    media_kind: Annotated[Literal["image", "video"], Meta(description="'image' or 'video'.")]
    content_hash: Annotated[
        str | None, Meta(description=HASH + " Null until the file has been hashed.")
    ]
    date_taken: Annotated[str | None, Meta(description=DATE_TAKEN)]
    date_source: Annotated[str | None, Meta(description=DATE_SOURCE)]
    width: Annotated[
        int | None,
        Meta(description=UPRIGHT_WIDTH),
    ]
    height: Annotated[
        int | None,
        Meta(description=UPRIGHT_HEIGHT),
    ]
    make: Annotated[str | None, Meta(description="Camera maker from the metadata; null if none.")]
    model: Annotated[str | None, Meta(description="Camera model from the metadata; null if none.")]
    gps: Annotated[Gps | None, Meta(description="Position from the metadata; null if none.")]
    thumbnail: Annotated[
        str | None,
        Meta(description=THUMBNAIL_URL + " 'small'; null until a thumbnail exists."),
    ]
    tags: Annotated[list[str], Meta(description=TAGS)]


class PhotoPage(msgspec.Struct):
    """A page of file locations."""

    items: Annotated[list[Photo], Meta(description="File locations in the requested order.")]
    next: Annotated[str | None, Meta(description=NEXT)]


class Exif(msgspec.Struct):
    """What the media deriver read from the content's bytes (EXIF, or a video's container)."""

    media_kind: Annotated[Literal["image", "video"], Meta(description="'image' or 'video'.")]
    make: Annotated[str | None, Meta(description="Camera maker.")]
    model: Annotated[str | None, Meta(description="Camera model.")]
    lens: Annotated[str | None, Meta(description="Lens model.")]
    width: Annotated[
        int | None,
        Meta(
            description="Stored pixel width from the image's header (never EXIF "
            "PixelXDimension), before orientation (displayed size is swapped for 5-8)."
        ),
    ]
    height: Annotated[int | None, Meta(description="Stored pixel height, before orientation.")]
    orientation: Annotated[
        int | None, Meta(description="EXIF orientation 1-8 (1: upright, 6: rotate 90 CW).")
    ]
    gps_lat: Annotated[float | None, Meta(description="Latitude in degrees (north positive).")]
    gps_lon: Annotated[float | None, Meta(description="Longitude in degrees (east positive).")]
    gps_alt: Annotated[float | None, Meta(description="Altitude in metres above sea level.")]
    focal_length: Annotated[float | None, Meta(description="Focal length in millimetres.")]
    f_number: Annotated[float | None, Meta(description="Aperture as an f-number.")]
    exposure_time: Annotated[float | None, Meta(description="Exposure time in seconds.")]
    iso: Annotated[int | None, Meta(description="ISO speed.")]
    date_original: Annotated[
        str | None, Meta(description="EXIF DateTimeOriginal, camera wall-clock time (ISO 8601).")
    ]
    date_digitized: Annotated[
        str | None, Meta(description="EXIF DateTimeDigitized, camera wall-clock time (ISO 8601).")
    ]
    utc_offset: Annotated[
        str | None, Meta(description="UTC offset of those dates (e.g. '+02:00'), when recorded.")
    ]
    duration: Annotated[float | None, Meta(description="Video duration in seconds.")]
    video_codec: Annotated[str | None, Meta(description="Video codec name.")]
    audio_codec: Annotated[str | None, Meta(description="Audio codec name.")]
    rotation: Annotated[
        int | None, Meta(description="Clockwise degrees to display a video upright.")
    ]
    creation_time: Annotated[
        str | None, Meta(description="Video container creation time, UTC (ISO 8601, 'Z').")
    ]
    date_taken: Annotated[
        str | None,
        Meta(description="The content's own date taken (EXIF or container); null if none."),
    ]
    date_source: Annotated[
        str | None,
        Meta(
            description="Its source: 'exif_original', 'exif_digitized', 'xmp', "
            "'xmp_sidecar' or 'container'."
        ),
    ]
    warnings: Annotated[
        list[str], Meta(description="What the extractor found odd or unusable (may be empty).")
    ]


class PhotoPerson(msgspec.Struct):
    """A face of a content and the person it is assigned to (merges followed)."""

    person_id: Annotated[str, Meta(description="The person (a merged id resolves here).")]
    name: Annotated[str | None, Meta(description="The person's name; null if unnamed.")]
    face_id: Annotated[str, Meta(description="The face (see /faces/{face_id}).")]


class PhotoDetail(msgspec.Struct):
    """One content (by hash) and every location holding it."""

    content_hash: Annotated[str, Meta(description=HASH)]
    size: Annotated[int, Meta(description="Size in bytes.")]
    media_kind: Annotated[Literal["image", "video"], Meta(description="'image' or 'video'.")]
    phash: Annotated[str | None, Meta(description="Perceptual hash (hex); null if unknown.")]
    dhash: Annotated[str | None, Meta(description="Difference hash (hex); null if unknown.")]
    width: Annotated[int | None, Meta(description=UPRIGHT_WIDTH)]
    height: Annotated[int | None, Meta(description=UPRIGHT_HEIGHT)]
    decode_error: Annotated[
        str | None, Meta(description="Why the image did not decode (no perceptual hashes).")
    ]
    locations: Annotated[
        list[Location], Meta(description="Live locations, by library then path (may be empty).")
    ]
    exif: Annotated[
        Exif | None, Meta(description="Metadata read from the bytes; null until extracted.")
    ]
    thumbnails: Annotated[
        dict[str, str],
        Meta(description="Size name ('small', 'large') -> " + THUMBNAIL_URL + "; empty if none."),
    ]
    tags: Annotated[list[str], Meta(description=TAGS)]
    people: Annotated[
        list[PhotoPerson],
        Meta(
            description="Every face in this content assigned to a person that is not "
            "hidden (named or not), by face id; empty if none."
        ),
    ]
