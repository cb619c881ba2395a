"""Face crops (GET /faces/{id}/thumbnail): cut from the photo's largest thumbnail, our
own JPEG in the data dir (a path of the exact shapes of :mod:`eventsvc.core.thumb_layout`,
new or pre-issue-18), and cached there under ``faces/``.

The read side decodes only those files of ours (a bounded decode: a file over
``MAX_THUMBNAIL_PIXELS`` is not one of ours and is skipped). A photo without a
thumbnail yet is cropped from its original only through the ``OriginalDecoder`` the
composition gives ``create_app`` (:class:`eventsvc.components.SandboxDecoder`: the
decode sandbox, never this process); without one, such a face has no crop yet (404).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Protocol

from litestar.exceptions import NotFoundException
from PIL import Image

from eventsvc.core.errors import PermanentError, TransientError
from eventsvc.core.files import write_atomic
from eventsvc.core.ids import RAW_EXTENSIONS
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.thumb_layout import parse_thumb_rel
from projections.api.rows import THUMBNAIL_SIZES
from projections.api.sendfile import open_location

__all__ = ["CROP_EDGE", "MAX_THUMBNAIL_PIXELS", "OriginalDecoder", "crop_path", "make_crop"]

CROP_EDGE = 256
ORIGINAL_EDGE = 1440
"""An original is decoded to this long edge (the large thumbnail's): more than the faces
worker saw."""
MAX_THUMBNAIL_PIXELS = 4096 * 4096
"""Our thumbnails are at most 1440 px on the long edge; a larger file is not ours."""


class OriginalDecoder(Protocol):
    def __call__(self, fd: int, max_edge: int, *, raw: bool) -> Image.Image:
        """The photo open at ``fd``, upright RGB, long edge at most ``max_edge``, decoded
        out of this process within its limits; raises PermanentError (it cannot be
        decoded: refused, over a budget, crashed) or TransientError."""
        ...


def crop_path(thumbs_dir: Path, face_id: str) -> Path:
    return Path(thumbs_dir) / "faces" / face_id[:2] / f"{face_id}.jpg"


def _is_raw(loc: dict[str, Any]) -> bool:
    return os.path.splitext(str(loc.get("path") or ""))[1].lower() in RAW_EXTENSIONS


def _largest_first(sizes: dict[str, Any]) -> list[str]:
    known = {name: i for i, name in enumerate(THUMBNAIL_SIZES)}
    return sorted(sizes, key=lambda n: -known.get(n, -1))


def _thumbnail(
    thumbs_dir: Path, sizes: dict[str, Any], content_hash: str | None = None
) -> Image.Image | None:
    """The largest of our thumbnails of the photo, decoded (bounded), or None. Only a
    path of the exact shapes the deriver writes (:mod:`eventsvc.core.thumb_layout`; of
    ``content_hash`` when given) that resolves inside the store is read."""
    base = Path(thumbs_dir).resolve()
    for name in _largest_first(sizes):
        parsed = parse_thumb_rel(sizes[name])
        if parsed is None or (content_hash is not None and parsed[0] != content_hash):
            continue
        path = (base / sizes[name]).resolve()
        if not (path.is_relative_to(base) and path.is_file()):
            continue
        with Image.open(path, formats=["JPEG"]) as img:
            if img.width * img.height > MAX_THUMBNAIL_PIXELS:
                continue
            return img.convert("RGB")
    return None


def _source_image(
    thumbs_dir: Path,
    src: dict[str, Any],
    roots: LibraryRoots | None = None,
    decode: OriginalDecoder | None = None,
) -> Image.Image:
    """The largest thumbnail (our own JPEG, 1440 px: more than the faces worker saw),
    else the original (first live location, opened under its configured root only),
    decoded by ``decode``: the API process never decodes an original itself."""
    sizes = src["sizes"] if isinstance(src["sizes"], dict) else {}
    found = _thumbnail(thumbs_dir, sizes, src.get("content_hash"))
    if found is not None:
        return found
    for loc in src["locations"]:  # opened under its configured root only
        opened = open_location(roots, loc["library_id"], loc["rel"], loc["size"], loc["mtime_ns"])
        if isinstance(opened, str):
            continue
        with opened:
            if decode is None:
                raise NotFoundException(detail="no thumbnail to crop the face from yet")
            try:
                return decode(opened.fileno(), ORIGINAL_EDGE, raw=_is_raw(loc))
            except (PermanentError, TransientError) as exc:
                raise NotFoundException(detail=f"the photo cannot be decoded: {exc}") from exc
    raise NotFoundException(detail="no thumbnail and no live location to crop the face from")


def make_crop(
    thumbs_dir: Path,
    face_id: str,
    src: dict[str, Any],
    roots: LibraryRoots | None = None,
    decode: OriginalDecoder | None = None,
) -> Path:
    """Crop the face (with a margin), at most CROP_EDGE px, cached under thumbs_dir/faces.
    ``src``: :func:`projections.api.people_queries.crop_sources`."""
    target = crop_path(thumbs_dir, face_id)
    if target.is_file():
        return target
    img = _source_image(thumbs_dir, src, roots, decode)
    w, h = img.size
    left, top, right, bottom = src["box"]
    cx, cy = (left + right) / 2 * w, (top + bottom) / 2 * h
    half = max((right - left) * w, (bottom - top) * h) * 0.8
    box = (
        max(int(cx - half), 0), max(int(cy - half), 0),
        min(int(cx + half), w), min(int(cy + half), h),
    )  # fmt: skip
    if box[2] <= box[0] or box[3] <= box[1]:
        raise NotFoundException(detail=f"face {face_id} has an empty box")
    crop = img.crop(box)
    crop.thumbnail((CROP_EDGE, CROP_EDGE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=88)
    write_atomic(target, buf.getvalue())
    return target
