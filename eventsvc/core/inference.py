"""The inference protocol shared by every back-end (in-process ONNX/dlib, or HTTP).

A back-end answers for one task (``clip`` or ``faces``). Workers hold a back-end and
never know where it runs; ``eventsvc inference`` serves any in-process back-end over
HTTP so a GPU host can do the work for workers elsewhere.

Images cross the protocol as upright RGB ``PIL.Image`` objects (orientation already
applied, RAW/HEIC already through their preview). Vectors are ``float32`` numpy rows,
L2-normalised for CLIP.

Wire format of ``eventsvc inference`` (JSON; images as base64 of JPEG or PNG bytes)::

    GET  /v1/info                 -> {"clip": ModelInfo | {"error": str},
                                      "faces": ModelInfo | {"error": str}}
    POST /v1/clip/images          {"images": [b64, ...]}
                                  -> {"model": ModelInfo, "vectors": [[float, ...], ...]}
    POST /v1/clip/texts           {"texts": [str, ...]}
                                  -> {"model": ModelInfo, "vectors": [[float, ...], ...]}
    POST /v1/faces/detect         {"images": [b64, ...]}
                                  -> {"model": ModelInfo, "faces": [[DetectedFace, ...], ...]}

Errors are JSON with ``detail`` and ``code``: 503 ``model_unavailable`` (permanent
until an operator acts: the worker pauses and says why), 422 ``bad_input`` with the
``index`` of the offending item (permanent for that item), other 5xx and timeouts are
transient (retried with back-off).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

__all__ = ["ClipBackend", "ClipBackends", "DetectedFace", "FaceBackend", "ModelInfo"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    task: str
    """``clip`` or ``faces``."""
    name: str
    """Human name, e.g. ``ViT-B-32__openai`` or ``dlib-hog-resnet``."""
    version: str
    """What events record as the model (``model_version`` / ``model``): the name plus a
    short digest of the weights, so two different weight files never share a version."""
    dim: int
    """Embedding dimension."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(
            task=str(data["task"]),
            name=str(data["name"]),
            version=str(data["version"]),
            dim=int(data["dim"]),
        )


@dataclass(frozen=True, slots=True)
class DetectedFace:
    box: tuple[float, float, float, float]
    """(left, top, right, bottom), relative to the upright image (0..1)."""
    score: float
    landmarks: tuple[tuple[float, float], ...]
    """Five points (relative coordinates): eye corners and nose, dlib's 5-point order."""
    embedding: tuple[float, ...]


@runtime_checkable
class ClipBackend(Protocol):
    async def info(self) -> ModelInfo:
        """The model; raises ModelUnavailable when there is none to load."""
        ...

    async def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(len(images), dim) float32, unit rows."""
        ...

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, unit rows."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class FaceBackend(Protocol):
    async def info(self) -> ModelInfo: ...

    async def detect(self, images: Sequence[Image.Image]) -> list[list[DetectedFace]]:
        """One list per image; an empty list means the image has no face."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ClipBackends(Protocol):
    """The CLIP back-ends a reader may encode queries with, as the composition builds
    them (the read side knows this seam, never how a back-end is made)."""

    def specs(self) -> list[str]:
        """The model specs to try, in order: ``""`` (the configured model) first."""
        ...

    def open(self, spec: str) -> ClipBackend:
        """A back-end for ``spec`` (``""``: the configured model); the caller closes it."""
        ...
