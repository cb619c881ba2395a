"""Metadata extraction: EXIF for still images, container metadata for videos.

Both extractors are pure functions of the file's bytes. Hostile input never raises
(except :class:`MediaError` when the file cannot be read or, for videos, opened) and is
bounded in time (a worker thread abandoned after ``timeout_s``) and in bytes read
(``max_bytes``). Problems are reported in :attr:`ExifFacts.warnings`.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from eventsvc.media.source import FdReader

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
DEFAULT_VIDEO_TIMEOUT_S = 15.0
_MAX_WARNINGS = 16
_MAX_WARNING_LEN = 200
_HEAD_BYTES = 512
_READ_BUDGET = 200_000  # reads+seeks per parsing stage; real files need < 2,000

# ISO-BMFF brands of still-image files (HEIF/HEIC/AVIF), major or compatible.
_HEIF_BRANDS = frozenset(
    b"heic heix heim heis hevc hevx hevm hevs mif1 mif2 msf1 heif avif avis".split()
)

_T = TypeVar("_T")
Tags = dict[str, dict[int, Any]]  # IFD group ("Image", "EXIF", "GPS") -> tag id -> value


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


# --------------------------------------------------------------------------- helpers


class _Warnings:
    """A small, bounded, de-duplicated list of warning strings (thread-safe enough)."""

    def __init__(self) -> None:
        self._items: list[str] = []

    def add(self, message: str) -> None:
        msg = " ".join(str(message).split())[:_MAX_WARNING_LEN]
        if msg and msg not in self._items and len(self._items) < _MAX_WARNINGS:
            self._items.append(msg)

    def snapshot(self) -> tuple[str, ...]:
        return tuple(self._items)


class _LogCapture(logging.Filter):
    """Routes exifread's log records emitted by our worker threads into their warnings."""

    def __init__(self) -> None:
        super().__init__()
        self.sinks: dict[int, _Warnings] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        sink = self.sinks.get(record.thread or 0)
        if sink is None:
            return True
        if record.levelno >= logging.WARNING:
            try:
                sink.add("exifread: " + record.getMessage())
            except Exception:  # a malformed log call must not break extraction
                sink.add("exifread: unformattable log message")
        return False


_capture: _LogCapture | None = None
_capture_lock = threading.Lock()


def _log_capture() -> _LogCapture:
    global _capture
    with _capture_lock:
        if _capture is None:
            _capture = _LogCapture()
            logging.getLogger("exifread").addFilter(_capture)
        return _capture


class _Cancelled(Exception):
    """Raised inside an abandoned worker at its next read or seek."""


class _TooMuchWork(Exception):
    """Raised when a parser performs more reads/seeks than any sane file needs."""


