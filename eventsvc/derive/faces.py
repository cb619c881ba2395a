"""The faces worker: HashComputed (images) -> FacesDetected, once per (content, model).

"No faces" is a fact too: an empty list is recorded. Images are decoded upright (EXIF
orientation applied; RAW through its embedded preview, HEIC through pillow-heif) and
scaled to ``faces_max_edge``; boxes and landmarks are relative to that upright image.

A missing model (dlib or its files not installed, or an inference service answering
``model_unavailable``) or an inference service that does not answer pauses the worker
(:mod:`eventsvc.derive.hold`): it says why (log, ``stats``, the status bucket), holds
what it had fetched without spending deliveries, records no failure, and checks again
with back-off up to ``faces_recheck_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from PIL import Image

from eventsvc.core.errors import BadInput, ModelUnavailable, PermanentError
from eventsvc.core.events import Event, FaceBox, FacesDetected, HashComputed, subject_token
from eventsvc.core.log import ConsumerSpec, EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.derive.hold import InferenceStats, InferenceWorker
from eventsvc.derive.versions import FACES_VERSION
from eventsvc.derive.worker import WithBackground
from eventsvc.inference.protocol import DetectedFace, FaceBackend, ModelInfo
from eventsvc.media.load import load_hashed
from eventsvc.media.sandbox import DecodeSandbox

__all__ = ["FacesDeriver", "FacesStats", "FacesWorker", "to_event"]

log = logging.getLogger(__name__)


def to_event(content_hash: str, model: str, faces: list[DetectedFace], seq: int | None):
    return FacesDetected(
        content_hash=content_hash,
        model=model,
        faces=[
            FaceBox(
                box=f.box,
                score=f.score,
                landmarks=[tuple(p) for p in f.landmarks],
                embedding=list(f.embedding),
            )
            for f in faces
        ],
        causation=seq,
    )


@dataclass
class FacesStats(InferenceStats):
    faces: int = 0
    images: int = 0
    no_faces: int = 0


class FacesDeriver:
    """The handler of the ``faces`` worker."""

    def __init__(
        self,
        roots: LibraryRoots,
        event_log: EventLog,
        backend: FaceBackend,
        max_edge: int,
        sandbox: DecodeSandbox | None = None,
    ) -> None:
        self.roots = roots
        self.event_log = event_log
        self.backend = backend
        self.max_edge = max_edge
        self.sandbox = sandbox
        """Where images are decoded (None: in this process, unbounded: tests only)."""
        self.model: ModelInfo | None = None
        self.stats = FacesStats()
        self.version = FACES_VERSION
        """The deriver version its facts carry (:mod:`eventsvc.derive.versions`)."""

    async def __call__(self, event: Event, seq: int) -> list[Event]:
        if not isinstance(event, HashComputed) or event.media_kind != "image":
            return []
        model = self._model()
        if not await self.stale(event):
            return []  # analysed by this version already (maybe from another location)
        self.roots.root(event.library_id)  # not configured here: fail before a thread hop
        img = await asyncio.to_thread(self._load, event)
        try:
            found = (await self.backend.detect([img]))[0]
        except BadInput as exc:
            raise PermanentError(f"faces: the image cannot be analysed: {exc}") from exc
        self.stats.images += 1
        self.stats.faces += len(found)
        self.stats.no_faces += not found
        made = to_event(event.content_hash, model.version, found, seq)
        return [made.model_copy(update={"deriver_version": self.version})]

    def _model(self) -> ModelInfo:
        if self.model is None:
            raise ModelUnavailable(self.stats.model_error or "no face model")
        return self.model

    async def stale(self, event: HashComputed) -> bool:
        """Whether ``event`` is an image without FacesDetected of this version for the
        current model (an older version's, or none); ModelUnavailable without a model."""
        if event.media_kind != "image":
            return False
        subject = (
            f"{self.event_log.prefix}.content.{event.content_hash}.FacesDetected."
            f"{subject_token(self._model().version)}"
        )
        _, version = await self.event_log.last_fact(subject)
        return version < self.version

    def _load(self, event: HashComputed) -> Image.Image:
        return load_hashed(
            "faces", self.roots, event, self.max_edge, purpose="faces", sandbox=self.sandbox
        )


class FacesWorker(WithBackground, InferenceWorker):
    """An InferenceWorker (pauses and holds while the model is unavailable); in ``up``
    with its background re-derivation (``faces-rederive``)."""

    stats: FacesStats

    def __init__(
        self,
        event_log: EventLog,
        spec: ConsumerSpec,
        deriver: FacesDeriver,
        *,
        concurrency: int,
        recheck_interval: float,
    ) -> None:
        super().__init__(
            "faces",
            event_log,
            spec,
            deriver,
            concurrency=concurrency,
            batch=max(concurrency * 2, 2),
            recheck=recheck_interval,
            label="face",
        )
