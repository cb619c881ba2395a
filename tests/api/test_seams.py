"""The seams the composition fills in ``create_app`` (issue 15: the read side imports only
the core): ``clip`` (the CLIP back-ends text search encodes with) and ``originals`` (the
decoder of an original for a face crop). Built without them, the API says so; with
them, it uses the ones given."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import skimage.data
from litestar.testing import TestClient
from PIL import Image

from eventsvc.components import SandboxDecoder
from eventsvc.core.events import ClipEncoded, FaceBox, FacesDetected, face_id
from eventsvc.core.inference import ClipBackend, ClipBackends, ModelInfo
from eventsvc.core.settings import Library, Settings
from projections.app import create_app

from .conftest import ReadModel, h, hashed, online, seen
from .http import bad, ok

MODEL = "dlib-hog-resnet-v1-test"
DIM = 4


class _Fixed:
    """A CLIP back-end of our own (the protocol only): every text is one vector."""

    def __init__(self, version: str, vector: list[float]) -> None:
        self.version, self.vector, self.closed = version, vector, False

    async def info(self) -> ModelInfo:
        return ModelInfo(task="clip", name="fixed", version=self.version, dim=DIM)

    async def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise AssertionError("search encodes texts only")

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([self.vector] * len(texts), dtype=np.float32)

    async def aclose(self) -> None:
        self.closed = True


class _Given:
    def __init__(self, backend: _Fixed) -> None:
        self.backend, self.opened = backend, []

    def specs(self) -> list[str]:
        return [""]

    def open(self, spec: str) -> ClipBackend:
        self.opened.append(spec)
        return self.backend


def test_search_encodes_with_the_clip_given_else_answers_503(
    model: ReadModel, settings: Settings
) -> None:
    located = [seen("alpha", f"{n}.jpg", size=n) for n in (1, 2)]
    model.add(
        online("alpha"),
        *located,
        *[hashed(fs, h(n)) for n, fs in enumerate(located, start=1)],
        ClipEncoded(content_hash=h(1), model_version="m1", dim=DIM, vector=[1.0, 0, 0, 0]),
        ClipEncoded(content_hash=h(2), model_version="m1", dim=DIM, vector=[0, 1.0, 0, 0]),
    ).publish()
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        assert "without CLIP" in bad(c, "/photos/search", 503, q="red")
    given = _Given(_Fixed("m1", [0.0, 1.0, 0.0, 0.0]))
    assert isinstance(given, ClipBackends) and isinstance(given.backend, ClipBackend)
    with TestClient(create_app(settings, clip=given), base_url="http://127.0.0.1") as c:
        page = ok(c, "/photos/search", q="red", threshold=0.5)
    assert page["model_version"] == "m1" and given.opened == [""]
    assert [i["content_hash"] for i in page["items"]] == [h(2)]  # the vector given, ranked


def test_a_crop_from_an_original_needs_the_decoder_given(
    tmp_path: Path, model: ReadModel, settings: Settings
) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    path = root / "astro.jpg"
    Image.fromarray(skimage.data.astronaut()).save(path, quality=90)
    st = path.stat()
    fs = seen("alpha", "astro.jpg", size=st.st_size).model_copy(update={"mtime_ns": st.st_mtime_ns})
    model.add(
        online("alpha").model_copy(update={"root": str(root)}), fs, hashed(fs, h(7)),
        FacesDetected(content_hash=h(7), model=MODEL, faces=[FaceBox(
            box=(0.34, 0.15, 0.52, 0.33), score=1.2, landmarks=[(0.4, 0.2)] * 5,
            embedding=[0.0] * 128)]),
    ).publish()  # fmt: skip
    url = f"/faces/{face_id(h(7), MODEL, 0)}/thumbnail"
    libs = [Library(id="alpha", name="alpha", root=root)]
    with TestClient(create_app(settings, libraries=libs), base_url="http://127.0.0.1") as c:
        assert "no thumbnail to crop the face from yet" in bad(c, url, 404)
    assert not (settings.thumbs_dir / "faces").exists()  # nothing decoded, nothing cached
    app = create_app(settings, libraries=libs, originals=SandboxDecoder(settings))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text