class _GuardedReader(io.BufferedReader):
    """Buffered reader that stops a parser once cancelled or after ``budget`` operations.

    Every read/seek is checked, including those served from the buffer, so an abandoned
    worker stops at once and hostile structure (IFD chains, huge entry counts) cannot
    spin or allocate without bound.
    """

    def __init__(self, raw: io.RawIOBase, budget: int) -> None:
        super().__init__(raw, 64 * 1024)
        self.cancelled = False
        self.operations = 0
        self._budget = budget

    def _tick(self) -> None:
        if self.cancelled:
            raise _Cancelled("extraction abandoned")
        self.operations += 1
        if self.operations > self._budget:
            raise _TooMuchWork(f"gave up after {self._budget} reads (hostile structure?)")

    def read(self, size: int | None = -1) -> bytes:
        self._tick()
        return super().read(size)

    def read1(self, size: int = -1) -> bytes:
        self._tick()
        return super().read1(size)

    def readinto(self, buffer: Any) -> int:
        self._tick()
        return super().readinto(buffer)

    def peek(self, size: int = 0) -> bytes:
        self._tick()
        return super().peek(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._tick()
        return super().seek(offset, whence)


def _run_bounded(fn: Callable[[], _T], timeout_s: float, name: str) -> tuple[bool, _T | None]:
    """Run ``fn`` in a daemon thread; (finished, result). Exceptions propagate."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    worker.join(max(0.0, timeout_s))
    if worker.is_alive():
        return False, None
    if "error" in box:
        raise box["error"]
    return True, box.get("result")


def _open_regular(path: str | os.PathLike[str]) -> tuple[io.FileIO, int]:
    """Open a regular file for reading or raise MediaError."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise MediaError(f"{os.fspath(path)!s}: not a regular file")
        fh = io.FileIO(path, "r")
    except OSError as exc:
        raise MediaError(f"cannot read {os.fspath(path)!s}: {exc}") from exc
    return fh, st.st_size


def is_heif(head: bytes) -> bool:
    """True if ``head`` (the first few hundred bytes) is an ISO-BMFF still image."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return False
    size = int.from_bytes(head[0:4], "big")
    end = min(len(head), size if size >= 16 else 16)
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    return any(b in _HEIF_BRANDS for b in brands)


# ------------------------------------------------------------------ value normalisers


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if value and all(isinstance(x, int) and 0 <= x < 256 for x in value):
            value = bytes(value)
        elif len(value) == 1:
            return _text(value[0])
        else:
            return None
    if isinstance(value, bytes):
        raw = value.split(b"\x00", 1)[0]
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = value.split("\x00", 1)[0].strip()
    return text or None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return _num(value[0]) if len(value) == 1 else None
    num = getattr(value, "numerator", None)
    den = getattr(value, "denominator", None)
    if isinstance(num, int) and isinstance(den, int):
        return num / den if den else None
    if isinstance(value, str | bytes):
        try:
            result = float(value)
        except ValueError:
            return None
        return result if math.isfinite(result) else None
    return None


def _nums(value: Any) -> list[float]:
    """All numbers of a (possibly multi-valued) tag, or [] if any is unusable."""
    if value is None:
        return []
    items = list(value) if isinstance(value, list | tuple) else [value]
    out = [_num(x) for x in items]
    return [] if any(x is None for x in out) else [x for x in out if x is not None]


def _first(value: Any) -> float | None:
    items = _nums(value) if isinstance(value, list | tuple) else [_num(value)]
    return items[0] if items and items[0] is not None else None


def _int(value: Any) -> int | None:
    if isinstance(value, bytes) and len(value) == 1:
        return value[0]
    number = _first(value)
    if number is None or not number.is_integer():
        return None
    return int(number)


def _positive(value: float | None, limit: float = 1e9) -> float | None:
    return value if value is not None and 0 < value < limit else None


_EXIF_DATE = re.compile(
    r"^\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})[ T]+(\d{1,2})[:.](\d{1,2})"
    r"(?:[:.](\d{1,2})(?:[.,](\d+))?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def _offset(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if text.upper() == "Z":
        return "+00:00"
    match = _OFFSET.match(text)
    if not match or int(match[2]) > 14 or int(match[3]) > 59:
        return None
    return f"{match[1]}{match[2]}:{match[3]}"


def _exif_datetime(
    value: Any, subsec: Any, warnings: _Warnings, label: str
) -> tuple[str | None, str | None]:
    """Parse an EXIF date string into (local ISO string, embedded offset)."""
    text = _text(value)
    if text is None:
        return None, None
    match = _EXIF_DATE.match(text)
    if not match:
        warnings.add(f"{label}: unparseable date {text[:40]!r}")
        return None, None
    year, month, day, hour, minute = (int(match[i]) for i in range(1, 6))
    second = int(match[6] or 0)
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        warnings.add(f"{label}: invalid date {text[:40]!r}")
        return None, None
    if not 1900 <= year <= 2100:
        warnings.add(f"{label}: implausible year {year}")
        return None, None
    digits = match[7]
    sub = _text(subsec)
    if not digits and sub and sub.isdigit():
        digits = sub
    iso = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if digits:
        iso += "." + (digits + "000")[:3]
    return iso, _offset(match[8]) if match[8] else None


def _gps_coord(value: Any, ref: Any, negative: str, limit: float) -> float | None:
    parts = _nums(value)
    if not parts or len(parts) > 3:
        return None
    degrees = parts[0] + sum(p / 60**i for i, p in enumerate(parts[1:], start=1))
    ref_text = _text(ref)
    if ref_text and ref_text[0].upper() == negative:
        degrees = -abs(degrees)
    if not -limit <= degrees <= limit:
        return None
    return round(degrees, 7)


# ----------------------------------------------------------------------- tag sources


def _tags_from_exifread(raw: Mapping[str, Any]) -> Tags:
    tags: Tags = {"Image": {}, "EXIF": {}, "GPS": {}}
    for key, tag in raw.items():
        group = tags.get(key.split(" ", 1)[0]) if isinstance(key, str) else None
        tag_id = getattr(tag, "tag", None)
        if group is not None and isinstance(tag_id, int):
            group.setdefault(tag_id, getattr(tag, "values", None))
    return tags


def _tags_from_pillow(exif: Any, warnings: _Warnings) -> Tags:
    tags: Tags = {"Image": {}, "EXIF": {}, "GPS": {}}
    try:
        tags["Image"] = {int(k): v for k, v in exif.items()}
    except Exception as exc:
        warnings.add(f"exif: {type(exc).__name__}: {exc}")
    for group, pointer in (("EXIF", 0x8769), ("GPS", 0x8825)):
        try:
            tags[group] = {int(k): v for k, v in exif.get_ifd(pointer).items()}
        except Exception as exc:
            warnings.add(f"exif {group} IFD: {type(exc).__name__}: {exc}")
    return tags


def _ciff_tags(data: bytes) -> Tags | None:
    """Make/model/date from a Canon CIFF heap in a JPEG APP0 segment (old PowerShots)."""
    idx = data.find(b"HEAPJPGM", 0, 4096)
    start = idx - 6
    if idx < 8 or data[start : start + 2] not in (b"II", b"MM") or data[start - 3] != 0xE0:
        return None
    order = "little" if data[start : start + 2] == b"II" else "big"
    end = min(len(data), start - 2 + int.from_bytes(data[start - 2 : start], "big"))
    heap = start + int.from_bytes(data[start + 2 : start + 6], order)
    tags: Tags = {"Image": {}, "EXIF": {}, "GPS": {}}
    _ciff_dir(data, heap, end, order, 0, tags)
    return tags if _has_tags(tags) else None


def _ciff_dir(data: bytes, start: int, end: int, order: str, depth: int, tags: Tags) -> None:
    def u(pos: int, size: int) -> int:
        return int.from_bytes(data[pos : pos + size], order)

    if depth > 4 or not 0 <= start < end - 4 or end > len(data):
        return
    table = start + u(end - 4, 4)
    count = u(table, 2) if start <= table < end - 2 else 0
    if count > 1024 or table + 2 + 10 * count > end:
        return
    for entry in range(table + 2, table + 2 + 10 * count, 10):
        tag, size, offset = u(entry, 2), u(entry + 2, 4), u(entry + 6, 4)
        if tag & 0xC000 == 0x4000:
            value = data[entry + 2 : entry + 10]
        elif start + offset + size <= end:
            value = data[start + offset : start + offset + size]
        else:
            continue
        if tag & 0xC000 == 0 and tag & 0x3800 in (0x2800, 0x3000):
            _ciff_dir(data, start + offset, start + offset + size, order, depth + 1, tags)
        elif tag & 0x3FFF == 0x080A:
            parts = value.split(b"\x00")
            tags["Image"][0x010F] = parts[0]
            if len(parts) > 1:
                tags["Image"][0x0110] = parts[1]
        elif tag & 0x3FFF == 0x180E and len(value) >= 4:
            stamp = datetime.fromtimestamp(int.from_bytes(value[:4], order), UTC)
            tags["EXIF"][0x9003] = stamp.strftime("%Y:%m:%d %H:%M:%S")


_XMP_ORIENTATION = re.compile(r"tiff:Orientation(?:=[\"']|>)\s*([1-8])\b")
_XMP_DATE = re.compile(r"exif:DateTimeOriginal(?:=[\"']|>)\s*([^\"'<]{10,40})")
_MAX_XMP = 1 << 20
_XMP_CREATED = (
    re.compile(r"\b(?:xmp|xap):CreateDate(?:\s*=\s*[\"']|\s*>)\s*([^\"'<]{4,40})"),
    re.compile(r"\bphotoshop:DateCreated(?:\s*=\s*[\"']|\s*>)\s*([^\"'<]{4,40})"),
)
_XMP_DAY = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})\s*$")


def xmp_date(xmp: str) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(local ISO date, UTC offset, warnings) of an XMP packet's ``xmp:CreateDate``, else
    its ``photoshop:DateCreated``. The text is matched, never parsed as XML (no entities,
    no DTD), and only its first MiB is read; a date without a time is midnight."""
    warnings = _Warnings()
    text = xmp[:_MAX_XMP]
    for pattern in _XMP_CREATED:
        match = pattern.search(text)
        if not match:
            continue
        value = match[1].strip()
        day = _XMP_DAY.match(value)
        if day:
            value = f"{day[1]}-{day[2]}-{day[3]}T00:00:00"
        date, offset = _exif_datetime(value, None, warnings, "XMP date")
        if date:
            return date, offset, warnings.snapshot()
    return None, None, warnings.snapshot()


def _xmp_text(info: Mapping[str, Any]) -> str | None:
    """The XMP packet Pillow found in the header (JPEG APP1, PNG iTXt, WebP, HEIF)."""
    raw = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(raw, bytes):
        return raw[:_MAX_XMP].decode("utf-8", "replace")
    return raw[:_MAX_XMP] if isinstance(raw, str) else None


def _fill_from_xmp(fields: dict[str, Any], xmp: str, warnings: _Warnings) -> None:
    """Orientation and DateTimeOriginal from XMP when EXIF has none (edited files)."""
    if fields.get("orientation") is None:
        match = _XMP_ORIENTATION.search(xmp)
        if match:
            fields["orientation"] = int(match[1])
    date, offset, problems = xmp_date(xmp)
    for problem in problems:
        warnings.add(problem)
    if date:
        fields["xmp_date"] = date
        if fields.get("utc_offset") is None and fields.get("date_original") is None:
            fields["utc_offset"] = offset
    if fields.get("date_original") is None:
        match = _XMP_DATE.search(xmp)
        if match:
            date, offset = _exif_datetime(match[1], None, warnings, "XMP DateTimeOriginal")
            fields["date_original"] = date
            if date and fields.get("utc_offset") is None:
                fields["utc_offset"] = offset


def _has_tags(tags: Tags | None) -> bool:
    return bool(tags and any(tags.values()))


def _facts_from_tags(tags: Tags, warnings: _Warnings) -> dict[str, Any]:
    """Map raw tag values to ExifFacts field values."""
    img0, ex0, gps = tags.get("Image", {}), tags.get("EXIF", {}), tags.get("GPS", {})
    # A tag where it belongs, else in the other IFD: older cameras write
    # DateTimeOriginal (and others Make/Model) in IFD0 / the EXIF IFD; exiftool reads both.
    img: dict[int, Any] = {**ex0, **img0}
    ex: dict[int, Any] = {**img0, **ex0}
    out: dict[str, Any] = {
        "make": _text(img.get(0x010F)),
        "model": _text(img.get(0x0110)),
        "lens": _text(ex.get(0xA434)),
        "focal_length": _positive(_first(ex.get(0x920A)), 1e5),
        "f_number": _positive(_first(ex.get(0x829D)), 1e3),
        "exposure_time": _positive(_first(ex.get(0x829A)), 1e6),
    }
    iso = _int(ex.get(0x8827))
    out["iso"] = iso if iso is not None and 0 < iso < 10_000_000 else None

    if 0x0112 in img:
        orientation = _int(img.get(0x0112))
        if orientation is not None and 1 <= orientation <= 8:
            out["orientation"] = orientation
        else:
            warnings.add(f"orientation: invalid value {img.get(0x0112)!r:.40}")

    out["date_original"], off_orig = _exif_datetime(
        ex.get(0x9003), ex.get(0x9291), warnings, "DateTimeOriginal"
    )
    out["date_digitized"], off_dig = _exif_datetime(
        ex.get(0x9004), ex.get(0x9292), warnings, "DateTimeDigitized"
    )
    out["utc_offset"] = (
        _offset(ex.get(0x9011))
        or off_orig
        or _offset(ex.get(0x9012))
        or off_dig
        or _offset(ex.get(0x9010))
    )

    # width/height: from the image's own header only (see extract_image), never from
    # EXIF PixelXDimension/ImageWidth, which editors and cameras leave stale.

    if gps:
        lat = _gps_coord(gps.get(2), gps.get(1), "S", 90.0)
        lon = _gps_coord(gps.get(4), gps.get(3), "W", 180.0)
        if lat is not None and lon is not None:
            if lat == 0.0 and lon == 0.0:
                warnings.add("gps: position 0,0 ignored")
            else:
                out["gps_lat"], out["gps_lon"] = lat, lon
        elif 2 in gps or 4 in gps:
            warnings.add("gps: unusable latitude/longitude")
        alt = _first(gps.get(6))
        if alt is not None and -20_000 < alt < 100_000:
            out["gps_alt"] = round(-abs(alt) if _int(gps.get(5)) == 1 else alt, 3)
    return out


# ------------------------------------------------------------------------ image path


@dataclass(slots=True)
class _Scratch:
    """Results the image worker publishes as it goes (read back even after a timeout)."""

    warnings: _Warnings
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


def _ensure_heif() -> None:
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()


def _read_image(bf: _GuardedReader, scratch: _Scratch) -> None:
    from PIL import Image

    head = bf.read(_HEAD_BYTES)
    bf.seek(0)
    if not head:
        scratch.warnings.add("empty file")
        return
    scratch.heif = is_heif(head)
    if scratch.heif:
        _ensure_heif()
        try:
            with Image.open(bf, formats=_header_formats()) as im:
                original = im.info.get("original_orientation")
                scratch.orientation = original if isinstance(original, int) else None
                width, height = im.size
                # pillow-heif hands back pixels with the orientation already applied.
                if scratch.orientation in (5, 6, 7, 8):
                    width, height = height, width
                scratch.size = (width, height)
                scratch.tags = _tags_from_pillow(im.getexif(), scratch.warnings)
                scratch.xmp = _xmp_text(im.info)
        except _Cancelled:
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
        scratch.tags = _tags_from_exifread(raw)
    except _Cancelled:
        raise
    except Exception as exc:  # hostile EXIF: keep going with what the header gives
        exifread_failed = True
        scratch.warnings.add(f"exif: {type(exc).__name__}: {exc}")
    if exif_bytes and (exifread_failed or not _has_tags(scratch.tags)):
        try:
            exif = Image.Exif()
            exif.load(exif_bytes)
            tags = _tags_from_pillow(exif, scratch.warnings)
            scratch.tags = tags if _has_tags(tags) else scratch.tags
        except Exception as exc:
            scratch.warnings.add(f"exif (pillow): {type(exc).__name__}: {exc}")
    if not _has_tags(scratch.tags) and b"HEAPJPGM" in head:
        bf.operations = 0
        bf.seek(0)
        scratch.tags = _ciff_tags(bf.read(1 << 16)) or scratch.tags


def _read_header(bf: _GuardedReader, scratch: _Scratch) -> bytes | None:
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
            scratch.xmp = _xmp_text(im.info)
            exif_bytes = im.info.get("exif")
            return exif_bytes if isinstance(exif_bytes, bytes) else None
    except _Cancelled:
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
    fh, size = _open_regular(path)
    scratch = _Scratch(_Warnings())
    if size > max_bytes:
        scratch.warnings.add(f"file is {size} bytes; only the first {max_bytes} were read")
    raw = FdReader(fh.fileno(), max_bytes, owner=fh)
    reader = _GuardedReader(raw, _READ_BUDGET)
    capture = _log_capture()

    def work() -> None:
        ident = threading.get_ident()
        capture.sinks[ident] = scratch.warnings
        try:
            with reader:
                _read_image(reader, scratch)
        except _Cancelled:
            pass
        except Exception as exc:  # last resort: content never makes this function raise
            scratch.warnings.add(f"read error: {type(exc).__name__}: {exc}")
        finally:
            capture.sinks.pop(ident, None)
            raw.close()

    finished, _ = _run_bounded(work, timeout_s, "exif-extract")
    if not finished:
        reader.cancelled = True
        scratch.warnings.add(f"extraction timed out after {timeout_s:g}s; result is partial")

    tags, header_size = scratch.tags, scratch.size
    fields = _facts_from_tags(tags, scratch.warnings) if tags else {}
    if scratch.heif and scratch.orientation is not None:
        fields["orientation"] = scratch.orientation
    if scratch.xmp:
        _fill_from_xmp(fields, scratch.xmp, scratch.warnings)
    if header_size and all(0 < v for v in header_size):
        fields["width"], fields["height"] = header_size
    return ExifFacts(**fields, warnings=scratch.warnings.snapshot())


# ------------------------------------------------------------------------ video path

_ISO6709 = re.compile(r"^\s*([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?")
_QT_DATE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?"
)


