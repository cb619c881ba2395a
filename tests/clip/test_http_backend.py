"""The HTTP back-end against a real `eventsvc inference` process."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from eventsvc.core.errors import BackendUnavailable, BadInput, ModelUnavailable
from eventsvc.core.inference import ModelInfo
from eventsvc.core.settings import Settings
from eventsvc.inference.clip_onnx import OnnxClip
from eventsvc.inference.http import HttpClip
from eventsvc.inference.models import clip_backend
from eventsvc.inference.service import create_inference_app
from tests.clip.tiny import colour_image
from tests.harness import cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(tmp_path: Path, model: str) -> Iterator[str]:
    port = _free_port()
    proc = cli("inference", "--data-dir", str(tmp_path / "data"), "--port", str(port),
               "--model", model)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/v1/info", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise AssertionError(f"eventsvc inference did not start: {out}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def inference_url(tmp_path: Path, tiny_models: tuple[Path, Path]) -> Iterator[str]:
    yield from _serve(tmp_path, str(tiny_models[0]))


async def test_http_backend_matches_in_process(
    inference_url: str, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "d", clip_inference_url=inference_url)
    remote = clip_backend(settings)
    assert isinstance(remote, HttpClip)
    local = OnnxClip(tiny_models[0])
    try:
        assert await remote.info() == await local.info()
        imgs = [colour_image(c) for c in ("red", "green", "blue")]
        r, lo = await remote.encode_images(imgs), await local.encode_images(imgs)
        np.testing.assert_allclose(r, lo, atol=0.02)  # JPEG on the wire
        texts = ["red", "a photo of blue"]
        np.testing.assert_allclose(
            await remote.encode_texts(texts), await local.encode_texts(texts), atol=1e-5
        )
        # Bad input is permanent and names the item.
        good = base64.b64encode(b"junk").decode()
        async with httpx.AsyncClient(base_url=inference_url) as c:
            resp = await c.post("/v1/clip/images", json={"images": [good]})
        assert resp.status_code == 422 and resp.json()["code"] == "bad_input"
        assert resp.json()["index"] == 0
        with pytest.raises(BadInput):
            await remote._call("POST", "/v1/clip/texts", {"texts": []})
        async with httpx.AsyncClient(base_url=inference_url) as c:
            info = (await c.get("/v1/info")).json()
        assert info["faces"]["task"] == "faces" and info["clip"]["dim"] == 8
    finally:
        await remote.aclose()


async def test_http_backend_model_unavailable_and_unreachable(tmp_path: Path) -> None:
    for url in _serve(tmp_path, str(tmp_path / "no-such-model")):
        remote = HttpClip(url, retries=1, backoff=0.01)
        with pytest.raises(ModelUnavailable, match="no-such-model"):
            await remote.info()
        with pytest.raises(ModelUnavailable, match="no-such-model"):
            await remote.encode_texts(["red"])
        await remote.aclose()
    gone = HttpClip(f"http://127.0.0.1:{_free_port()}", retries=2, backoff=0.01, timeout=1)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable, match="after 3 tries"):
        await gone.encode_texts(["red"])
    assert time.monotonic() - t0 < 10
    await gone.aclose()


class _Flaky:
    """A ClipBackend (the product's own protocol) that fails twice, then answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def info(self) -> ModelInfo:
        return ModelInfo(task="clip", name="m", version="m-1", dim=2)

    async def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise AssertionError("not used")

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls < 3:
            raise BackendUnavailable("GPU busy")
        return np.array([[1.0, 0.0]] * len(texts), np.float32)

    async def aclose(self) -> None:
        pass


async def test_transient_errors_are_retried_then_succeed(tmp_path: Path) -> None:
    flaky = _Flaky()
    app = create_inference_app(Settings(data_dir=tmp_path), clip=flaky, faces=None)
    # The real service app, called over ASGI: the client's retry logic runs unchanged.
    remote = HttpClip("http://x", retries=3, backoff=0.01, transport=httpx.ASGITransport(app))
    vecs = await remote.encode_texts(["red"])
    assert flaky.calls == 3 and vecs.shape == (1, 2) and remote.model is not None
    await remote.aclose()
    flaky.calls = -10
    remote = HttpClip("http://x", retries=1, backoff=0.01, transport=httpx.ASGITransport(app))
    with pytest.raises(BackendUnavailable, match="GPU busy"):
        await remote.encode_texts(["red"])
    await remote.aclose()
