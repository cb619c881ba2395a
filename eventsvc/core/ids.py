"""Identities: file ids (a hash of library and path), library ids, media kinds."""

from __future__ import annotations

import re

import blake3

__all__ = [
    "IMAGE_EXTENSIONS",
    "LIBRARY_ID_RE",
    "VIDEO_EXTENSIONS",
    "file_id",
    "library_id_for_root",
    "media_kind",
]

LIBRARY_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
HASH_RE = re.compile(r"^[0-9a-f]{64}$")

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .png .gif .webp .bmp .tif .tiff .heic .heif .avif"
    " .dng .cr2 .cr3 .nef .nrw .arw .srf .sr2 .orf .rw2 .raf .pef .srw .x3f .3fr .erf".split()
)
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mts .m2ts .3gp .mpg .mpeg .wmv .flv".split()
)
RAW_EXTENSIONS = frozenset(
    ".dng .cr2 .cr3 .nef .nrw .arw .srf .sr2 .orf .rw2 .raf .pef .srw .x3f .3fr .erf".split()
)


def file_id(library_id: str, rel_path: bytes) -> str:
    """A file location's id: 128 bits of blake3 over (library, raw relative path).

    Paths never go into subject tokens; this id does.
    """
    h = blake3.blake3(library_id.encode() + b"\0" + rel_path)
    return h.hexdigest(length=16)


def library_id_for_root(root: bytes | str) -> str:
    """A stable library id for a root given on the command line."""
    raw = root if isinstance(root, bytes) else root.encode("utf-8", "surrogateescape")
    return "lib-" + blake3.blake3(raw).hexdigest(length=6)


def media_kind(name: str | bytes) -> str | None:
    """'image', 'video', or None for files we do not index (by extension)."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    dot = name.rfind(".")
    if dot < 0:
        return None
    ext = name[dot:].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None
