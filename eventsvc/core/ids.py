"""Identities: file ids (a hash of library and path), library ids, media kinds."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import blake3

__all__ = [
    "IMAGE_EXTENSIONS",
    "LIBRARY_ID_RE",
    "VIDEO_EXTENSIONS",
    "derive_library_id",
    "file_id",
    "library_id_for_root",
    "library_ids_named",
    "media_kind",
    "slug",
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


# ---- library ids (issue 13: from the root's name, unique, stable)
def slug(text: str) -> str:
    """``text`` as a library id: lower case ASCII letters, digits, ``-`` and ``_``
    (accents dropped, other runs become one ``-``), at most 48 characters; "lib" when
    nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    out = re.sub(r"[^a-z0-9_-]+", "-", ascii_text.lower())
    out = re.sub(r"-{2,}", "-", out).strip("-_")[:48].strip("-_")
    return out or "lib"


def derive_library_id(name: str, root: Path, taken: set[str]) -> str:
    """A new library's id: the slug of its name; when another library has it already,
    the slug plus 6 hex digits of a hash of the root (the same for the same root)."""
    base = slug(name)
    if base not in taken:
        return base
    return f"{base}-{library_id_for_root(str(root))[4:10]}"


def library_ids_named(token: str, known: Mapping[str, str]) -> list[str]:
    """Ids of the libraries ``token`` names, given ``known`` (id -> name): ``[token]`` when
    it is an id; else every library whose name it is, compared case-insensitively
    (``casefold``, surrounding blanks ignored), in id order; else ``[]``."""
    if token in known:
        return [token]
    want = token.strip().casefold()
    return sorted(i for i, name in known.items() if name.strip().casefold() == want)
