"""A realistic event log for the rebuild benchmark.

Roughly: 40 % FileSeen (some files re-seen with a new size/mtime), 22 % HashComputed for
files seen earlier (FIFO: the hasher lags the scanner; ~10 % share content with another
file), then for each new content, later (FIFO: the derivers lag the hasher), an
ExifExtracted (90 %) and a ThumbnailReady (95 %), a FacesDetected (3 %, one or two
faces with 512-d embeddings) and a ClipEncoded (2 %, 512-d); about 3 % FileMissing,
0.5 % user decisions (TagAdded, Favorited), and LibraryOnline/LibraryStale for a few
libraries. Sequence numbers are known in advance (a fresh stream, every Msg-Id
unique): seq = index + 1.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eventsvc.core.events import (
    ClipEncoded,
    Event,
    ExifExtracted,
    FaceBox,
    FacesDetected,
    Favorited,
    FileMissing,
    FileSeen,
    HashComputed,
    LibraryOnline,
    LibraryStale,
    MediaFacts,
    TagAdded,
    ThumbnailReady,
)
from eventsvc.core.ids import file_id

__all__ = ["Mix", "make_mix"]

_T0 = datetime(2024, 1, 1, tzinfo=UTC)
_CAMERAS = [
    ("Google", "Pixel 7"),
    ("Apple", "iPhone 13"),
    ("Canon", "EOS R6"),
    ("SONY", "ILCE-7M3"),
]
_TAGS = ["holiday", "family", "cat", "Beach", "to print", "2019 trip"]


@dataclass
class Mix:
    items: list[tuple[Event, str]]
    """(event, Nats-Msg-Id), in log order."""
    counts: dict[str, int]


def _name(rng: random.Random, i: int) -> str:
    if rng.random() < 0.5:  # a phone: the date is in the name
        d = _T0 - timedelta(seconds=rng.randrange(10 * 365 * 86400))
        return f"PXL_{d:%Y%m%d_%H%M%S}{rng.randrange(1000):03d}.jpg"
    return f"IMG_{i % 1000:04d}.JPG"


def _unit(rng: random.Random, dim: int = 512) -> list[float]:
    return [round(rng.gauss(0.0, 0.044), 6) for _ in range(dim)]


def _derived(rng: random.Random, h: str, seq: int) -> list[Event]:
    """What the derivers publish about a new content (some of it)."""
    out: list[Event] = []
    w, ht = rng.choice([(4032, 3024), (3024, 4032), (6000, 4000), (1920, 1080)])
    if rng.random() < 0.90:
        make, model = rng.choice(_CAMERAS)
        d = _T0 - timedelta(seconds=rng.randrange(10 * 365 * 86400))
        taken = f"{d:%Y-%m-%dT%H:%M:%S}"
        gps = rng.random() < 0.4
        fields = MediaFacts(
            make=make, model=model, width=w, height=ht, orientation=rng.choice([1, 1, 6]),
            gps_lat=round(rng.uniform(-60, 70), 6) if gps else None,
            gps_lon=round(rng.uniform(-170, 170), 6) if gps else None,
            focal_length=rng.choice([4.2, 6.8, 24.0, 50.0]), f_number=rng.choice([1.8, 2.8, 4.0]),
            exposure_time=rng.choice([0.001, 0.008, 0.0333]), iso=rng.choice([50, 100, 400, 1600]),
            date_original=taken, date_digitized=taken, utc_offset="+01:00",
        )  # fmt: skip
        out.append(
            ExifExtracted(
                content_hash=h, fields=fields, date_taken=taken, date_source="exif_original",
                causation=seq,
            )
        )  # fmt: skip
    if rng.random() < 0.95:
        shard = h[:2]
        out.append(
            ThumbnailReady(
                content_hash=h,
                sizes={"small": f"{shard}/{h}/small.jpg", "large": f"{shard}/{h}/large.jpg"},
                width=w, height=ht, phash=f"{rng.getrandbits(64):016x}",
                dhash=f"{rng.getrandbits(64):016x}", causation=seq,
            )
        )  # fmt: skip
    if rng.random() < 0.03:
        faces = [
            FaceBox(
                box=(0.1 * k, 0.1, 0.1 * k + 0.2, 0.4),
                score=0.9,
                landmarks=[(0.1 * k + 0.05 * j, 0.2) for j in range(5)],
                embedding=_unit(rng),
            )
            for k in range(rng.choice([1, 2]))
        ]
        out.append(FacesDetected(content_hash=h, model="buffalo_l", faces=faces, causation=seq))
    if rng.random() < 0.02:
        out.append(
            ClipEncoded(
                content_hash=h, model_version="ViT-B-32/openai", dim=512, vector=_unit(rng),
                causation=seq,
            )
        )  # fmt: skip
    return out


def make_mix(n: int, *, libraries: int = 4, seed: int = 11) -> Mix:
    rng = random.Random(seed)
    libs = [f"lib-bench{k}" for k in range(libraries)]
    items: list[tuple[Event, str]] = []
    counts: Counter[str] = Counter()
    live: list[str] = []  # file ids, for random picks
    where: dict[str, int] = {}  # file id -> index in live
    files: dict[str, FileSeen] = {}
    unhashed: deque[tuple[FileSeen, int]] = deque()
    underived: deque[Event] = deque()
    hashes: list[str] = []
    lib_state = dict.fromkeys(libs, "online")

    def add(ev: Event, msg_id: str | None = None) -> int:
        items.append((ev, msg_id or ev.default_msg_id()))
        counts[ev.type] += 1  # type: ignore[attr-defined]
        return len(items)

    def library(lib: str, stale: bool) -> None:
        ev: Event
        if stale:
            ev = LibraryStale(library_id=lib, name=lib, root=f"/srv/{lib}", reason="unmounted")
        else:
            ev = LibraryOnline(library_id=lib, name=lib, root=f"/srv/{lib}")
        add(ev, f"{ev.type}:{lib}:{len(items)}")  # type: ignore[attr-defined]

    for lib in libs:
        library(lib, stale=False)
    while len(items) < n:
        r = rng.random()
        if r < 0.00005:
            lib = rng.choice(libs)
            lib_state[lib] = "stale" if lib_state[lib] == "online" else "online"
            library(lib, stale=lib_state[lib] == "stale")
        elif 0.40 <= r < 0.62 and unhashed:
            seen, seen_seq = unhashed.popleft()
            reuse = hashes and rng.random() < 0.1
            h = rng.choice(hashes) if reuse else f"{rng.getrandbits(256):064x}"
            ev = HashComputed(
                content_hash=h,
                library_id=seen.library_id,
                file_id=seen.file_id,
                path=seen.path,
                size=seen.size,
                mtime_ns=seen.mtime_ns,
                media_kind="image",
                causation=seen_seq,
            )  # HashComputed v2: perceptual hashes and sizes are ThumbnailReady's
            seq = add(ev)
            if not reuse:
                hashes.append(h)
                underived.extend(_derived(rng, h, seq))
        elif 0.62 <= r < 0.95 and underived:
            add(underived.popleft())
        elif 0.965 <= r < 0.97 and hashes:
            h = rng.choice(hashes)
            dec: Event
            if rng.random() < 0.6:
                dec = TagAdded(content_hash=h, tag=rng.choice(_TAGS))
            else:
                dec = Favorited(content_hash=h)
            add(dec, f"{dec.default_msg_id()}:{len(items)}")
        elif r >= 0.97 and len(live) > 100:
            fid = live[rng.randrange(len(live))]
            k = where.pop(fid)
            last = live.pop()
            if last != fid:
                live[k] = last
                where[last] = k
            gone = files.pop(fid)
            ev2 = FileMissing(library_id=gone.library_id, file_id=fid, path=gone.path)
            add(ev2, f"FileMissing:{fid}:{len(items)}")
        else:
            if live and rng.random() < 0.08:  # re-seen: edited in place
                old = files[live[rng.randrange(len(live))]]
                lib, fid, path = old.library_id, old.file_id, old.path
                size, mtime = old.size + rng.randrange(1, 5000), old.mtime_ns + 10**9
            else:
                lib = rng.choice(libs)
                k = len(files) + counts["FileMissing"]
                path = f"{2015 + k % 10}/roll-{k // 1000:04d}/{_name(rng, k)}"
                fid = file_id(lib, path.encode())
                if fid in where:  # a random name came out twice: draw again
                    continue
                size = rng.randrange(500_000, 8_000_000)
                mtime = int(_T0.timestamp() * 1e9) - rng.randrange(10**17)
                where[fid] = len(live)
                live.append(fid)
            seen = FileSeen(
                library_id=lib, file_id=fid, path=path, size=size, mtime_ns=mtime,
                media_kind="image",
            )  # fmt: skip
            files[fid] = seen
            seq = add(seen, f"FileSeen:{fid}:{size}:{mtime}:{len(items)}")
            unhashed.append((seen, seq))
    return Mix(items, dict(counts))
