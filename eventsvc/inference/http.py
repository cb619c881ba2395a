"""The HTTP back-end: a :class:`ClipBackend` talking to ``eventsvc inference``.

Timeouts and 5xx answers (other than ``model_unavailable``) are transient and retried
with back-off; after the last try they raise BackendUnavailable. 503
``model_unavailable`` raises ModelUnavailable, 422 ``bad_input`` raises BadInput with
the index of the offending item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
from PIL import Image

from eventsvc.core.errors import BackendUnavailable, BadInput, InferenceError, ModelUnavailable
from eventsvc.core.inference import ModelInfo
from eventsvc.inference.wire import encode_image

__all__ = ["HttpClip"]


class HttpClip:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self.backoff = backoff
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout), transport=transport
        )
        self._info: ModelInfo | None = None

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                resp = await self._client.request(method, path, json=body)
            except httpx.TimeoutException as exc:
                last = f"timed out: {exc!r}"
                continue
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            try:
                data = resp.json()
            except ValueError:
                data = {"detail": resp.text[:200]}
            detail = str(data.get("detail", "")) if isinstance(data, dict) else ""
            code = data.get("code") if isinstance(data, dict) else None
            if resp.status_code == 503 and code == "model_unavailable":
                raise ModelUnavailable(f"inference at {self.base_url}: {detail}")
            if resp.status_code == 422 and code == "bad_input":
                raise BadInput(f"inference at {self.base_url}: {detail}", index=data.get("index"))
            if resp.status_code >= 500 or resp.status_code == 429:
                last = f"HTTP {resp.status_code}: {detail}"
                continue
            if resp.status_code >= 400:
                raise InferenceError(
                    f"inference at {self.base_url}{path} refused the request "
                    f"(HTTP {resp.status_code}): {detail}"
                )
            if not isinstance(data, dict):
                raise BackendUnavailable(f"inference at {self.base_url}: answer is not an object")
            return data
        raise BackendUnavailable(
            f"inference at {self.base_url}{path} failed after {self.retries + 1} tries: {last}"
        )

    async def info(self) -> ModelInfo:
        data = await self._call("GET", "/v1/info")
        clip = data.get("clip") or {}
        if "error" in clip or "version" not in clip:
            raise ModelUnavailable(
                f"inference at {self.base_url} has no CLIP model: {clip.get('error', 'none')}"
            )
        self._info = ModelInfo.from_json(clip)
        return self._info

    def _vectors(self, data: dict[str, Any], n: int) -> np.ndarray:
        try:
            self._info = ModelInfo.from_json(data["model"])
            out = np.asarray(data["vectors"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendUnavailable(f"inference at {self.base_url}: bad answer ({exc})") from exc
        if out.ndim != 2 or out.shape[0] != n:
            raise BackendUnavailable(
                f"inference at {self.base_url}: {out.shape} vectors for {n} inputs"
            )
        return out

    async def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        payload = await asyncio.to_thread(lambda: [encode_image(i) for i in images])
        data = await self._call("POST", "/v1/clip/images", {"images": payload})
        return self._vectors(data, len(payload))

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        data = await self._call("POST", "/v1/clip/texts", {"texts": list(texts)})
        return self._vectors(data, len(texts))

    @property
    def model(self) -> ModelInfo | None:
        """The model of the last answer (the server may have been given another)."""
        return self._info

    async def aclose(self) -> None:
        await self._client.aclose()