def frame_rotation(frame: Any) -> int:
    """Clockwise degrees (0/90/180/270) needed to show a decoded PyAV frame upright."""
    ccw = getattr(frame, "rotation", 0) or 0
    try:
        return round(-float(ccw) / 90.0) * 90 % 360
    except (TypeError, ValueError, OverflowError):
        return 0


def _tag_rotation(value: Any) -> int | None:
    number = _num(value)
    if number is None:
        return None
    return round(number / 90.0) * 90 % 360


def _utc_iso(value: str | None, warnings: _Warnings) -> str | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        warnings.add(f"creation_time: unparseable {value[:40]!r}")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    if parsed.year <= 1970 or parsed.year > 2100:  # unset QuickTime/Unix epoch stamps
        warnings.add(f"creation_time: implausible {value[:40]!r} ignored")
        return None
    text = parsed.strftime("%Y-%m-%dT%H:%M:%S")
    if parsed.microsecond:
        text += f".{parsed.microsecond // 1000:03d}"
    return text + "Z"


def _video_metadata(metas: Iterable[Mapping[str, str]], warnings: _Warnings) -> dict[str, Any]:
    merged: dict[str, str] = {}
    for meta in metas:
        for key, value in meta.items():
            merged.setdefault(str(key).lower(), str(value))
    out: dict[str, Any] = {
        "creation_time": _utc_iso(merged.get("creation_time"), warnings),
        "make": _text(merged.get("com.apple.quicktime.make") or merged.get("make")),
        "model": _text(merged.get("com.apple.quicktime.model") or merged.get("model")),
    }
    local = _QT_DATE.match(merged.get("com.apple.quicktime.creationdate", ""))
    if local:
        frac = local[7]
        out["date_original"] = (
            f"{local[1]}-{local[2]}-{local[3]}T{local[4]}:{local[5]}:{local[6]}"
            + (f".{(frac + '000')[:3]}" if frac else "")
        )
        out["utc_offset"] = _offset(local[8]) if local[8] else None
    location = (
        merged.get("com.apple.quicktime.location.iso6709")
        or merged.get("location")
        or merged.get("location-eng")
    )
    match = _ISO6709.match(location or "")
    if match:
        lat, lon = float(match[1]), float(match[2])
        if -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0):
            out["gps_lat"], out["gps_lon"] = round(lat, 7), round(lon, 7)
            if match[3]:
                out["gps_alt"] = round(float(match[3]), 3)
        else:
            warnings.add(f"location: unusable {location[:40]!r}")
    rotate = _tag_rotation(merged.get("rotate"))
    if rotate is not None:
        out["rotation"] = rotate
    return out


