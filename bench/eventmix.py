"""A realistic event log for the rebuild benchmark, and the rows it should project to.

About 60 % FileSeen (some files re-seen with a new size/mtime), 35 % HashComputed for
files seen earlier (FIFO: the hasher lags the scanner; ~10 % share content with another
file), ~5 % FileMissing, and LibraryOnline/LibraryStale for a few libraries. Sequence
numbers are known in advance (a fresh stream, every Msg-Id unique): seq = index + 1.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from eventsvc.core.events import (
    Event,
    FileMissing,
    FileSeen,
    HashComputed,
    LibraryOnline,
    LibraryStale,
)
from eventsvc.core.ids import file_id

__all__ = ["Mix", "Rows", "make_mix"]

_T0 = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class Rows:
    """The already-decoded tuples for the raw-SQLite limit, grouped per statement."""

    files: list[tuple[object, ...]] = field(default_factory=list)
    content: list[tuple[object, ...]] = field(default_factory=list)
    hashes: list[tuple[object, ...]] = field(default_factory=list)
    missing: list[tuple[object, ...]] = field(default_factory=list)
    libraries: list[tuple[object, ...]] = field(default_factory=list)
    last_seq: int = 0


@dataclass
class Mix:
    items: list[tuple[Event, str]]
    rows: list[Rows]
    """One Rows per ``batch`` events, as the projector's transactions would be."""
    counts: dict[str, int]


def _name(rng: random.Random, i: int) -> str:
    if rng.random() < 0.5:  # a phone: the date is in the name
        d = _T0 - timedelta(seconds=rng.randrange(10 * 365 * 86400))
        return f"PXL_{d:%Y%m%d_%H%M%S}{rng.randrange(1000):03d}.jpg"
    return f"IMG_{i % 1000:04d}.JPG"


def make_mix(n: int, *, batch: int = 5000, libraries: int = 4, seed: int = 11) -> Mix:
    rng = random.Random(seed)
    libs = [f"lib-bench{k}" for k in range(libraries)]
    items: list[tuple[Event, str]] = []
    rows: list[Rows] = []
    counts = {"FileSeen": 0, "HashComputed": 0, "FileMissing": 0, "Library": 0}
    live: list[str] = []  # file ids, for random picks
    where: dict[str, int] = {}  # file id -> index in live
    files: dict[str, FileSeen] = {}
    unhashed: deque[tuple[FileSeen, int]] = deque()
    hashes: list[str] = []
    lib_state = dict.fromkeys(libs, "online")

    def add(ev: Event, msg_id: str) -> int:
        items.append((ev, msg_id))
        if not rows or len(items) > len(rows) * batch:
            rows.append(Rows())
        rows[-1].last_seq = len(items)
        return len(items)

    def library(lib: str, stale: bool) -> None:
        ev: Event
        if stale:
            ev = LibraryStale(library_id=lib, name=lib, root=f"/srv/{lib}", reason="unmounted")
        else:
            ev = LibraryOnline(library_id=lib, name=lib, root=f"/srv/{lib}")
        seq = add(ev, f"{ev.type}:{lib}:{len(items)}")  # type: ignore[attr-defined]
        state = "stale" if stale else "online"
        rows[-1].libraries.append(
            (lib, lib, f"/srv/{lib}", state, "unmounted" if stale else None,
             ev.occurred_at.isoformat(), seq)
        )  # fmt: skip
        counts["Library"] += 1

    for lib in libs:
        library(lib, stale=False)
    while len(items) < n:
        r = rng.random()
        if r < 0.00005:
            lib = rng.choice(libs)
            lib_state[lib] = "stale" if lib_state[lib] == "online" else "online"
            library(lib, stale=lib_state[lib] == "stale")
        elif r < 0.95 and r >= 0.60 and unhashed:
            seen, seen_seq = unhashed.popleft()
            reuse = hashes and rng.random() < 0.1
            h = rng.choice(hashes) if reuse else f"{rng.getrandbits(256):064x}"
            if not reuse:
                hashes.append(h)
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
            seq = add(ev, ev.default_msg_id())
            rows[-1].content.append((h, seen.size, "image", None, None, None, None, None, seq))
            rows[-1].hashes.append((h, seq, seen.file_id, seen.size, seen.mtime_ns))
            counts["HashComputed"] += 1
        elif r >= 0.95 and len(live) > 100:
            fid = live[rng.randrange(len(live))]
            k = where.pop(fid)
            last = live.pop()
            if last != fid:
                live[k] = last
                where[last] = k
            gone = files.pop(fid)
            ev2 = FileMissing(library_id=gone.library_id, file_id=fid, path=gone.path)
            seq = add(ev2, f"FileMissing:{fid}:{len(items)}")
            rows[-1].missing.append((fid,))
            counts["FileMissing"] += 1
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
            rows[-1].files.append(
                (fid, lib, path, None, size, mtime, "image", seq, seen.occurred_at.isoformat())
            )
            counts["FileSeen"] += 1
    return Mix(items, rows, counts)
