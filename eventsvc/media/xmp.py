"""Orientation and dates from an image's embedded XMP packet (matched as text, never parsed)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from eventsvc.media.bounded import Warnings
from eventsvc.media.exif_values import exif_datetime

__all__ = ["fill_from_xmp", "xmp_date", "xmp_text"]

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
    warnings = Warnings()
    text = xmp[:_MAX_XMP]
    for pattern in _XMP_CREATED:
        match = pattern.search(text)
        if not match:
            continue
        value = match[1].strip()
        day = _XMP_DAY.match(value)
        if day:
            value = f"{day[1]}-{day[2]}-{day[3]}T00:00:00"
        date, offset = exif_datetime(value, None, warnings, "XMP date")
        if date:
            return date, offset, warnings.snapshot()
    return None, None, warnings.snapshot()


def xmp_text(info: Mapping[str, Any]) -> str | None:
    """The XMP packet Pillow found in the header (JPEG APP1, PNG iTXt, WebP, HEIF)."""
    raw = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(raw, bytes):
        return raw[:_MAX_XMP].decode("utf-8", "replace")
    return raw[:_MAX_XMP] if isinstance(raw, str) else None


def fill_from_xmp(fields: dict[str, Any], xmp: str, warnings: Warnings) -> None:
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
            date, offset = exif_datetime(match[1], None, warnings, "XMP DateTimeOriginal")
            fields["date_original"] = date
            if date and fields.get("utc_offset") is None:
                fields["utc_offset"] = offset
