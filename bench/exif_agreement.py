"""Per-field agreement of ``extract_image`` with ``exiftool -j -n`` on a folder of images.

Usage: python bench/exif_agreement.py /work/shared/corpus/exif-samples [-v]

A field agrees when both sides have the same value or both have none. Dates compare
DateTimeOriginal to the second; GPS within 1e-5 degrees. Width/height compare the
display size (stored size swapped for orientations 5-8) because for HEIF exiftool reports
the coded ``ispe`` size while the displayed image is turned by the container's ``irot``
(exiftool's QuickTime ``Rotation``); for every other format this equals comparing the
stored size directly.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventsvc.media.exif import ExifFacts, extract_image

__all__ = ["compare", "main"]

EXIFTOOL_TAGS = [
    "DateTimeOriginal", "Make", "Model", "GPSLatitude", "GPSLongitude", "Orientation",
    "ImageWidth", "ImageHeight", "Rotation", "FileType",
]  # fmt: skip
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".tif", ".tiff", ".png", ".heic", ".heif", ".webp", ".avif"}


def _exiftool(root: Path) -> dict[str, dict[str, Any]]:
    cmd = ["exiftool", "-j", "-n", "-r", "-q", "-q", *[f"-{t}" for t in EXIFTOOL_TAGS], str(root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    rows = json.loads(proc.stdout or "[]")
    return {str(Path(r["SourceFile"]).resolve()): r for r in rows}


def _et_date(row: dict[str, Any]) -> str | None:
    value = str(row.get("DateTimeOriginal") or "").strip()
    if len(value) < 19 or value.startswith("0000"):
        return None
    return value[:10].replace(":", "-") + "T" + value[11:19]


def _et_str(key: str) -> Callable[[dict[str, Any]], str | None]:
    return lambda row: (str(row[key]).strip() or None) if key in row else None


def _et_num(key: str) -> Callable[[dict[str, Any]], float | None]:
    def get(row: dict[str, Any]) -> float | None:
        try:
            return float(row[key])
        except (KeyError, TypeError, ValueError):
            return None

    return get


def _et_display(row: dict[str, Any]) -> tuple[int, int] | None:
    try:
        width, height = int(row["ImageWidth"]), int(row["ImageHeight"])
    except (KeyError, TypeError, ValueError):
        return None
    if row.get("FileType") in ("HEIC", "HEIF", "AVIF"):
        turned = int(row.get("Rotation") or 0) in (90, 270)
    else:
        turned = row.get("Orientation") in (5, 6, 7, 8)
    return (height, width) if turned else (width, height)


def _our_display(facts: ExifFacts) -> tuple[int, int] | None:
    if facts.width is None or facts.height is None:
        return None
    turned = facts.orientation in (5, 6, 7, 8)
    return (facts.height, facts.width) if turned else (facts.width, facts.height)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, abs_tol=1e-5)


FIELDS: dict[str, tuple[Callable[[ExifFacts], Any], Callable[[dict[str, Any]], Any], Any]] = {
    "date": (lambda f: f.date_original[:19] if f.date_original else None, _et_date, None),
    "make": (lambda f: f.make, _et_str("Make"), None),
    "model": (lambda f: f.model, _et_str("Model"), None),
    "gps_lat": (lambda f: f.gps_lat, _et_num("GPSLatitude"), _close),
    "gps_lon": (lambda f: f.gps_lon, _et_num("GPSLongitude"), _close),
    "orientation": (lambda f: f.orientation, lambda r: r.get("Orientation"), None),
    "width/height": (_our_display, _et_display, None),
}


def compare(root: Path, verbose: bool = False) -> dict[str, tuple[int, int]]:
    """Return {field: (agreeing files, files)} and print mismatches when verbose."""
    oracle = _exiftool(root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    counts = {name: [0, 0] for name in FIELDS}
    slowest = 0.0
    for path in files:
        row = oracle.get(str(path.resolve()), {})
        start = time.perf_counter()
        facts = extract_image(path)
        slowest = max(slowest, time.perf_counter() - start)
        for name, (ours, theirs, equal) in FIELDS.items():
            a, b = ours(facts), theirs(row)
            same = equal(a, b) if equal else a == b
            counts[name][0] += int(same)
            counts[name][1] += 1
            if verbose and not same:
                print(f"  {name:12} {path.relative_to(root)}: ours={a!r} exiftool={b!r}")
    print(f"{len(files)} files, slowest extract_image {slowest * 1000:.1f} ms")
    return {name: (ok, total) for name, (ok, total) in counts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true", help="list mismatches")
    args = parser.parse_args(argv)
    table = compare(args.root, args.verbose)
    print(f"{'field':<14}{'agree':>7}{'files':>7}{'%':>8}")
    for name, (ok, total) in table.items():
        print(f"{name:<14}{ok:>7}{total:>7}{100.0 * ok / max(total, 1):>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
