"""A synthetic indexed library: files on disk and the log the pipeline would have written.

For N files it writes (not timed by any benchmark):

- the files, as sparse files of a realistic size (2-8 MB, no blocks on disk) with the
  mtime the log says: the scanner sees them unchanged and reads nothing;
- per file the events the scanner and the derivers write, through the event classes and
  the bulk publish path (``EventLog.publish_many``, pipelined), in chunks as the
  pipeline interleaves them: FileSeen (scanner), HashComputed v2 (hasher), then
  ExifExtracted, ThumbnailReady (media) and FacesDetected (faces, ``[]`` for most, a box
  for ``faces_share`` of them), ClipEncoded with ``clip`` (512 floats), each with the
  causation of its input;
- :func:`catch_up_consumers`: every durable consumer on the stream acknowledged up to the
  end, as after a finished indexing (a worker starting on it has nothing to do).

Used by ``bench scale``; reusable by any benchmark that needs an indexed library.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nats.js.api import ConsumerConfig

from eventsvc.core.events import (
    ClipEncoded,
    Event,
    ExifExtracted,
    FacesDetected,
    FileSeen,
    HashComputed,
    ThumbnailReady,
)
from eventsvc.core.events.facts import MediaFacts
from eventsvc.core.events.people import FaceBox
from eventsvc.core.ids import file_id
from eventsvc.core.layout import shard_of
from eventsvc.core.log import EventLog
from eventsvc.derive.versions import VERSIONS

__all__ = [
    "SynthFile",
    "catch_up_consumers",
    "events_per_file",
    "faces_model",
    "plan_files",
    "publish_library",
    "write_files",
]


def faces_model(detector: str = "hog") -> str:
    """The version the faces worker's dlib model has here (its FacesDetected's variant
    token: another would make `up` re-derive every content for this one)."""
    from eventsvc.core.errors import EventsvcError
    from eventsvc.inference.dlib_faces import model_files, weights_digest

    name = f"dlib-{detector}-resnet-v1"
    try:
        return f"{name}-{weights_digest(model_files(detector))}"
    except EventsvcError:  # no face model here: the worker pauses, nothing re-derives
        return name


_T0 = datetime(2024, 1, 1, tzinfo=UTC)
_CAMERAS = (("Google", "Pixel 7"), ("Apple", "iPhone 13"), ("Canon", "EOS R6"), ("Sony", "A7 III"))


@dataclass(frozen=True, slots=True)
class SynthFile:
    path: str
    """Relative, '/'-separated."""
    size: int
    mtime_ns: int


def plan_files(n: int, seed: int = 7, per_dir: int = 1000) -> list[SynthFile]:
    """``n`` files in directories of ``per_dir`` (year/roll-NNNN/NAME.jpg), deterministic."""
    rng = random.Random(seed)
    out: list[SynthFile] = []
    base = int(_T0.timestamp() * 1e9)
    for k in range(n):
        when = _T0 - timedelta(seconds=rng.randrange(10 * 365 * 86400))
        name = f"PXL_{when:%Y%m%d_%H%M%S}{k % 1000:03d}.jpg"
        path = f"{2015 + (k // per_dir) % 10}/roll-{k // per_dir:05d}/{name}"
        mtime = base - rng.randrange(10**17)
        out.append(SynthFile(path, rng.randrange(2_000_000, 8_000_000), mtime // 1000 * 1000))
    return out


def write_files(root: Path, files: list[SynthFile]) -> None:
    """Sparse files of the planned size and mtime (no data blocks)."""
    made: set[str] = set()
    for f in files:
        p = root / f.path
        d = os.path.dirname(p)
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, f.size)
        finally:
            os.close(fd)
        os.utime(p, ns=(f.mtime_ns, f.mtime_ns))


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _seen(lib: str, f: SynthFile) -> tuple[Event, str]:
    fid = file_id(lib, f.path.encode())
    ev = FileSeen(
        library_id=lib, file_id=fid, path=f.path, size=f.size, mtime_ns=f.mtime_ns,
        media_kind="image",
    )  # fmt: skip
    return ev, f"FileSeen:{fid}:{f.size}:{f.mtime_ns}:0"  # the scanner's Msg-Id


def _derived(
    rng: random.Random, h: str, seq: int, faces_share: float, clip: bool, faces: str
) -> list[Event]:
    make, model = _CAMERAS[rng.randrange(len(_CAMERAS))]
    when = _T0 - timedelta(seconds=rng.randrange(10 * 365 * 86400))
    date = when.strftime("%Y:%m:%d %H:%M:%S")
    fields = MediaFacts(
        make=make, model=model, width=4032, height=3024, orientation=1,
        focal_length=6.8, f_number=1.9, exposure_time=0.01, iso=100,
        date_original=date, date_digitized=date, utc_offset="+01:00",
        gps_lat=rng.uniform(-60, 60) if rng.random() < 0.5 else None,
        gps_lon=rng.uniform(-180, 180) if rng.random() < 0.5 else None,
    )  # fmt: skip
    shard = shard_of(h)
    media = VERSIONS["media"]  # the current deriver's: nothing to re-derive
    out: list[Event] = [
        ExifExtracted(
            content_hash=h, fields=fields, date_taken=when.replace(tzinfo=None).isoformat(),
            date_source="exif:DateTimeOriginal", causation=seq, deriver_version=media,
        ),
        ThumbnailReady(
            content_hash=h, width=4032, height=3024, phash=_hex(rng, 64), dhash=_hex(rng, 64),
            sizes={"small": f"{shard}/{h}/small.jpg", "large": f"{shard}/{h}/large.jpg"},
            causation=seq, deriver_version=media,
        ),
    ]  # fmt: skip
    boxes = []
    if rng.random() < faces_share:
        boxes = [
            FaceBox(
                box=(0.1, 0.2, 0.3, 0.4), score=0.99, landmarks=[(0.15, 0.25)] * 5,
                embedding=[round(rng.uniform(-0.2, 0.2), 5) for _ in range(128)],
            )
        ]  # fmt: skip
    out.append(
        FacesDetected(
            content_hash=h,
            model=faces,
            faces=boxes,
            causation=seq,
            deriver_version=VERSIONS["faces"],
        )
    )
    if clip:
        vec = [round(rng.gauss(0, 0.044), 6) for _ in range(512)]
        out.append(
            ClipEncoded(
                content_hash=h, model_version="ViT-B-32__openai", dim=512, vector=vec,
                causation=seq, deriver_version=VERSIONS["clip"],
            )
        )  # fmt: skip
    return out


def events_per_file(clip: bool) -> int:
    return 6 if clip else 5


async def publish_library(
    log: EventLog,
    library_id: str,
    files: list[SynthFile],
    *,
    seed: int = 7,
    chunk: int = 5000,
    faces_share: float = 0.03,
    clip: bool = False,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Publish the events of ``files`` in ``library_id``; returns the stream's last
    sequence. Per chunk: the FileSeen, then their HashComputed (causation: the FileSeen),
    then the derived facts (causation: the HashComputed)."""
    rng = random.Random(seed)
    faces = faces_model()
    t0 = time.perf_counter()
    done = 0
    for k in range(0, len(files), chunk):
        part = files[k : k + chunk]
        seen = [_seen(library_id, f) for f in part]
        acks = await log.publish_many(seen)
        hashed: list[tuple[Event, str | None]] = []
        for (ev, _), ack in zip(seen, acks, strict=True):
            assert isinstance(ev, FileSeen)
            hc = HashComputed(
                content_hash=_hex(rng, 256), library_id=library_id, file_id=ev.file_id,
                path=ev.path, size=ev.size, mtime_ns=ev.mtime_ns, media_kind="image",
                causation=ack.seq,
            )  # fmt: skip
            hashed.append((hc, None))
        acks = await log.publish_many(hashed)
        derived: list[tuple[Event, str | None]] = []
        for (hc, _), ack in zip(hashed, acks, strict=True):
            assert isinstance(hc, HashComputed)
            derived += [
                (e, None) for e in _derived(rng, hc.content_hash, ack.seq, faces_share, clip, faces)
            ]
        await log.publish_many(derived)
        done += len(part)
        if progress is not None and (done % (chunk * 10) == 0 or done == len(files)):
            per_s = done / (time.perf_counter() - t0)
            progress(f"synth: {done}/{len(files)} files published ({per_s:.0f} files/s)")
    return await log.last_seq()


