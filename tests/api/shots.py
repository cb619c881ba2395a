"""Real JPEGs on disk and the events the pipeline derives from them.

A :class:`Shot` is a file written with Pillow (EXIF included), hashed with BLAKE3,
its EXIF read by ``eventsvc.media.exif`` and its thumbnails and perceptual hashes made
by ``eventsvc.derive.media.analyse_image``: the same functions the media deriver runs.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import numpy as np
from PIL import Image

from eventsvc.core.dates import resolve_date_taken
from eventsvc.core.events import Event, ExifExtracted, FileSeen, HashComputed, ThumbnailReady
from eventsvc.core.ids import file_id
from eventsvc.derive.media import analyse_image
from eventsvc.media import exif as exif_mod

SECOND = 1_000_000_000


def scene(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A smooth random picture (a blown-up 8x6 noise), distinct per seed."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def make_exif(
    *, make: str | None = None, model: str | None = None, lens: str | None = None,
    orientation: int | None = None, taken: str | None = None,
    gps: tuple[float, float, float | None] | None = None,
) -> Image.Exif:  # fmt: skip
    """EXIF as a camera writes it; ``taken`` as 'YYYY-MM-DDTHH:MM:SS'."""
    ex = Image.Exif()
    if make:
        ex[0x010F] = make
    if model:
        ex[0x0110] = model
    if orientation:
        ex[0x0112] = orientation
    sub = ex.get_ifd(0x8769)
    if taken:
        sub[0x9003] = taken.replace("-", ":").replace("T", " ")
    if lens:
        sub[0xA434] = lens
    if gps is not None:
        lat, lon, alt = gps
        g = ex.get_ifd(0x8825)
        g[1], g[2] = ("N" if lat >= 0 else "S"), _dms(abs(lat))
        g[3], g[4] = ("E" if lon >= 0 else "W"), _dms(abs(lon))
        if alt is not None:
            g[5], g[6] = b"\x00", float(alt)
    return ex


def _dms(value: float) -> tuple[float, float, float]:
    deg = int(value)
    minutes = int((value - deg) * 60)
    return float(deg), float(minutes), round((value - deg - minutes / 60) * 3600, 4)


@dataclass
class Shot:
    seen: FileSeen
    content_hash: str
    path: Path
    events: list[Event] = field(default_factory=list)
    phash: str | None = None
    thumbs: dict[str, str] = field(default_factory=dict)


def shoot(
    root: Path, library_id: str, rel: str, img: Image.Image, *, thumbs_dir: Path | None = None,
    quality: int = 90, mtime_s: int | None = None, exif: dict[str, object] | None = None,
) -> Shot:  # fmt: skip
    """Write ``img`` at ``root/rel`` and derive its events (FileSeen, HashComputed,
    ExifExtracted, and ThumbnailReady when ``thumbs_dir`` is given)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=quality, exif=make_exif(**exif) if exif else Image.Exif())
    if mtime_s is not None:
        os.utime(path, ns=(mtime_s * SECOND, mtime_s * SECOND))
    shot = from_file(root, library_id, rel)
    if thumbs_dir is not None:
        sizes, (w, h), ph, dh = analyse_image(str(path), thumbs_dir, shot.content_hash)
        shot.events.append(
            ThumbnailReady(
                content_hash=shot.content_hash, sizes=sizes, width=w, height=h, phash=ph, dhash=dh
            )
        )
        shot.phash, shot.thumbs = ph, sizes
    return shot


def from_file(root: Path, library_id: str, rel: str, *, exif: bool = True) -> Shot:
    """The FileSeen, HashComputed (and ExifExtracted) of an existing file."""
    path = root / rel
    st = path.stat()
    content_hash = blake3.blake3(path.read_bytes()).hexdigest()
    kind = "video" if path.suffix.lower() in (".mp4", ".mov") else "image"
    seen = FileSeen(
        library_id=library_id, file_id=file_id(library_id, rel.encode()), path=rel,
        size=st.st_size, mtime_ns=st.st_mtime_ns, media_kind=kind,
    )  # fmt: skip
    hashed = HashComputed(
        content_hash=content_hash, library_id=library_id, file_id=seen.file_id, path=rel,
        size=st.st_size, mtime_ns=st.st_mtime_ns, media_kind=kind,
    )  # fmt: skip
    shot = Shot(seen=seen, content_hash=content_hash, path=path, events=[seen, hashed])
    if exif and kind == "image":
        facts = exif_mod.extract_image(str(path))
        fields = {
            k: v for k, v in dataclasses.asdict(facts).items() if k != "warnings" and v is not None
        }
        date, source = resolve_date_taken(
            exif_original=facts.date_original, exif_digitized=facts.date_digitized,
            container_created=facts.creation_time, file_name=None, fs_times=None,
        )  # fmt: skip
        shot.events.append(
            ExifExtracted(
                content_hash=content_hash,
                media_kind="image",
                fields=fields,
                date_taken=date,
                date_source=source,
                warnings=list(facts.warnings),
            )
        )
    return shot
