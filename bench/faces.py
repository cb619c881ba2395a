"""faces: the faces worker (images/s) vs bare dlib calls on the same images, same settings.

Files: N distinct 3000x2000 JPEGs (quality 90): a background (scikit-image's coffee or
cat, scaled up, shifted per file) with 0, 1 or 2 pasted copies of the public-domain
astronaut portrait at varying sizes and places (some mirrored), so images hold 0-2 faces.

Ours: the ``faces`` worker from ``make_worker`` (default settings: HOG, upsample 1,
max edge 1024, one job at a time) on a private embedded nats-server. Its HashComputed
inputs are published first; the model is loaded before the clock starts. Timed from
the worker's start until a FacesDetected is in the stream for every file: decode
(draft + EXIF orientation + resize), detection, landmarks, descriptors, events.

Limit: one plain loop in this process doing the same work with the same libraries and
settings: Pillow ``open`` + ``draft`` (the smallest DCT scale keeping the long edge at
least 1024 px) + ``exif_transpose`` + ``thumbnail`` to 1024 px, then dlib's HOG detector
(upsample 1, same score threshold), the 5-point shape predictor and the ResNet descriptor
for each face. Face counts must agree with ours.
ratio = ours / bare images/s; goal >= 0.8. Runs alternate which goes first; the median
of each counts.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from bench.common import (
    Outcome,
    add_runs,
    base_parser,
    median,
    nats_server,
    quiet_gc,
    rate,
    run_main,
    runs_of,
    say,
    scratch_dir,
    spread,
)

__all__ = ["main", "make_images", "time_bare", "time_ours"]

GOAL = ">= 0.8"


def make_images(root: Path, n: int, seed: int = 3) -> list[Path]:
    import skimage.data as data

    rng = random.Random(seed)
    face = Image.fromarray(data.astronaut())
    backs = [Image.fromarray(data.coffee()), Image.fromarray(data.chelsea())]
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        back = backs[i % 2].resize((3200, 2200), Image.Resampling.BILINEAR)
        dx, dy = rng.randrange(0, 200), rng.randrange(0, 200)
        img = back.crop((dx, dy, dx + 3000, dy + 2000))
        for _ in range(i % 3):  # 0, 1 or 2 faces
            edge = rng.randrange(700, 1400)
            f = face.resize((edge, edge), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                f = ImageOps.mirror(f)
            img.paste(f, (rng.randrange(0, 3000 - edge), rng.randrange(0, 2000 - edge)))
        path = root / f"IMG_{i:04d}.jpg"
        img.save(path, quality=90)
        out.append(path)
    return out


def _bare_models(settings: Any) -> tuple[Any, Any, Any]:
    import dlib

    from eventsvc.inference.dlib_faces import RESNET, SHAPE, model_dir

    base = model_dir()
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(base / SHAPE)),
        dlib.face_recognition_model_v1(str(base / RESNET)),
    )


def time_bare(paths: list[Path], settings: Any) -> tuple[float, list[int]]:
    det, shape, resnet = _bare_models(settings)
    edge = settings.faces_max_edge
    counts = []
    with quiet_gc():
        t0 = time.perf_counter()
        for p in paths:
            with Image.open(p) as im:
                w, h = im.size  # the smallest DCT scale that keeps the long edge >= edge
                k = edge / max(w, h)
                im.draft("RGB", (math.ceil(w * k), math.ceil(h * k)))
                img = ImageOps.exif_transpose(im).convert("RGB")
            img.thumbnail((edge, edge), Image.Resampling.BILINEAR, reducing_gap=2.0)
            arr = np.asarray(img)
            rects, _, _ = det.run(arr, settings.faces_upsample, settings.faces_min_score)
            n = 0
            for r in rects:
                if r.right() - r.left() < settings.faces_min_size:
                    continue
                s = shape(arr, r)
                resnet.compute_face_descriptor(arr, s, settings.faces_num_jitters)
                n += 1
            counts.append(n)
        return time.perf_counter() - t0, counts


async def _ours(url: str, root: Path, paths: list[Path], data_dir: Path) -> tuple[float, list[int]]:
    import blake3

    from eventsvc.components import make_worker
    from eventsvc.core.events import FacesDetected, HashComputed, decode
    from eventsvc.core.log import EventLog
    from eventsvc.core.settings import Settings, load_libraries

    libs, _ = load_libraries([str(root)])
    settings = Settings(data_dir=data_dir, nats_url=url, watch=False)
    log = await EventLog.connect(url, stream=settings.stream, prefix=settings.subject_prefix)
    stop = asyncio.Event()
    try:
        await log.ensure_stream()
        hashes = {}
        for p in paths:
            st = p.stat()
            h = blake3.blake3(p.read_bytes()).hexdigest()
            hashes[h] = p
            await log.publish(
                HashComputed(
                    content_hash=h,
                    library_id=libs[0].id,
                    file_id=f"f{len(hashes)}",
                    path=p.name,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    media_kind="image",
                )
            )
        start_seq = await log.last_seq()
        worker = await make_worker("faces", log, settings, libs)
        await worker.deriver.backend.info()  # type: ignore[attr-defined]  # load the models
        with quiet_gc():
            t0 = time.perf_counter()
            task = asyncio.create_task(worker.run(stop))
            while await log.last_seq() < start_seq + len(paths):
                if task.done():
                    raise SystemExit(f"the faces worker stopped: {task.exception()!r}")
                await asyncio.sleep(0.01)
            dt = time.perf_counter() - t0
        stop.set()
        await task
        found: dict[str, int] = {}
        async for batch in log.read(start_seq=start_seq + 1):
            for raw in batch:
                ev = decode(raw.data, raw.headers)
                if not isinstance(ev, FacesDetected):
                    raise SystemExit(f"unexpected {ev.type}: {ev}")
                found[ev.content_hash] = len(ev.faces)
        return dt, [found[h] for h in hashes]
    finally:
        stop.set()
        await log.close()


def time_ours(tmp: Path, root: Path, paths: list[Path], rep: int) -> tuple[float, list[int]]:
    with nats_server(tmp / f"nats-{rep}") as url:
        return asyncio.run(_ours(url, root, paths, tmp / f"data-{rep}"))


def main(argv: list[str]) -> int:
    p = base_parser("faces", __doc__)
    p.add_argument("--images", type=int, default=60, help="number of images (default 60)")
    add_runs(p, "--reps", quick=1)
    args = p.parse_args(argv)
    n = 12 if args.quick else args.images
    reps = runs_of(args)

    def body() -> Outcome:
        from eventsvc.core.settings import Settings

        settings = Settings()
        with scratch_dir("faces", args.tmp, args.keep) as tmp:
            root = tmp / "lib"
            paths = make_images(root, n)
            say(f"{n} images of 3000x2000; settings: {settings.faces_detector}, upsample "
                f"{settings.faces_upsample}, max edge {settings.faces_max_edge}, min size "
                f"{settings.faces_min_size}, min score {settings.faces_min_score}")  # fmt: skip
            ours_s, bare_s = [], []
            counts_ours: list[int] = []
            counts_bare: list[int] = []
            for rep in range(reps):
                order = ("ours", "bare") if rep % 2 == 0 else ("bare", "ours")
                for who in order:
                    if who == "ours":
                        dt, counts_ours = time_ours(tmp, root, paths, rep)
                        ours_s.append(dt)
                    else:
                        dt, counts_bare = time_bare(paths, settings)
                        bare_s.append(dt)
                    say(f"rep {rep} {who}: {dt:.2f}s, {rate(n, dt):.2f} images/s")
            if counts_ours != counts_bare:
                raise SystemExit(f"face counts differ: ours {counts_ours} bare {counts_bare}")
            value, limit = rate(n, median(ours_s)), rate(n, median(bare_s))
            return {
                "value": round(value, 3), "limit": round(limit, 3), "unit": "images/s (medians)",
                "ratio": round(value / limit, 3), "goal": GOAL, "images": n, "runs": reps,
                "ours_runs_s": spread(ours_s, 2), "bare_runs_s": spread(bare_s, 2),
                "faces": sum(counts_ours), "detector": settings.faces_detector,
                "upsample": settings.faces_upsample, "max_edge": settings.faces_max_edge,
            }  # fmt: skip

    return run_main("faces", body, args.strict)
