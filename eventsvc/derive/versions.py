"""Deriver versions: part of every once-only fact's key.

A fact (ExifExtracted, ThumbnailReady, FacesDetected, ClipEncoded, PlaylistReady)
carries the version of the deriver that made it (``deriver_version``; 1 in logs from
before versions existed). A deriver derives a content again when the subject's last fact
is of an older version, and the read model replaces the older fact when the newer one
lands (never the other way round). Bump a version when a fix changes what a deriver
records; `eventsvc rederive --stage STAGE` (and `up`, in the background) re-derives the
existing contents.
"""

from __future__ import annotations

__all__ = ["STAGE_FACTS", "VERSIONS"]

MEDIA_VERSION = 2
"""1: before issue 13. 2: frame dimensions from the image header, more date sources,
truncated media detected (issue 13, items 6-8)."""

FACES_VERSION = 1
CLIP_VERSION = 1
PLAYLIST_VERSION = 1

VERSIONS: dict[str, int] = {
    "media": MEDIA_VERSION,
    "faces": FACES_VERSION,
    "clip": CLIP_VERSION,
    "playlist": PLAYLIST_VERSION,
}
"""Stage (worker name) -> the version its facts carry now."""

STAGE_FACTS: dict[str, tuple[str, ...]] = {
    "media": ("ExifExtracted", "ThumbnailReady"),
    "faces": ("FacesDetected",),
    "clip": ("ClipEncoded",),
    "playlist": ("PlaylistReady",),
}
"""Stage -> the once-only facts it derives."""
