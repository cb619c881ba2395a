"""Great-circle distance and the latitude/longitude boxes that prefilter it."""

from __future__ import annotations

import math

__all__ = ["EARTH_RADIUS_KM", "LonRanges", "haversine_km", "lon_ranges", "near_box"]

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG)."""
MAX_RADIUS_KM = math.pi * EARTH_RADIUS_KM
"""Half the circumference: a radius this large covers the globe."""
_SLACK = 1e-9  # degrees: keep points on the box's edge despite rounding

LonRanges = list[tuple[float, float]]


def haversine_km(lat1: float | None, lon1: float | None, lat2: float | None,
                 lon2: float | None) -> float | None:  # fmt: skip
    """Great-circle distance in km (None if a coordinate is missing). Registered in SQLite."""
    if lat1 is None or lon1 is None or lat2 is None or lon2 is None:
        return None
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def lon_ranges(min_lon: float, max_lon: float) -> LonRanges:
    """Closed longitude ranges for a box from min_lon east to max_lon (across 180 if
    min_lon > max_lon)."""
    if min_lon <= max_lon:
        return [(min_lon, max_lon)]
    return [(min_lon, 180.0), (-180.0, max_lon)]


def near_box(lat: float, lon: float, radius_km: float) -> tuple[float, float, LonRanges]:
    """(min_lat, max_lat, longitude ranges) holding every point within radius_km.

    The exact bounding box of a spherical cap: latitude +- r/R; longitude +-
    asin(sin(r/R) / cos(lat)), or every longitude when the cap reaches a pole.
    """
    ang = radius_km / EARTH_RADIUS_KM
    dlat = math.degrees(ang) + _SLACK
    lo, hi = lat - dlat, lat + dlat
    if ang >= math.pi or lo <= -90.0 or hi >= 90.0:
        return max(lo, -90.0), min(hi, 90.0), [(-180.0, 180.0)]
    ratio = math.sin(ang) / math.cos(math.radians(lat))
    if ratio >= 1.0:
        return lo, hi, [(-180.0, 180.0)]
    dlon = math.degrees(math.asin(ratio)) + _SLACK
    west, east = lon - dlon, lon + dlon
    if west < -180.0:
        return lo, hi, lon_ranges(west + 360.0, east)
    if east > 180.0:
        return lo, hi, lon_ranges(west, east - 360.0)
    return lo, hi, [(west, east)]