def _probe_video(path: str, warnings: _Warnings) -> dict[str, Any]:
    import av

    from eventsvc.media.integrity import bmff_truncation_at

    try:
        cut = bmff_truncation_at(path)
    except OSError as exc:
        raise MediaError(f"cannot read {path}: {exc}") from exc
    if cut is not None:
        raise MediaError(f"{path}: truncated: {cut}")
    from eventsvc.media.probe import ContainerUnreadable, first_streams, open_container

    try:
        container = open_container(path)  # the one video probe's open
    except ContainerUnreadable as exc:
        raise MediaError(f"cannot open {path} as a media container: {exc.__cause__}") from exc
    with container:
        video, audio = first_streams(container)
        if video is None and audio is None:
            raise MediaError(f"{path}: no audio or video stream")
        metas: list[Mapping[str, str]] = [container.metadata]
        if video is not None:
            metas.append(video.metadata)
        if audio is not None:
            metas.append(audio.metadata)
        out = _video_metadata(metas, warnings)
        out["duration"] = _duration(container, video or audio)
        out["audio_codec"] = _codec_name(audio, warnings)
        if video is None:
            return out
        ctx = video.codec_context
        out["video_codec"] = _codec_name(video, warnings)
        out["width"] = (ctx.width if ctx is not None else 0) or None
        out["height"] = (ctx.height if ctx is not None else 0) or None
        if ctx is None:
            return out
        if "rotation" not in out:
            try:
                frame = next(container.decode(video), None)
            except (av.FFmpegError, ValueError) as exc:
                raise MediaError(f"{path}: video stream does not decode: {exc}") from exc
            if frame is None:
                warnings.add("video: no frame decoded")
            else:
                out["rotation"] = frame_rotation(frame)
        _check_tail(container, video, out["duration"], path, warnings)
    return out


