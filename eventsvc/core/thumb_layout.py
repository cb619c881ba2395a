"""Where thumbnails live under the thumbnail root, and the exact shapes of their paths.

The media deriver writes ``<hash[:2]>/<hash>-<size>.jpg``: 256 shard directories for
the whole library, no directory per content. Before issue 18 it wrote
``<hash[:2]>/<hash>/<size>.jpg``; ``ThumbnailReady`` events name those paths, so they
stay valid. Anything that serves, checks or deletes a thumbnail accepts these two
shapes and nothing else (:func:`parse_thumb_rel`): a path of another shape in an event,
a face crop under ``faces/`` or a stray file is never taken for a thumbnail.

One file may serve several size names: when an image is no larger than the small edge
both sizes are the same pixels, and the deriver writes one file and maps both names to
it (named after the smaller size).
"""

from __future__ import annotations

import re

__all__ = [
    "EXTENSION",
    "MEDIA_TYPE",
    "SIZE_NAMES",
    "legacy_thumb_rel",
    "parse_thumb_rel",
    "thumb_rel",
]

SIZE_NAMES = ("small", "large")
"""The thumbnail size names, smallest first (their edges: ``eventsvc.media.thumbs.SIZES``)."""
EXTENSION = "jpg"
MEDIA_TYPE = "image/jpeg"
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_SIZES = "|".join(SIZE_NAMES)
_FLAT_RE = re.compile(
    rf"^(?P<shard>[0-9a-f]{{2}})/(?P<hash>[0-9a-f]{{64}})-(?P<size>{_SIZES})\.jpg$"
)
_LEGACY_RE = re.compile(
    rf"^(?P<shard>[0-9a-f]{{2}})/(?P<hash>[0-9a-f]{{64}})/(?P<size>{_SIZES})\.jpg$"
)


def _check(content_hash: str, size: str) -> None:
    if not _HASH_RE.fullmatch(content_hash):
        raise ValueError(f"invalid content hash {content_hash!r}")
    if size not in SIZE_NAMES:
        raise ValueError(f"invalid thumbnail size name {size!r}")


def thumb_rel(content_hash: str, size: str) -> str:
    """``<hash[:2]>/<hash>-<size>.jpg``, the path the deriver writes (relative to the root)."""
    _check(content_hash, size)
    return f"{content_hash[:2]}/{content_hash}-{size}.{EXTENSION}"


def legacy_thumb_rel(content_hash: str, size: str) -> str:
    """``<hash[:2]>/<hash>/<size>.jpg``, the path written before issue 18."""
    _check(content_hash, size)
    return f"{content_hash[:2]}/{content_hash}/{size}.{EXTENSION}"


def parse_thumb_rel(rel: str) -> tuple[str, str] | None:
    """(content hash, size name) of a path of one of the two exact shapes (its shard the
    hash's first two digits), else None. ``rel`` is relative to the thumbnail root."""
    if not isinstance(rel, str):
        return None
    m = _FLAT_RE.fullmatch(rel) or _LEGACY_RE.fullmatch(rel)
    if m is None or m["hash"][:2] != m["shard"]:
        return None
    return m["hash"], m["size"]
