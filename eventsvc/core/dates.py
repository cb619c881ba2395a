"""Date-taken waterfall: EXIF original > EXIF digitized > embedded XMP > XMP sidecar >
container > file name > filesystem."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

__all__ = ["SOURCES", "date_from_filename", "resolve_date_taken"]

SOURCES = (
    "exif_original",
    "exif_digitized",
    "xmp",
    "xmp_sidecar",
    "container",
    "filename",
    "filesystem",
)
MIN_YEAR, MAX_YEAR = 1900, 2100

_D = r"(?<!\d)(?P<Y>\d{4})"
# Ordered most specific first; each must yield Y, m, d and optionally H, M, S, ms, ampm.
_PATTERNS = [
    # IMG_20230102_123456, PXL_20230102_123456789, VID_..., 20230102_123456(_123)
    re.compile(
        _D + r"(?P<m>\d{2})(?P<d>\d{2})[_-](?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})"
        r"(?P<ms>\d{3})?(?!\d)"
    ),
    # 2023-01-02 12.34.56, Screenshot_2023-01-02-12-34-56, 2023-01-02_12-34-56,
    # signal-2023-01-02-123456, "Screenshot 2023-01-02 at 12.34.56 PM"
    re.compile(
        _D + r"-(?P<m>\d{2})-(?P<d>\d{2})(?:[ _T-]|\s+at\s+)"
        r"(?P<H>\d{1,2})[.:-]?(?P<M>\d{2})[.:-]?(?P<S>\d{2})(?!\d)"
        r"(?:\.(?P<ms>\d{3})(?!\d))?(?:[\s\u202f]*(?P<ampm>[AaPp][Mm])\b)?"
    ),
    # WhatsApp: IMG-20230102-WA0001 / VID-20230102-WA0001 (date only)
    re.compile(_D + r"(?P<m>\d{2})(?P<d>\d{2})-WA\d+", re.IGNORECASE),
]


def _build(match: re.Match[str]) -> datetime | None:
    parts = match.groupdict()
    year, month, day = int(parts["Y"]), int(parts["m"]), int(parts["d"])
    hour = int(parts.get("H") or 0)
    minute, second = int(parts.get("M") or 0), int(parts.get("S") or 0)
    ampm = (parts.get("ampm") or "").upper()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "PM" else 0)
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    try:
        return datetime(year, month, day, hour, minute, second, int(parts.get("ms") or 0) * 1000)
    except ValueError:
        return None


def date_from_filename(name: str) -> datetime | None:
    """Naive local datetime encoded in a camera/phone/app file name, or None."""
    base = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if len(base) >= 2 and base[1] == ":" and base[0].isascii() and base[0].isalpha():
        base = base[2:]  # a Windows drive ("C:IMG_….jpg"), as PureWindowsPath reads it
    for pattern in _PATTERNS:
        for match in pattern.finditer(base):
            found = _build(match)
            if found is not None:
                return found
    return None


def _plausible(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return text if MIN_YEAR <= parsed.year <= MAX_YEAR else None


def _iso_local(value: datetime) -> str:
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{value.microsecond // 1000:03d}" if value.microsecond else "")


def _earliest_fs(fs_times: Iterable[int | None] | None) -> str | None:
    stamps = [t for t in (fs_times or ()) if isinstance(t, int) and t > 0]
    if not stamps:
        return None
    ns = min(stamps)
    try:
        moment = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    moment = moment.replace(microsecond=(ns % 1_000_000_000) // 1000)
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        return None
    return _iso_local(moment) + "Z"


def resolve_date_taken(
    *,
    exif_original: str | None,
    exif_digitized: str | None,
    container_created: str | None,
    file_name: str | None,
    fs_times: Iterable[int | None] | None,
    xmp: str | None = None,
    xmp_sidecar: str | None = None,
) -> tuple[str | None, str | None]:
    """Return (ISO date, source) from the first usable source, in :data:`SOURCES` order.

    EXIF and XMP dates are local wall time as given (``xmp:CreateDate``, else
    ``photoshop:DateCreated``, from the file's own packet or from a ``.xmp`` sidecar next
    to it); container and filesystem times are UTC
    (``...Z``); file-name dates are naive local time. ``fs_times`` are epoch nanoseconds
    (e.g. ``st_mtime_ns``, ``st_birthtime_ns``); the earliest positive one is used.
    """
    for value, source in (
        (exif_original, "exif_original"),
        (exif_digitized, "exif_digitized"),
        (xmp, "xmp"),
        (xmp_sidecar, "xmp_sidecar"),
        (container_created, "container"),
    ):
        usable = _plausible(value)
        if usable:
            return usable, source
    from_name = date_from_filename(file_name) if file_name else None
    if from_name is not None:
        return _iso_local(from_name), "filename"
    from_fs = _earliest_fs(fs_times)
    if from_fs is not None:
        return from_fs, "filesystem"
    return None, None
