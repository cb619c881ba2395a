"""Thumbnail decoding and rendering (JPEG), video poster frames, RAW embedded previews."""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps

from eventsvc.core.files import write_atomic
from eventsvc.core.thumb_layout import SIZE_NAMES, thumb_rel
from eventsvc.media.exif import MediaError, frame_rotation, is_heif
from eventsvc.media.heif import register_heif
from eventsvc.media.integrity import bmff_truncation, is_bmff
from eventsvc.media.source import FdReader, Source, open_source, source_name

__all__ = [
    "IMAGE_FORMATS",
    "JPEG_QUALITY",
    "SIZES",
    "BudgetExceeded",
    "FdReader",
    "Source",
    "check_budget",
    "decode_for_thumbs",
    "embedded_preview",
    "full_size",
    "megapixels",
    "open_formats",
    "open_source",
    "preview_image",
    "render_thumbnails",
    "thumb_path",
    "thumbnail_images",
    "to_rgb",
    "video_frame",
    "write_atomic",
]

SIZES: dict[str, int] = dict(zip(SIZE_NAMES, (256, 1440), strict=True))
"""Longest edge per size name: small 256, large 1440 (names: ``core.thumb_layout``)."""
FULL_SIZE = "eventsvc.full_size"
"""``Image.info`` key of a decoded image's full upright size (the header's frame size,
turned by the orientation), which the draft/reduced decode does not have."""
# A cut-short file must fail to decode, never come out as a partly grey/green picture:
# some libraries flip this global on; we never decode with it.
ImageFile.LOAD_TRUNCATED_IMAGES = False

JPEG_QUALITY = 85
_ROTATE_CW = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


