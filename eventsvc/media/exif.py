"""Metadata extraction: EXIF for still images (and, re-exported, the video probe).

Extraction is a pure function of the file's bytes. Hostile input never raises (except
:class:`MediaError` when the file cannot be read) and is bounded in time (a worker thread
abandoned after ``timeout_s``) and in bytes read (``max_bytes``). Problems are reported in
:attr:`ExifFacts.warnings`.

The concerns live in sibling modules: :mod:`~eventsvc.media.facts` (the result types),
:mod:`~eventsvc.media.bounded` (the hostile-input guard rails),
:mod:`~eventsvc.media.exif_values` (tag value coercion), :mod:`~eventsvc.media.exif_tags`
(tag sources and their mapping to facts), :mod:`~eventsvc.media.xmp`,
:mod:`~eventsvc.media.heif` and :mod:`~eventsvc.media.video_meta` (videos). The names
below stay importable from here.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from eventsvc.media.bounded import (
    Cancelled,
    GuardedReader,
    Warnings,
    log_capture,
    open_regular,
    run_bounded,
)
from eventsvc.media.exif_tags import (
    Tags,
    ciff_tags,
    facts_from_tags,
    has_tags,
    tags_from_exifread,
    tags_from_pillow,
)
from eventsvc.media.facts import ExifFacts, MediaError
from eventsvc.media.heif import is_heif, register_heif
from eventsvc.media.source import FdReader
from eventsvc.media.video_meta import DEFAULT_VIDEO_TIMEOUT_S, extract_video, frame_rotation
from eventsvc.media.xmp import fill_from_xmp, xmp_date, xmp_text

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_VIDEO_TIMEOUT_S",
    "ExifFacts",
    "MediaError",
    "extract_image",
    "extract_video",
    "frame_rotation",
    "is_heif",
    "xmp_date",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_S = 5.0
_HEAD_BYTES = 512
_READ_BUDGET = 200_000  # reads+seeks per parsing stage; real files need < 2,000


@dataclass(slots=True)
class _Scratch:
    """Results the image worker publishes as it goes (read back even after a timeout)."""

    warnings: Warnings
    tags: Tags | None = None
    size: tuple[int, int] | None = None
    orientation: int | None = None
    heif: bool = False
    xmp: str | None = None


def _header_formats() -> list[str]:
    """Pillow plugins allowed to parse headers here: those of our image types, none that
    reads pixels when opening (no ``load()`` is ever called on these images)."""
    from PIL import Image

    Image.init()
    allowed = ("JPEG", "PNG", "TIFF", "WEBP", "GIF", "BMP", "DIB", "HEIF", "AVIF")
    return [f for f in allowed if f in Image.OPEN]


def _read_image(bf: GuardedReader, scratch: _Scratch) -> None:
    from PIL import Image

    head = bf.read(_HEAD_BYTES)
    bf.seek(0)
    if not head:
        scratch.warnings.add("empty file")
        return
    scratch.heif = is_heif(head)
    if scratch.heif:
        register_heif()
        try:
            with Image.open(bf, formats=_header_formats()) as im:
                original = im.info.get("original_orientation")
                scratch.orientation = original if isinstance(original, int) else None
                width, height = im.size
                # pillow-heif hands back pixels with the orientation already applied.
                if scratch.orientation in (5, 6, 7, 8):
                    width, height = height, width
                scratch.size = (width, height)
                scratch.tags = tags_from_pillow(im.getexif(), scratch.warnings)
                scratch.xmp = xmp_text(im.info)
        except Cancelled:
            raise
        except Exception as exc:
            scratch.warnings.add(f"heif: {type(exc).__name__}: {exc}")
        return

    exif_bytes = _read_header(bf, scratch)  # first: cheap, and survives a timeout later

    import exifread

    exifread_failed = False
    bf.operations = 0
    try:
        bf.seek(0)
        raw = exifread.process_file(bf, details=False, extract_thumbnail=False)
        scratch.tags = tags_from_exifread(raw)
    except Cancelled:
        raise
    except Exception as exc:  # hostile EXIF: keep going with what the header gives
        exifread_failed = True
        scratch.warnings.add(f"exif: {type(exc).__name__}: {exc}")
    if exif_bytes and (exifread_failed or not has_tags(scratch.tags)):
        try:
            exif = Image.Exif()
            exif.load(exif_bytes)
            tags = tags_from_pillow(exif, scratch.warnings)
            scratch.tags = tags if has_tags(tags) else scratch.tags
        except Exception as exc:
            scratch.warnings.add(f"exif (pillow): {type(exc).__name__}: {exc}")
    if not has_tags(scratch.tags) and b"HEAPJPGM" in head:
        bf.operations = 0
        bf.seek(0)
        scratch.tags = ciff_tags(bf.read(1 << 16)) or scratch.tags


def _read_header(bf: GuardedReader, scratch: _Scratch) -> bytes | None:
    """Pixel size from the image header (no decode); returns Pillow's raw EXIF block."""
    from PIL import Image

    try:
        bf.seek(0)
        with Image.open(bf, formats=_header_formats()) as im:
            scratch.size = im.size
            tiff_tags = getattr(im, "tag_v2", None) if im.format == "TIFF" else None
            if tiff_tags is not None:  # Pillow >= 11 reports TIFF size post-orientation
                stored = (tiff_tags.get(0x0100), tiff_tags.get(0x0101))
                if all(isinstance(v, int) and v > 0 for v in stored):
                    scratch.size = (int(stored[0]), int(stored[1]))
            scratch.xmp = xmp_text(im.info)
            exif_bytes = im.info.get("exif")
            return exif_bytes if isinstance(exif_bytes, bytes) else None
    except Cancelled:
        raise
    except Exception as exc:
        scratch.warnings.add(f"image header: {type(exc).__name__}: {exc}")
    return None


def extract_image(
    path: str | os.PathLike[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ExifFacts:
    """Extract EXIF facts from a still image (JPEG, TIFF, PNG, WebP, HEIC/HEIF/AVIF...).

    Never raises on bad content; raises :class:`MediaError` only if the file is unreadable.
    """
    fh, size = open_regular(path)
    scratch = _Scratch(Warnings())
    if size > max_bytes:
        scratch.warnings.add(f"file is {size} bytes; only the first {max_bytes} were read")
    raw = FdReader(fh.fileno(), max_bytes, owner=fh)
    reader = GuardedReader(raw, _READ_BUDGET)
    capture = log_capture()

    def work() -> None:
        ident = threading.get_ident()
        capture.sinks[ident] = scratch.warnings
        try:
            with reader:
                _read_image(reader, scratch)
        except Cancelled:
            pass
        except Exception as exc:  # last resort: content never makes this function raise
            scratch.warnings.add(f"read error: {type(exc).__name__}: {exc}")
        finally:
            capture.sinks.pop(ident, None)
            raw.close()

    finished, _ = run_bounded(work, timeout_s, "exif-extract")
    if not finished:
        reader.cancelled = True
        scratch.warnings.add(f"extraction timed out after {timeout_s:g}s; result is partial")

    tags, header_size = scratch.tags, scratch.size
    fields = facts_from_tags(tags, scratch.warnings) if tags else {}
    if scratch.heif and scratch.orientation is not None:
        fields["orientation"] = scratch.orientation
    if scratch.xmp:
        fill_from_xmp(fields, scratch.xmp, scratch.warnings)
    if header_size and all(0 < v for v in header_size):
        fields["width"], fields["height"] = header_size
    return ExifFacts(**fields, warnings=scratch.warnings.snapshot())