def _check_tail(
    container: Any, stream: Any, duration: float | None, path: str, warnings: _Warnings
) -> None:
    """MP4/MOV: read one packet near the end; a cut-short file keeps its index, not its data."""
    import av

    names = str(getattr(container.format, "name", "")).split(",")
    if "mov" not in names or not duration or not stream.time_base:
        return
    target = int(duration * 0.98 / stream.time_base) + (stream.start_time or 0)
    try:
        container.seek(target, stream=stream, backward=True, any_frame=True)
    except (av.FFmpegError, ValueError) as exc:  # unseekable formats: nothing to conclude
        warnings.add(f"video: tail check skipped: {exc}")
        return
    try:
        packet = next(iter(container.demux(stream)), None)
    except (av.FFmpegError, ValueError) as exc:
        raise MediaError(f"{path}: video data near the end is unreadable: {exc}") from exc
    if packet is None or not packet.size:
        raise MediaError(f"{path}: truncated: no video data near the end of the stream")


def _codec_name(stream: Any, warnings: _Warnings) -> str | None:
    if stream is None:
        return None
    ctx = stream.codec_context
    if ctx is None:  # no decoder for this codec in this FFmpeg build
        warnings.add(f"{stream.type}: no decoder available")
        return None
    return str(ctx.name)


def _duration(container: Any, stream: Any) -> float | None:
    from eventsvc.media.probe import duration_of

    seconds = duration_of(container, stream)
    return None if seconds is None else round(seconds, 3)


def extract_video(
    path: str | os.PathLike[str], *, timeout_s: float = DEFAULT_VIDEO_TIMEOUT_S
) -> ExifFacts:
    """Probe a video with PyAV: duration, codecs, size, rotation, creation time, GPS.

    Raises :class:`MediaError` when the file is unreadable, not a media container,
    corrupt/truncated so that it cannot be opened or decoded, or probing times out.
    """
    fh, _size = _open_regular(path)
    fh.close()
    warnings = _Warnings()
    name = os.fspath(path)
    finished, fields = _run_bounded(lambda: _probe_video(name, warnings), timeout_s, "av-probe")
    if not finished or fields is None:
        raise MediaError(f"{name}: probing timed out after {timeout_s:g}s")
    return ExifFacts(**fields, warnings=warnings.snapshot())
