"""The decode jobs, as pure functions of a source (path, fd or file) and a pixel budget.

They run inside the decode sandbox's child processes (:mod:`eventsvc.media.sandbox`)
and, without a sandbox, in-process (tests, the bare benchmark loops). They import only
Pillow, numpy and, when a file needs them, pillow-heif, rawpy and imagehash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image

from eventsvc.media import thumbs
from eventsvc.media.thumbs import Source

__all__ = [
    "ThumbSet",
    "clip_image",
    "faces_image",
    "thumb_image",
    "thumbnail_set",
    "video_thumb_image",
    "wire_image",
]


@dataclass(frozen=True, slots=True)
class ThumbSet:
    """Encoded thumbnails (name -> JPEG bytes) and facts of the upright decoded image."""

    jpegs: dict[str, bytes]
    width: int
    height: int
    phash: str
    dhash: str


def thumb_image(source: Source, *, raw: bool, max_pixels: int | None) -> Image.Image:
    """The image the thumbnails are made of: a RAW's embedded preview when it has one."""
    edge = max(thumbs.SIZES.values())
    if raw:
        preview = thumbs.embedded_preview(source, max_edge=edge, max_pixels=max_pixels)
        if preview is not None:
            return preview
    return thumbs.decode_for_thumbs(source, max_edge=edge, max_pixels=max_pixels)


def thumbnail_set(img: Image.Image) -> ThumbSet:
    """Thumbnails, full upright size (not the reduced decode's), pHash and dHash of one
    decoded image."""
    import imagehash

    jpegs = thumbs.render_thumbnails(img)
    gray = img.convert("L")
    w, h = thumbs.full_size(img)
    return ThumbSet(jpegs, w, h, str(imagehash.phash(gray)), str(imagehash.dhash(gray)))


def faces_image(source: Source, max_edge: int, *, raw: bool, max_pixels: int | None) -> Image.Image:
    """Upright RGB, long edge at most ``max_edge``; RAW via its preview when it has one."""
    img: Image.Image | None = None
    if raw:
        img = thumbs.embedded_preview(source, max_edge=max_edge, max_pixels=max_pixels)
    if img is None:
        img = thumbs.decode_for_thumbs(source, max_edge=max_edge, max_pixels=max_pixels)
    if img.mode != "RGB":
        img = img.convert("RGB")
    if max(img.size) > max_edge:
        img.thumbnail((max_edge, max_edge), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return img


def clip_image(source: Source, max_edge: int, *, raw: bool, max_pixels: int | None) -> Image.Image:
    """Upright RGB decoded small (long edge at most 2 x ``max_edge``); RAW through its
    embedded preview."""
    img: Image.Image | None = None
    if raw:
        img = thumbs.embedded_preview(source, max_edge=max_edge, max_pixels=max_pixels)
    if img is None:
        img = thumbs.decode_for_thumbs(source, max_edge=max_edge, max_pixels=max_pixels)
    if max(img.size) > max_edge * 2:
        img.thumbnail((max_edge * 2, max_edge * 2), Image.Resampling.BILINEAR)
    return img


def video_thumb_image(source: Source, *, max_pixels: int | None) -> Image.Image:
    """A video's poster frame (10 % in), with at most 4 decoding threads (each costs
    address space, which the sandbox limits)."""
    threads = max(1, min(4, os.cpu_count() or 1))
    return thumbs.video_frame(source, 0.1, max_pixels=max_pixels, threads=threads)


def wire_image(source: Source, *, max_pixels: int | None) -> Image.Image:
    """An uploaded image as RGB, full size (within the pixel budget), no orientation."""
    with thumbs.open_source(source) as fh, Image.open(fh, formats=thumbs.open_formats()) as im:
        thumbs.check_budget(im, im.size, max_pixels)
        return im.convert("RGB")
