"""Faces over HTTP: the ``POST /v1/faces/detect`` controller of ``eventsvc inference`` and
the client back-end workers use to call it (wire format: ``eventsvc.core.inference``).

Errors: 503 ``model_unavailable`` -> ModelUnavailable (the worker pauses), 422
``bad_input`` -> BadInput (permanent for that image), other 5xx, timeouts and connection
errors -> retried ``retries`` times with back-off, then BackendUnavailable (transient).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

import httpx
from litestar import Controller, Response, post
from litestar.params import Body
from PIL import Image

try:  # litestar >= 2.23: say explicitly that the back-end is injected by name
    from litestar.di import NamedDependency

    FacesDep = NamedDependency[Any]
except ImportError:  # pragma: no cover - older litestar infers it
    FacesDep = Any  # type: ignore[misc]

from eventsvc.core.errors import BackendUnavailable, BadInput, InferenceError, ModelUnavailable
from eventsvc.core.inference import DetectedFace, FaceBackend, ModelInfo
from eventsvc.inference.wire import decode_images, encode_image, error_response

__all__ = [
    "FacesDep",
    "FacesInferenceController",
    "HttpFaceBackend",
    "face_from_json",
    "face_to_json",
]


def face_to_json(f: DetectedFace) -> dict[str, Any]:
    return {
        "box": list(f.box),
        "score": f.score,
        "landmarks": [list(p) for p in f.landmarks],
        "embedding": list(f.embedding),
    }


def face_from_json(d: dict[str, Any]) -> DetectedFace:
    return DetectedFace(
        box=tuple(float(x) for x in d["box"]),  # type: ignore[arg-type]
        score=float(d["score"]),
        landmarks=tuple((float(p[0]), float(p[1])) for p in d["landmarks"]),
        embedding=tuple(float(x) for x in d["embedding"]),
    )


class FacesInferenceController(Controller):
    path = "/v1/faces"
    tags = ("inference",)

    @post("/detect", status_code=200, summary="Detect and describe faces")
    async def detect(
        self,
        faces_backend: FacesDep,
        decoder: FacesDep,  # the service's decode sandbox (injected by name too)
        data: Annotated[dict[str, Any], Body(description='{"images": [base64 JPEG/PNG, ...]}')],
    ) -> Response[Any]:
        """``{"images": [b64, ...]}`` -> ``{"model": ModelInfo, "faces": [[face, ...], ...]}``."""
        try:
            backend: FaceBackend | None = faces_backend
            if backend is None:
                raise ModelUnavailable("this inference service has no face back-end")
            images = decode_images(data.get("images") if isinstance(data, dict) else None, decoder)
            info = await backend.info()
            found = await backend.detect(images)
        except InferenceError as exc:
            return error_response(exc)
        return Response(
            {"model": info.to_json(), "faces": [[face_to_json(f) for f in fs] for fs in found]}
        )


class HttpFaceBackend:
    """``FaceBackend`` calling an ``eventsvc inference`` service."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.5,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self.backoff = backoff
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers=headers,
            transport=transport,
        )
        self._info: ModelInfo | None = None

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                r = await self.client.request(method, path, json=body)
            except httpx.HTTPError as exc:  # timeouts, refused connections, resets
                last = f"{type(exc).__name__}: {exc}"
                continue
            try:
                payload = r.json()
            except ValueError:
                payload = {}
            detail = payload.get("detail", r.text[:200]) if isinstance(payload, dict) else ""
            if r.status_code == 200:
                return payload
            if r.status_code == 503 and payload.get("code") == "model_unavailable":
                raise ModelUnavailable(f"{self.base_url}: {detail}")
            if r.status_code == 422:
                raise BadInput(f"{self.base_url}: {detail}", index=payload.get("index"))
            if r.status_code >= 500:
                last = f"HTTP {r.status_code}: {detail}"
                continue
            raise InferenceError(f"{self.base_url}{path}: HTTP {r.status_code}: {detail}")
        raise BackendUnavailable(
            f"{self.base_url}{path} did not answer after {self.retries + 1} tries: {last}"
        )

    async def info(self) -> ModelInfo:
        payload = await self._call("GET", "/v1/info")
        faces = payload.get("faces") if isinstance(payload, dict) else None
        if not isinstance(faces, dict) or "error" in faces or "version" not in faces:
            why = faces.get("error") if isinstance(faces, dict) else "no faces entry"
            raise ModelUnavailable(f"{self.base_url}: no face model: {why}")
        self._info = ModelInfo.from_json(faces)
        return self._info

    async def detect(self, images: Sequence[Image.Image]) -> list[list[DetectedFace]]:
        if not images:
            return []
        payload = await self._call(
            "POST", "/v1/faces/detect", {"images": [encode_image(i) for i in images]}
        )
        try:
            model = ModelInfo.from_json(payload["model"])
            faces = [[face_from_json(f) for f in fs] for fs in payload["faces"]]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BackendUnavailable(f"{self.base_url}: malformed answer: {exc!r}") from exc
        if len(faces) != len(images):
            raise BackendUnavailable(
                f"{self.base_url}: {len(faces)} answers for {len(images)} images"
            )
        if self._info is not None and model.version != self._info.version:
            # The service changed model under us: what we record must say which one.
            raise ModelUnavailable(
                f"{self.base_url}: model changed from {self._info.version} to {model.version}"
            )
        return faces

    async def aclose(self) -> None:
        await self.client.aclose()
