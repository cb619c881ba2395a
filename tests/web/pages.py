"""A read model for the page tests, built from real events by the real projector:
photos over three months with EXIF (camera, GPS), thumbnails, a near-duplicate pair,
faces with a named person, and a video with its playlist."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from eventsvc.core.events import (
    Event,
    ExifExtracted,
    FaceAssigned,
    FaceBox,
    FacesDetected,
    PersonCreated,
    PersonNamed,
    PlaylistReady,
    ThumbnailReady,
    face_id,
)
from eventsvc.core.thumb_layout import thumb_rel
from tests.api.conftest import ReadModel, h, hashed, online, seen

__all__ = [
    "ANNA", "FACE_MODEL", "Library", "Links", "build_library", "links", "tile_hashes",
    "write_thumbnails",
]  # fmt: skip

FACE_MODEL = "dlib-hog-resnet-v1-test"
ANNA = "Anna"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class Library:
    photos: int
    video_hash: str
    face_hash: str
    gps_hash: str
    near: tuple[str, str]
    person_id: str
    months: dict[str, int] = field(default_factory=dict)


def _phash(n: int) -> str:
    """Unrelated 64-bit hashes (far apart from each other)."""
    return hashlib.sha256(str(n).encode()).hexdigest()[:16]


def _taken(n: int) -> str:
    month = 3 + n % 3  # March, April, May 2023
    return f"2023-{month:02d}-{1 + n % 27:02d}T{n % 24:02d}:{n % 60:02d}:00"


def build_library(model: ReadModel, photos: int = 130) -> Library:
    """``photos`` images h(1..photos) in library alpha, plus a video h(photos + 1)."""
    evs: list[Event] = [online("alpha")]
    months: dict[str, int] = {}
    for n in range(1, photos + 1):
        fs = seen("alpha", f"pics/img{n:04d}.jpg", size=1000 + n, mtime_s=1_700_000_000 + n)
        fields: dict[str, Any] = {"width": 400 + n % 3 * 100, "height": 300, "make": "Canon",
                                  "model": "EOS 5D" if n % 2 else "EOS R"}  # fmt: skip
        if n == 7:
            fields.update(gps_lat=48.8584, gps_lon=2.2945, gps_alt=35.0)
        taken = _taken(n)
        months[taken[:7]] = months.get(taken[:7], 0) + 1
        phash = _phash(11 if n == 12 else n)
        if n == 12:  # one bit away from 11's: a near duplicate
            phash = f"{int(phash, 16) ^ 1:016x}"
        evs += [
            fs,
            hashed(fs, h(n)),
            ExifExtracted(
                content_hash=h(n), fields=fields, date_taken=taken, date_source="exif_original"
            ),
            ThumbnailReady(
                content_hash=h(n),
                sizes={s: thumb_rel(h(n), s) for s in ("small", "large")},
                width=fields["width"],  # the upright size and perceptual hashes of its decode
                height=300,
                phash=phash,
                dhash=phash,
            ),
        ]
    v = photos + 1
    fv = seen("alpha", "clips/holiday.mp4", size=50_000, mtime_s=1_690_000_000, kind="video")
    evs += [
        fv,
        hashed(fv, h(v)),
        PlaylistReady(
            content_hash=h(v),
            playlist_path=f"{h(v)[:2]}/{h(v)}/index.m3u8",
            duration=2.5,
            segments=2,
            codecs="avc1.64001f,mp4a.40.2",
            mode="remux",
            poster="poster.jpg",
        ),
    ]
    face_hash = h(3)
    person = "p-00000000000000aa"
    fid = face_id(face_hash, FACE_MODEL, 0)
    evs += [
        FacesDetected(
            content_hash=face_hash,
            model=FACE_MODEL,
            faces=[
                FaceBox(
                    box=(0.3, 0.1, 0.5, 0.4),
                    score=1.2,
                    landmarks=[(0.4, 0.2)] * 5,
                    embedding=[0.0] * 128,
                ),
                FaceBox(
                    box=(0.6, 0.2, 0.7, 0.35),
                    score=0.9,
                    landmarks=[(0.65, 0.25)] * 5,
                    embedding=[0.1] * 128,
                ),
            ],
        ),
        PersonCreated(person_id=person, founder=fid),
        FaceAssigned(face_id=fid, person_id=person, content_hash=face_hash),
        PersonNamed(person_id=person, name=ANNA, occurred_at=T0),
    ]
    model.add(*evs).publish()
    return Library(photos, h(v), face_hash, h(7), (h(11), h(12)), person, months)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.attrs_by_id: dict[str, dict[str, str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.attrs_by_id[a["id"]] = a
        for name in ("href", "src", "hx-get", "poster", "data-hls", "data-url", "action"):
            if name in a:
                self.refs.append((tag, name, a[name]))


@dataclass
class Links:
    refs: list[tuple[str, str, str]]
    """(tag, attribute, value) of every URL-valued attribute."""
    by_id: dict[str, dict[str, str]]

    def values(self, tag: str | None = None, attr: str | None = None) -> list[str]:
        return [v for t, a, v in self.refs if (tag in (None, t)) and (attr in (None, a))]


def links(html: str) -> Links:
    p = _Links()
    p.feed(html)
    return Links(p.refs, p.attrs_by_id)


TILE_RE = re.compile(r'<a class="tile[^"]*" href="/photo/([0-9a-f]{64})\?[^"]*"')


def tile_hashes(html: str) -> list[str]:
    return TILE_RE.findall(html)


def write_thumbnails(thumbs: Path, count: int) -> None:
    """Real (tiny) JPEG files where the ThumbnailReady events say."""
    from PIL import Image

    for n in range(1, count + 1):
        img = Image.new("RGB", (64, 48), (n * 37 % 256, n * 91 % 256, n * 13 % 256))
        for size in ("small", "large"):
            target = thumbs / thumb_rel(h(n), size)
            target.parent.mkdir(parents=True, exist_ok=True)
            img.save(target, "JPEG")
