"""The in-process face back-end: dlib (``dlib-bin``) with the model files shipped by
``face_recognition_models``, found without importing that package (its import needs
``pkg_resources``, which recent setuptools no longer ship).

Detection: dlib's HOG detector (default) or its CNN (MMOD) detector; then the 5-point
shape predictor and the ResNet face descriptor (128-d, Euclidean distance < 0.6 is
"probably the same person" on LFW). Boxes and landmarks are returned in coordinates
relative to the image given (upright RGB).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from eventsvc.core.errors import BadInput, ConfigError, ModelUnavailable
from eventsvc.core.inference import DetectedFace, ModelInfo

__all__ = ["DlibFaceBackend", "DlibSettings", "model_dir", "model_files", "weights_digest"]

SHAPE = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
MMOD = "mmod_human_face_detector.dat"
DETECTORS = ("hog", "cnn")


@dataclass(frozen=True, slots=True)
class DlibSettings:
    detector: str = "hog"
    upsample: int = 1
    min_size: int = 40
    min_score: float = 0.3
    num_jitters: int = 0

    @classmethod
    def from_settings(cls, settings: Any) -> DlibSettings:
        return cls(
            detector=settings.faces_detector,
            upsample=settings.faces_upsample,
            min_size=settings.faces_min_size,
            min_score=settings.faces_min_score,
            num_jitters=settings.faces_num_jitters,
        )


def model_dir() -> Path:
    """The ``models`` directory of ``face_recognition_models``; ModelUnavailable if absent."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError) as exc:
        raise ModelUnavailable(f"face_recognition_models cannot be located: {exc}") from exc
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "face_recognition_models is not installed (pip install 'eventsvc[faces]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_files(detector: str) -> list[Path]:
    if detector not in DETECTORS:
        raise ConfigError(f"faces detector must be one of {DETECTORS}, not {detector!r}")
    base = model_dir()
    names = [SHAPE, RESNET] + ([MMOD] if detector == "cnn" else [])
    files = [base / n for n in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModelUnavailable(f"face model files missing: {', '.join(missing)}")
    return files


def weights_digest(files: list[Path]) -> str:
    """A short digest of the weights (size + head + tail of each file: cheap, distinct)."""
    h = hashlib.blake2b(digest_size=4)
    for f in files:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            h.update(size.to_bytes(8, "little") + fh.read(1 << 16))
            fh.seek(max(0, size - (1 << 16)))
            h.update(fh.read())
    return h.hexdigest()


class _Models:
    def __init__(self, cfg: DlibSettings) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise ModelUnavailable(
                f"dlib is not installed (pip install 'eventsvc[faces]'): {exc}"
            ) from exc
        files = model_files(cfg.detector)
        try:
            self.shape = dlib.shape_predictor(str(files[0]))
            self.resnet = dlib.face_recognition_model_v1(str(files[1]))
            if cfg.detector == "cnn":
                self.cnn = dlib.cnn_face_detection_model_v1(str(files[2]))
                self.hog = None
            else:
                self.hog = dlib.get_frontal_face_detector()
                self.cnn = None
        except RuntimeError as exc:  # a truncated or foreign .dat file
            raise ModelUnavailable(f"cannot load the dlib face models: {exc}") from exc
        self.dlib = dlib
        name = f"dlib-{cfg.detector}-resnet-v1"
        self.info = ModelInfo(
            task="faces", name=name, version=f"{name}-{weights_digest(files)}", dim=128
        )


class DlibFaceBackend:
    """``FaceBackend`` running dlib in this process (calls run in a worker thread)."""

    def __init__(self, cfg: DlibSettings | None = None) -> None:
        self.cfg = cfg or DlibSettings()
        if self.cfg.detector not in DETECTORS:
            raise ConfigError(f"faces detector must be one of {DETECTORS}")
        self._models: _Models | None = None
        self._lock = threading.Lock()

    def load(self) -> _Models:
        """Load the models once (thread-safe). ModelUnavailable says what is missing."""
        with self._lock:
            if self._models is None:
                self._models = _Models(self.cfg)
            return self._models

    async def info(self) -> ModelInfo:
        return (await asyncio.to_thread(self.load)).info

    async def detect(self, images: Sequence[Image.Image]) -> list[list[DetectedFace]]:
        return await asyncio.to_thread(self.detect_sync, images)

    def detect_sync(self, images: Sequence[Image.Image]) -> list[list[DetectedFace]]:
        models = self.load()
        out = []
        for i, img in enumerate(images):
            try:
                arr = np.asarray(img.convert("RGB") if img.mode != "RGB" else img)
            except (OSError, ValueError) as exc:
                raise BadInput(f"image {i} cannot be read: {exc}", index=i) from exc
            out.append(self.detect_array(models, arr))
        return out

    def detect_array(self, models: _Models, arr: np.ndarray) -> list[DetectedFace]:
        """Detect, align and describe the faces of one RGB array (H, W, 3) uint8."""
        cfg = self.cfg
        h, w = arr.shape[:2]
        if h < 8 or w < 8:
            return []
        arr = np.ascontiguousarray(arr)
        found: list[tuple[Any, float]] = []
        if models.cnn is not None:
            for d in models.cnn(arr, cfg.upsample):
                if d.confidence >= cfg.min_score:
                    found.append((d.rect, float(d.confidence)))
        else:
            rects, scores, _ = models.hog.run(arr, cfg.upsample, cfg.min_score)
            found = [(r, float(s)) for r, s in zip(rects, scores, strict=True)]
        faces = []
        for rect, score in found:
            left, top = max(rect.left(), 0), max(rect.top(), 0)
            right, bottom = min(rect.right(), w - 1), min(rect.bottom(), h - 1)
            if right - left < cfg.min_size or bottom - top <= 0:
                continue
            shape = models.shape(arr, rect)
            emb = models.resnet.compute_face_descriptor(arr, shape, cfg.num_jitters)
            faces.append(
                DetectedFace(
                    box=(left / w, top / h, (right + 1) / w, (bottom + 1) / h),
                    score=round(score, 4),
                    landmarks=tuple((p.x / w, p.y / h) for p in shape.parts()),
                    embedding=tuple(float(x) for x in emb),
                )
            )
        faces.sort(key=lambda f: (f.box[0], f.box[1]))
        return faces

    async def aclose(self) -> None:
        return None