async def catch_up_consumers(log: EventLog, batch: int = 10_000) -> dict[str, int]:
    """Move every durable consumer of the stream past its end, as a worker that
    finished indexing leaves it: returns the messages skipped per consumer.

    nats-server >= 2.14: ``$JS.API.CONSUMER.RESET`` to the sequence after the last
    (the configuration stays as it was). Older servers: fetch and acknowledge."""
    js, stream = log.js, log.stream
    out: dict[str, int] = {}
    last = await log.last_seq()
    for info in await js.consumers_info(stream):
        name = info.config.durable_name
        left = (info.num_pending or 0) + (info.num_ack_pending or 0)
        if not name or left == 0:
            continue
        reply = await log.nc.request(
            f"$JS.API.CONSUMER.RESET.{stream}.{name}",
            json.dumps({"seq": last + 1}).encode(),
            timeout=10,
        )
        answer = json.loads(reply.data)
        if "error" in answer:
            await _drain(log, info.config, batch)
        out[name] = left
    return out


async def _drain(log: EventLog, cfg: ConsumerConfig, batch: int) -> None:
    """Fetch and acknowledge everything pending on ``cfg``'s consumer (then restore it)."""
    js, stream, name = log.js, log.stream, cfg.durable_name
    assert name is not None
    await js.add_consumer(stream, dataclasses.replace(cfg, max_ack_pending=batch * 2))
    sub = await js.pull_subscribe_bind(name, stream=stream, pending_msgs_limit=batch * 4)
    try:
        while True:
            ci = await js.consumer_info(stream, name)
            left = (ci.num_pending or 0) + (ci.num_ack_pending or 0)
            if left == 0:
                break
            try:
                msgs = await sub.fetch(min(left, batch), timeout=5)
            except TimeoutError:
                continue
            for m in msgs:
                await m.ack()
            await log.nc.flush()  # the acks out before the next info
    finally:
        await sub.unsubscribe()
    await js.add_consumer(stream, cfg)
