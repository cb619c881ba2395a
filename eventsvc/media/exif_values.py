"""Coercing raw EXIF tag values (any type a hostile file can produce) into text, numbers,
dates, UTC offsets and GPS coordinates; unusable values become None."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from eventsvc.media.bounded import Warnings

__all__ = [
    "as_int",
    "as_num",
    "as_positive",
    "as_text",
    "exif_datetime",
    "first_value",
    "gps_coord",
    "parse_offset",
]


def as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if value and all(isinstance(x, int) and 0 <= x < 256 for x in value):
            value = bytes(value)
        elif len(value) == 1:
            return as_text(value[0])
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


def as_num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return as_num(value[0]) if len(value) == 1 else None
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
    out = [as_num(x) for x in items]
    return [] if any(x is None for x in out) else [x for x in out if x is not None]


def first_value(value: Any) -> float | None:
    items = _nums(value) if isinstance(value, list | tuple) else [as_num(value)]
    return items[0] if items and items[0] is not None else None


def as_int(value: Any) -> int | None:
    if isinstance(value, bytes) and len(value) == 1:
        return value[0]
    number = first_value(value)
    if number is None or not number.is_integer():
        return None
    return int(number)


def as_positive(value: float | None, limit: float = 1e9) -> float | None:
    return value if value is not None and 0 < value < limit else None


_EXIF_DATE = re.compile(
    r"^\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})[ T]+(\d{1,2})[:.](\d{1,2})"
    r"(?:[:.](\d{1,2})(?:[.,](\d+))?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def parse_offset(value: Any) -> str | None:
    text = as_text(value)
    if text is None:
        return None
    if text.upper() == "Z":
        return "+00:00"
    match = _OFFSET.match(text)
    if not match or int(match[2]) > 14 or int(match[3]) > 59:
        return None
    return f"{match[1]}{match[2]}:{match[3]}"


def exif_datetime(
    value: Any, subsec: Any, warnings: Warnings, label: str
) -> tuple[str | None, str | None]:
    """Parse an EXIF date string into (local ISO string, embedded offset)."""
    text = as_text(value)
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
    sub = as_text(subsec)
    if not digits and sub and sub.isdigit():
        digits = sub
    iso = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if digits:
        iso += "." + (digits + "000")[:3]
    return iso, parse_offset(match[8]) if match[8] else None


def gps_coord(value: Any, ref: Any, negative: str, limit: float) -> float | None:
    parts = _nums(value)
    if not parts or len(parts) > 3:
        return None
    degrees = parts[0] + sum(p / 60**i for i, p in enumerate(parts[1:], start=1))
    ref_text = as_text(ref)
    if ref_text and ref_text[0].upper() == negative:
        degrees = -abs(degrees)
    if not -limit <= degrees <= limit:
        return None
    return round(degrees, 7)
