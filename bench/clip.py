"""clip: the clip worker's images/s vs bare onnxruntime on the same batches.

A random-weight CLIP ViT-B/32 image tower built with onnx.helper (bench/vit.py; cached
under $TMPDIR) in the Immich layout. N JPEGs (800x600) are written to a library and a
HashComputed published for each on a private nats-server; the real clip worker
(make_clip_worker: decode small, preprocess, batch, encode, publish ClipEncoded, ack)
runs until all N are encoded (ours). The limit: one bare ``InferenceSession.run`` per
batch of the same size over the same images already preprocessed to tensors, with the
same session options. RUNS runs of each, alternating which goes first; each side's
figure is the median of its runs (garbage collector off around every run).
ratio = ours / bare images/s; goal >= 0.8. ``batcher_*``: our figure without NATS and
JPEG decoding (Batcher + OnnxClip from decoded images).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import blake3
import numpy as np
from PIL import Image

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
from bench.vit import default_cache, make_vit_b32

__all__ = ["main"]

GOAL = ">= 0.8"


def _images(root: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        base = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((800, 600), Image.Resampling.BICUBIC)
        p = root / f"IMG_{i:04d}.jpg"
        img.save(p, quality=88)
        out.append(p)
    return out


def _bare(session: object, name: str, tensors: np.ndarray, batch: int) -> float:
    t0 = time.perf_counter()
    for s in range(0, len(tensors), batch):
        session.run(None, {name: tensors[s : s + batch]})  # type: ignore[attr-defined]
    return time.perf_counter() - t0


async def _ours(url: str, data: Path, model: Path, files: list[Path], batch: int) -> float:
    from eventsvc.components import clip_spec
    from eventsvc.core.events import HashComputed, LibraryOnline
    from eventsvc.core.ids import file_id
    from eventsvc.core.log import EventLog
    from eventsvc.core.roots import LibraryRoots
    from eventsvc.core.settings import Library, Settings
    from eventsvc.derive.clip import make_clip_worker

    settings = Settings(
        data_dir=data, nats_url=url, clip_model_dir=model, clip_batch=batch,
        clip_batch_window=0.2, clip_concurrency=1, max_in_flight=max(64, batch * 4),
    )  # fmt: skip
    root = files[0].parent
    lib = Library(id="bench", name="bench", root=root)
    log = await EventLog.connect(url)
    await log.ensure_stream()
    await log.publish(LibraryOnline(library_id="bench", name="bench", root=str(root)))
    for p in files:
        st = p.stat()
        await log.publish(
            HashComputed(
                content_hash=blake3.blake3(p.read_bytes()).hexdigest(), library_id="bench",
                file_id=file_id("bench", p.name.encode()), path=p.name, size=st.st_size,
                mtime_ns=st.st_mtime_ns, media_kind="image",
            )
        )  # fmt: skip
    worker = make_clip_worker(log, settings, LibraryRoots([lib]), clip_spec(settings))
    await worker.deriver.backend.info()  # load the model before the clock starts
    stop = asyncio.Event()
    t0 = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    while worker.stats.encoded < len(files):
        if task.done():
            raise SystemExit(f"the clip worker stopped: {worker.stats}")
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    stop.set()
    await task
    await log.close()
    say(f"ours: {worker.stats.batches} batches, {worker.stats.failed} failed")
    return elapsed


async def _batcher(model: Path, imgs: list[Image.Image], batch: int) -> float:
    from eventsvc.derive.clip import Batcher
    from eventsvc.inference.clip_onnx import OnnxClip

    clip = OnnxClip(model)
    await clip.info()
    b = Batcher(clip, size=batch, window=0.2, concurrency=1)
    t0 = time.perf_counter()
    await asyncio.gather(*(b.encode(i) for i in imgs))
    elapsed = time.perf_counter() - t0
    await b.aclose()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = base_parser("clip", __doc__)
    p.add_argument("--images", type=int, default=None, help="default 128 (--quick 16)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--model-cache", type=Path, default=None, help="where the ViT is cached")
    add_runs(p, quick=1)
    a = p.parse_args(argv)
    n = a.images or (16 if a.quick else 128)
    runs = runs_of(a)
    batch = min(a.batch, n)

    def body() -> Outcome:
        import onnxruntime as ort

        from eventsvc.derive.clip import DECODE_EDGE
        from eventsvc.inference.clip_onnx import OnnxClip, preprocess
        from eventsvc.media.load import load_upright

        cache = a.model_cache or default_cache()
        t0 = time.perf_counter()
        model = make_vit_b32(cache)
        say(f"ViT-B/32 (random) at {model} in {time.perf_counter() - t0:.1f}s; "
            f"{os.cpu_count()} CPUs; {n} images, batch {batch}; ort {ort.__version__}")  # fmt: skip
        with scratch_dir("clip", a.tmp, a.keep) as scratch:
            lib = scratch / "lib"
            lib.mkdir()
            files = _images(lib, n)
            imgs = [load_upright("clip", str(f), DECODE_EDGE) for f in files]
            cfg = OnnxClip(model)._load()["pre"]
            tensors = np.stack([preprocess(i, cfg) for i in imgs])
            session = ort.InferenceSession(
                str(model / "visual" / "model.onnx"), ort.SessionOptions(),
                providers=["CPUExecutionProvider"],
            )  # fmt: skip
            name = session.get_inputs()[0].name
            _bare(session, name, tensors[:batch], batch)  # warm up
            bare_s: list[float] = []
            ours_s: list[float] = []
            bat_s: list[float] = []
            for r in range(runs):
                order = ("bare", "ours") if r % 2 == 0 else ("ours", "bare")
                for who in order:
                    if who == "bare":
                        with quiet_gc():
                            bare_s.append(_bare(session, name, tensors, batch))
                        say(f"run {r + 1}/{runs} bare: {rate(n, bare_s[-1]):.2f} images/s")
                    else:
                        with quiet_gc(), nats_server(scratch / f"nats-{r}") as url:
                            ours_s.append(
                                asyncio.run(_ours(url, scratch / f"data-{r}", model, files, batch))
                            )
                        say(f"run {r + 1}/{runs} ours (worker): {rate(n, ours_s[-1]):.2f} images/s")
                with quiet_gc():
                    bat_s.append(asyncio.run(_batcher(model, imgs, batch)))
                say(f"run {r + 1}/{runs} ours (batcher only): {rate(n, bat_s[-1]):.2f} images/s")
        limit = rate(n, median(bare_s))
        value = rate(n, median(ours_s))
        bat = rate(n, median(bat_s))
        return {
            "value": round(value, 2), "limit": round(limit, 2), "unit": "images/s (medians)",
            "ratio": round(value / limit, 3), "goal": GOAL, "images": n, "batch": batch,
            "runs": runs, "ours_runs_s": spread(ours_s), "bare_runs_s": spread(bare_s),
            "batcher_value": round(bat, 2),
            "batcher_ratio": round(bat / limit, 3), "cpus": os.cpu_count(),
            "onnxruntime": ort.__version__,
        }  # fmt: skip

    return run_main("clip", body, a.strict)
