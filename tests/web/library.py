"""The generated library the browser tests browse, and the fake face back-end behind the
product's inference protocol (served by ``eventsvc.inference.service``'s own app).

* two people: photos with a red disc (person A, 4 photos) and a blue disc (person B,
  3 photos); the fake detector finds one face in each, with a 128-d descriptor near the
  person's centre, so the real clusterer founds two people (min_samples 3);
* an exact duplicate (a byte copy of A's first photo in ``copies/``);
* a near duplicate (a landscape and its half-size re-encode, same EXIF date);
* fillers (grey block patterns, no face, distinct perceptual hashes) over several months;
* a photo whose green face the fake detector refuses (a permanent faces failure);
* a 2-second H.264 video.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import uvicorn
from PIL import Image, ImageDraw

from eventsvc.core.errors import BadInput
from eventsvc.core.settings import Settings
from eventsvc.inference.protocol import DetectedFace, ModelInfo
from eventsvc.inference.service import create_inference_app
from eventsvc.server import free_port
from tests.harness import make_video

__all__ = ["TOO_GREEN", "FakeFaces", "Library", "fake_inference", "make_library"]

FACE_BOX = (0.35, 0.3, 0.65, 0.7)
TOO_GREEN = "the fake detector refuses green faces"


def _center(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128)
    return v / np.linalg.norm(v) * 1.45  # dlib descriptors have a norm of about 1.45


CENTERS = {"A": _center(101), "B": _center(202)}


class FakeFaces:
    """A FaceBackend: one face where the photo's middle is clearly red (A) or blue (B)."""

    info_ = ModelInfo(task="faces", name="fake-faces", version="fake-faces-v1", dim=128)

    async def info(self) -> ModelInfo:
        return self.info_

    async def detect(self, images: Sequence[Image.Image]) -> list[list[DetectedFace]]:
        return [self._one(img, i) for i, img in enumerate(images)]

    def _one(self, img: Image.Image, index: int) -> list[DetectedFace]:
        w, h = img.size
        mid = np.asarray(img.convert("RGB").crop((w * 2 // 5, h * 2 // 5, w * 3 // 5, h * 3 // 5)))
        r, g, b = (float(x) for x in mid.reshape(-1, 3).mean(axis=0))
        if g > r + 60 and g > b + 60:  # a permanent failure for the pipeline page to show
            raise BadInput(TOO_GREEN, index=index)
        who = "A" if r > g + 60 and r > b + 60 else "B" if b > r + 60 and b > g + 60 else None
        if who is None:
            return []
        # a small, deterministic offset from the pixels: every photo's face differs a little
        digest = hashlib.blake2b(mid.tobytes(), digest_size=8).digest()
        jitter = np.random.default_rng(int.from_bytes(digest, "big")).normal(size=128)
        emb = CENTERS[who] + jitter / np.linalg.norm(jitter) * 0.1
        lm = ((0.42, 0.45), (0.47, 0.45), (0.58, 0.45), (0.53, 0.45), (0.5, 0.55))
        return [DetectedFace(box=FACE_BOX, score=0.99, landmarks=lm, embedding=tuple(emb))]

    async def aclose(self) -> None:
        pass


@contextmanager
def fake_inference() -> Iterator[str]:
    """``eventsvc inference``'s app with the fake face back-end, on a loopback port."""
    app = create_inference_app(Settings(), clip=None, faces=FakeFaces())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake inference service did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _exif(date: str) -> Image.Exif:
    ex = Image.Exif()
    ex[0x010F] = "WebCam"
    ex[0x0110] = "Browser 1"
    ex.get_ifd(0x8769)[0x9003] = date  # DateTimeOriginal
    return ex


def _blocks(seed: int, size: tuple[int, int], grey: bool) -> Image.Image:
    """Random 8x6 blocks: a low-frequency pattern, so perceptual hashes differ."""
    rng = np.random.default_rng(seed)
    if grey:
        cells = np.repeat(rng.integers(30, 226, size=(6, 8, 1)), 3, axis=2)
    else:
        cells = rng.integers(30, 226, size=(6, 8, 3))
        cells[..., 0] = cells[..., 0] // 3 + 60  # muted red: the middle decides who it is
    small = Image.fromarray(cells.astype(np.uint8), "RGB")
    return small.resize(size, Image.Resampling.NEAREST)


def _face_photo(path: Path, seed: int, color: tuple[int, int, int], date: str) -> Path:
    img = _blocks(seed, (640, 480), grey=True)
    d = ImageDraw.Draw(img)
    w, h = img.size
    d.ellipse((w * 0.35, h * 0.3, w * 0.65, h * 0.7), fill=color)
    d.ellipse((w * 0.42, h * 0.42, w * 0.46, h * 0.47), fill=(20, 20, 20))  # eyes
    d.ellipse((w * 0.54, h * 0.42, w * 0.58, h * 0.47), fill=(20, 20, 20))
    d.arc((w * 0.44, h * 0.5, w * 0.56, h * 0.62), 20, 160, fill=(20, 20, 20), width=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=88, exif=_exif(date))
    return path


@dataclass
class Library:
    root: Path
    people: dict[str, list[Path]] = field(default_factory=dict)
    exact: tuple[Path, Path] | None = None
    near: tuple[Path, Path] | None = None
    video: Path | None = None
    failing: Path | None = None
    """A photo the fake detector refuses (a DerivationFailed of the faces stage)."""
    files: list[Path] = field(default_factory=list)


def make_library(root: Path, fillers: int = 70) -> Library:
    lib = Library(root=root)
    reds = [(220, 40, 40), (200, 30, 50), (235, 60, 30), (210, 50, 60)]
    blues = [(40, 60, 220), (30, 50, 200), (60, 40, 235)]
    lib.people["A"] = [
        _face_photo(root / "people" / f"anna_{i}.jpg", 10 + i, c, f"2024:0{i + 1}:10 10:00:00")
        for i, c in enumerate(reds)
    ]
    lib.people["B"] = [
        _face_photo(root / "people" / f"ben_{i}.jpg", 20 + i, c, f"2024:0{i + 2}:15 12:00:00")
        for i, c in enumerate(blues)
    ]
    copy = root / "copies" / "anna_0_copy.jpg"
    copy.parent.mkdir(parents=True)
    shutil.copy(lib.people["A"][0], copy)
    lib.exact = (lib.people["A"][0], copy)
    land = _blocks(7, (800, 600), grey=False)
    a, b = root / "trip" / "lake.jpg", root / "trip" / "lake_small.jpg"
    a.parent.mkdir(parents=True)
    land.save(a, quality=90, exif=_exif("2023:08:01 09:30:00"))
    land.resize((400, 300), Image.Resampling.LANCZOS).save(
        b, quality=75, exif=_exif("2023:08:01 09:30:00")
    )
    lib.near = (a, b)
    for i in range(fillers):
        p = root / "misc" / f"filler_{i:03d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        month = 1 + i % 12
        _blocks(1000 + i, (160, 120), grey=True).save(
            p, quality=80, exif=_exif(f"2022:{month:02d}:{1 + i // 12:02d} 08:00:00")
        )
        lib.files.append(p)
    lib.failing = _face_photo(root / "misc" / "green.jpg", 99, (40, 200, 40), "2021:06:01 10:00:00")
    lib.files.append(lib.failing)
    lib.video = make_video(root / "video" / "clip.mp4", seconds=2.0)
    lib.files += [*lib.people["A"], *lib.people["B"], copy, a, b, lib.video]
    return lib