def _srgb_profile() -> Any | None:
    try:
        from PIL import ImageCms
    except ImportError:
        return None
    return ImageCms.createProfile("sRGB")


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert via the embedded ICC profile when possible; None on failure."""
    if not icc or img.mode not in ("RGB", "CMYK", "L"):
        return img.convert("RGB")
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        target = _srgb_profile()
        converted = ImageCms.profileToProfile(img, source, target, outputMode="RGB")
    except Exception:  # bad/unsupported profile, or no littlecms: plain conversion
        return img.convert("RGB")
    return converted if converted is not None else img.convert("RGB")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer or float greyscale to 8-bit L, scaled not clipped."""
    arr = np.asarray(img, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return Image.new("L", img.size)
    low, high = float(finite.min()), float(finite.max())
    if img.mode.startswith("I;16") or (img.mode == "I" and low >= 0 and high <= 65535):
        low, high = 0.0, 65535.0 if high > 255 else 255.0
    scale = 255.0 / (high - low) if high > low else 0.0
    out = np.clip((np.nan_to_num(arr, nan=low) - low) * scale, 0, 255)
    return Image.fromarray(out.astype(np.uint8), mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB (sRGB when an ICC profile is embedded), alpha on white."""
    icc = img.info.get("icc_profile")
    mode = img.mode
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
        mode = img.mode
    if mode in ("RGBA", "LA", "RGBa", "La", "RGBX"):
        return _flatten_alpha(img) if mode != "RGBX" else img.convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _to_8bit(img).convert("RGB")
    if mode == "1":
        return img.convert("L").convert("RGB")
    if mode in ("RGB", "CMYK", "L"):
        return _to_srgb(img, icc if isinstance(icc, bytes) else None)
    try:
        return img.convert("RGB")
    except ValueError:
        return img.convert("RGBA").convert("RGB")


def _draft_size(size: tuple[int, int], max_edge: int) -> tuple[int, int]:
    """Smallest size with the original aspect whose longest edge is >= max_edge."""
    scale = max_edge / max(size)
    return (max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale)))


class BudgetExceeded(MediaError):
    """The image header says decoding it would exceed the pixel budget (nothing decoded)."""


IMAGE_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "GIF", "BMP", "DIB", "HEIF", "AVIF")
"""The formats we decode (Image.open is told so: no exotic plugin parses our input).
JPEG includes MPO; HEIF needs pillow-heif's opener registered."""


def open_formats(allowed: tuple[str, ...] = IMAGE_FORMATS) -> list[str]:
    """``allowed`` less those Pillow cannot open here (for ``Image.open(formats=...)``)."""
    Image.init()
    return [f for f in allowed if f in Image.OPEN]


def megapixels(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:.0f}" if mp >= 10 else f"{mp:.1f}"


def check_budget(im: Image.Image, stored: tuple[int, int], max_pixels: int | None) -> None:
    """Refuse, from the header only, an image whose decode would hold more than
    ``max_pixels`` pixels: the size it decodes at (a JPEG after ``draft``), or its full
    stored size for a progressive JPEG (libjpeg buffers every coefficient)."""
    if max_pixels is None:
        return
    w, h = stored
    held = im.size[0] * im.size[1]
    if im.format in ("JPEG", "MPO") and (im.info.get("progressive") or im.info.get("progression")):
        held = w * h
    if held <= max_pixels:
        return
    scaled = "" if held == w * h else f" ({megapixels(held)} MP even at reduced scale)"
    raise BudgetExceeded(
        f"image is {w}x{h} = {megapixels(w * h)} MP{scaled}, over the "
        f"{megapixels(max_pixels)} MP decode budget (EVENTSVC_DECODE_MAX_PIXELS)"
    )


def decode_for_thumbs(
    source: Source, *, max_edge: int, max_pixels: int | None = None
) -> Image.Image:
    """Decode an image upright in RGB, at the smallest JPEG DCT scale >= ``max_edge``
    (other formats: box-reduced right after decoding to >= 2 x ``max_edge``).

    EXIF orientation is applied (except for HEIF, whose decoder already rotates).
    With ``max_pixels``, the header is checked first (:class:`BudgetExceeded`).
    Raises :class:`MediaError` (chained to Pillow's error) for unreadable/undecodable files.
    """
    try:
        with open_source(source) as fh:
            return _decode(fh, max_edge, max_pixels)
    except (MediaError, MemoryError):
        raise
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, bomb errors...
        raise MediaError(f"cannot decode {source_name(source)}: {exc}") from exc


def _reduce(img: Image.Image, max_edge: int) -> Image.Image:
    """A box-filtered copy at an integer factor, still >= 2 x ``max_edge``: the big
    decode can be freed before any colour conversion copies it."""
    factor = max(img.size) // (2 * max_edge)
    if factor < 2:
        return img
    try:
        return img.reduce(factor)
    except (ValueError, NotImplementedError):  # modes without reduce (P, 1, I;16...)
        return img


def full_size(img: Image.Image) -> tuple[int, int]:
    """The full upright size of an image :func:`decode_for_thumbs` returned (its own size
    for any other image, e.g. a video frame or a RAW preview)."""
    size = img.info.get(FULL_SIZE)
    if isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return size
    return img.size


def _decode(fh: BinaryIO, max_edge: int, max_pixels: int | None) -> Image.Image:
    head = fh.read(512)
    fh.seek(0)
    heif = is_heif(head)
    if heif:
        register_heif()
        cut = bmff_truncation(fh)  # libheif decodes a cut-short file as a flat picture
        if cut is not None:
            raise MediaError(f"truncated HEIF file: {cut}")
        fh.seek(0)
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with Image.open(fh, formats=open_formats()) as im:
        stored = im.size  # the header's frame size (SOF, IHDR, ispe...), before draft
        if im.format in ("JPEG", "MPO") and max(im.size) > max_edge:
            im.draft("RGB", _draft_size(im.size, max_edge))
        check_budget(im, stored, max_pixels)
        im.load()
        icc = im.info.get("icc_profile")
        exif = None if heif else im.getexif()
        img: Image.Image = _reduce(im, max_edge)
        if img is not im:
            img.info.update(im.info)
            if exif is not None:
                img.info["exif"] = exif.tobytes()
        before = img.size
        if not heif:  # pillow-heif's size and pixels are already upright
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # hostile orientation tag: keep the stored orientation
                pass
        turned = img.size != before
        if icc and "icc_profile" not in img.info:
            img.info["icc_profile"] = icc
        out = to_rgb(img)
        out.info[FULL_SIZE] = (stored[1], stored[0]) if turned else stored
        return out


def thumbnail_images(img: Image.Image, sizes: Mapping[str, int] = SIZES) -> dict[str, Image.Image]:
    """The RGB pixels of each size (longest edge, never upscaled: an image smaller than
    a size is that size at its own pixels). Sizes that come out as the same pixels (the
    image is no larger than the smaller edge) are the very same Image object."""
    current = img if img.mode == "RGB" else to_rgb(img)
    out: dict[str, Image.Image] = {}
    for name, edge in sorted(sizes.items(), key=lambda item: item[1], reverse=True):
        if max(current.size) > edge:
            current = current.resize(
                _fit(current.size, edge), Image.Resampling.LANCZOS, reducing_gap=3.0
            )
        out[name] = current
    return out


def render_thumbnails(img: Image.Image, sizes: Mapping[str, int] = SIZES) -> dict[str, bytes]:
    """Encode one progressive JPEG per size (:func:`thumbnail_images`). Sizes of the
    same pixels share one encode: their values are the very same ``bytes`` object, and
    the deriver writes one file for them."""
    encoded: dict[int, bytes] = {}
    out: dict[str, bytes] = {}
    for name, pixels in thumbnail_images(img, sizes).items():
        if id(pixels) not in encoded:
            encoded[id(pixels)] = _encode_jpeg(pixels)
        out[name] = encoded[id(pixels)]
    return out


def _encode_jpeg(img: Image.Image) -> bytes:
    """Progressive JPEG bytes, encoded into an anonymous file rather than a BytesIO:
    Pillow releases the GIL while encoding only to a real file descriptor, and the
    media worker runs several jobs as threads of one process."""
    memfd = getattr(os, "memfd_create", None)
    try:
        fh = open(memfd("thumb", os.MFD_CLOEXEC), "w+b") if memfd else tempfile.TemporaryFile()
    except OSError:
        fh = tempfile.TemporaryFile()
    with fh:
        img.save(fh, "JPEG", quality=JPEG_QUALITY, progressive=True, optimize=False)
        fh.seek(0)
        return fh.read()


def _fit(size: tuple[int, int], edge: int) -> tuple[int, int]:
    scale = edge / max(size)
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


def thumb_path(root: str | os.PathLike[str], content_hash: str, size: str) -> Path:
    """``root/<hash[:2]>/<hash>-<size>.jpg`` (:mod:`eventsvc.core.thumb_layout`): 256
    shard directories in all. Raises ValueError unless ``content_hash`` is a blake3 hex
    digest and ``size`` one of :data:`SIZES` (nothing can escape ``root``)."""
    return Path(root) / thumb_rel(content_hash, size)


def video_frame(
    source: Source,
    at_fraction: float = 0.1,
    *,
    max_pixels: int | None = None,
    threads: int | None = None,
) -> Image.Image:
    """An upright RGB frame at ~``at_fraction`` of the video's duration (via PyAV).

    Seeks to the key frame before the target and decodes forward; if that yields nothing
    (e.g. MPEG-TS with sparse key frames) it decodes from the start instead. Raises
    :class:`MediaError` (chained to PyAV's error) when no frame can be had, and
    :class:`BudgetExceeded` when the stream's frame size is over ``max_pixels``.
    ``threads`` caps FFmpeg's decoding threads (default: its own choice).
    """
    name = source_name(source)
    with open_source(source) as fh:
        cut = bmff_truncation(fh) if is_bmff(fh.read(16)) else None
    if cut is not None:  # FFmpeg would still show the frames that are there
        raise MediaError(f"truncated video file: {cut}")
    try:
        for use_seek in (True, False):
            with _av_input(source) as target:
                image = _video_image(target, name, at_fraction, use_seek, max_pixels, threads)
            if image is not None:
                return image
    except (MediaError, MemoryError):
        raise
    except Exception as exc:  # PyAV maps FFmpeg failures to many exception types
        raise MediaError(f"cannot extract a frame from {name}: {exc}") from exc
    raise MediaError(f"{name}: no decodable video frame")


@contextlib.contextmanager
def _av_input(source: Source) -> Iterator[Any]:
    """A path for FFmpeg's own I/O, else a file object (an fd is read with pread)."""
    if isinstance(source, str | os.PathLike):
        yield os.fspath(source)
    else:
        with open_source(source) as fh:
            yield fh


def _video_image(
    target: Any,
    name: str,
    at_fraction: float,
    use_seek: bool,
    max_pixels: int | None,
    threads: int | None,
) -> Image.Image | None:
    import av

    with av.open(target, metadata_errors="ignore") as container:
        if not container.streams.video:
            raise MediaError(f"{name}: no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise MediaError(f"{name}: no decoder for the video stream")
        if max_pixels is not None:
            w, h = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
            if w * h > max_pixels:
                raise BudgetExceeded(
                    f"video frames are {w}x{h} = {megapixels(w * h)} MP, over the "
                    f"{megapixels(max_pixels)} MP decode budget (EVENTSVC_DECODE_MAX_PIXELS)"
                )
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        frame = _frame_near(container, stream, at_fraction, use_seek)
        if frame is None:
            return None
        image = frame.to_image()
        rotate = _ROTATE_CW.get(frame_rotation(frame))
    return image.transpose(rotate) if rotate is not None else image


def _frame_near(container: Any, stream: Any, at_fraction: float, use_seek: bool) -> Any | None:
    import av

    duration = _duration_s(container, stream)
    offset = max(0.0, min(1.0, at_fraction)) * duration if duration else 0.0
    start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    target = start + offset
    if use_seek and offset > 0 and stream.time_base:
        try:
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
        except av.FFmpegError:
            return None
    chosen = None
    try:
        for frame in container.decode(stream):
            chosen = frame
            if frame.time is None or frame.time >= target - 1e-3:  # float slack
                break
    except av.FFmpegError:
        if chosen is None:
            raise
    return chosen


def _duration_s(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def embedded_preview(
    source: Source, *, max_edge: int | None = None, max_pixels: int | None = None
) -> Image.Image | None:
    """The camera's embedded preview of a RAW file, upright RGB; None without rawpy, or
    when the file has no usable preview. A JPEG preview is decoded at the smallest DCT
    scale >= ``max_edge``; ``max_pixels`` bounds it like any image
    (:class:`BudgetExceeded`)."""
    try:
        import rawpy
    except ImportError:
        return None
    try:
        with open_source(source) as fh, rawpy.imread(fh) as raw:
            thumb = raw.extract_thumb()
            flip = int(getattr(raw.sizes, "flip", 0) or 0)
    except (rawpy.LibRawError, OSError, ValueError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        return preview_image("jpeg", thumb.data, flip, max_edge=max_edge, max_pixels=max_pixels)
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        return preview_image("bitmap", thumb.data, flip)
    return None


def preview_image(
    kind: str, data: Any, flip: int, *, max_edge: int | None = None, max_pixels: int | None = None
) -> Image.Image | None:
    """An embedded preview (JPEG bytes or an RGB array) upright, given LibRaw's flip.

    The preview's own EXIF orientation wins over the flip when it has one.
    """
    if kind == "jpeg":
        try:
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
                stored = im.size
                if max_edge is not None and max(im.size) > max_edge:
                    im.draft("RGB", _draft_size(im.size, max_edge))
                check_budget(im, stored, max_pixels)
                im.load()
                if im.getexif().get(0x0112, 1) in range(2, 9):
                    return to_rgb(ImageOps.exif_transpose(im))
                image = to_rgb(im)
        except (OSError, ValueError, SyntaxError):
            return None
    elif kind == "bitmap":
        image = Image.fromarray(np.ascontiguousarray(data)).convert("RGB")
    else:
        return None
    # LibRaw flip: 3 = 180, 5 = 90 counter-clockwise, 6 = 90 clockwise.
    rotate = {
        3: Image.Transpose.ROTATE_180,
        5: Image.Transpose.ROTATE_90,
        6: Image.Transpose.ROTATE_270,
    }.get(flip)
    return image.transpose(rotate) if rotate is not None else image
