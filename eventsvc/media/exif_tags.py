"""Raw EXIF tags from exifread, Pillow or a Canon CIFF heap, and their mapping to
:class:`~eventsvc.media.facts.ExifFacts` field values."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from eventsvc.media.bounded import Warnings
from eventsvc.media.exif_values import (
    as_int,
    as_positive,
    as_text,
    exif_datetime,
    first_value,
    gps_coord,
    parse_offset,
)

__all__ = [
    "Tags",
    "ciff_tags",
    "facts_from_tags",
    "has_tags",
    "tags_from_exifread",
    "tags_from_pillow",
]

Tags = dict[str, dict[int, Any]]  # IFD group ("Image", "EXIF", "GPS") -> tag id -> value


def tags_from_exifread(raw: Mapping[str, Any]) -> Tags:
    tags: Tags = {"Image": {}, "EXIF": {}, "GPS": {}}
    for key, tag in raw.items():
        group = tags.get(key.split(" ", 1)[0]) if isinstance(key, str) else None
        tag_id = getattr(tag, "tag", None)
        if group is not None and isinstance(tag_id, int):
            group.setdefault(tag_id, getattr(tag, "values", None))
    return tags


def tags_from_pillow(exif: Any, warnings: Warnings) -> Tags:
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


def ciff_tags(data: bytes) -> Tags | None:
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
    return tags if has_tags(tags) else None


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


def has_tags(tags: Tags | None) -> bool:
    return bool(tags and any(tags.values()))


def facts_from_tags(tags: Tags, warnings: Warnings) -> dict[str, Any]:
    """Map raw tag values to ExifFacts field values."""
    img0, ex0, gps = tags.get("Image", {}), tags.get("EXIF", {}), tags.get("GPS", {})
    # A tag where it belongs, else in the other IFD: older cameras write
    # DateTimeOriginal (and others Make/Model) in IFD0 / the EXIF IFD; exiftool reads both.
    img: dict[int, Any] = {**ex0, **img0}
    ex: dict[int, Any] = {**img0, **ex0}
    out: dict[str, Any] = {
        "make": as_text(img.get(0x010F)),
        "model": as_text(img.get(0x0110)),
        "lens": as_text(ex.get(0xA434)),
        "focal_length": as_positive(first_value(ex.get(0x920A)), 1e5),
        "f_number": as_positive(first_value(ex.get(0x829D)), 1e3),
        "exposure_time": as_positive(first_value(ex.get(0x829A)), 1e6),
    }
    iso = as_int(ex.get(0x8827))
    out["iso"] = iso if iso is not None and 0 < iso < 10_000_000 else None

    if 0x0112 in img:
        orientation = as_int(img.get(0x0112))
        if orientation is not None and 1 <= orientation <= 8:
            out["orientation"] = orientation
        else:
            warnings.add(f"orientation: invalid value {img.get(0x0112)!r:.40}")

    out["date_original"], off_orig = exif_datetime(
        ex.get(0x9003), ex.get(0x9291), warnings, "DateTimeOriginal"
    )
    out["date_digitized"], off_dig = exif_datetime(
        ex.get(0x9004), ex.get(0x9292), warnings, "DateTimeDigitized"
    )
    out["utc_offset"] = (
        parse_offset(ex.get(0x9011))
        or off_orig
        or parse_offset(ex.get(0x9012))
        or off_dig
        or parse_offset(ex.get(0x9010))
    )

    # width/height: from the image's own header only (see extract_image), never from
    # EXIF PixelXDimension/ImageWidth, which editors and cameras leave stale.

    if gps:
        lat = gps_coord(gps.get(2), gps.get(1), "S", 90.0)
        lon = gps_coord(gps.get(4), gps.get(3), "W", 180.0)
        if lat is not None and lon is not None:
            if lat == 0.0 and lon == 0.0:
                warnings.add("gps: position 0,0 ignored")
            else:
                out["gps_lat"], out["gps_lon"] = lat, lon
        elif 2 in gps or 4 in gps:
            warnings.add("gps: unusable latitude/longitude")
        alt = first_value(gps.get(6))
        if alt is not None and -20_000 < alt < 100_000:
            out["gps_alt"] = round(-abs(alt) if as_int(gps.get(5)) == 1 else alt, 3)
    return out
