"""The thumbnail endpoint and face crops read only the two exact path shapes of the
thumbnail store (``<hash[:2]>/<hash>-<size>.jpg``, and the pre-issue-18
``<hash[:2]>/<hash>/<size>.jpg``), of the content asked for, inside the store."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from litestar.testing import TestClient
from PIL import Image

from eventsvc.core.events import FaceBox, FacesDetected, ThumbnailReady, face_id
from eventsvc.core.settings import Settings
from eventsvc.core.thumb_layout import legacy_thumb_rel, thumb_rel

from .conftest import ReadModel, h, hashed, seen
from .http import bad

MODEL = "dlib-hog-resnet-v1-test"


def jpeg(target: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    target.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    target.write_bytes(buf.getvalue())
    return buf.getvalue()


def photo(n: int) -> list[Any]:
    fs = seen("alpha", f"p/{n}.jpg", size=100 + n)
    return [fs, hashed(fs, h(n))]


def url(n: int, size: str = "small") -> str:
    return f"/photos/{h(n)}/thumbnail?size={size}"


def test_both_shapes_served_and_nothing_else(
    model: ReadModel, client: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    store = settings.thumbs_dir
    new = jpeg(store / thumb_rel(h(1), "small"), (200, 0, 0))  # one file for both sizes
    old_small = jpeg(store / legacy_thumb_rel(h(2), "small"), (0, 200, 0))
    old_large = jpeg(store / legacy_thumb_rel(h(2), "large"), (0, 0, 200), (128, 96))
    jpeg(store / "faces" / "00" / f"{h(3)}.jpg", (9, 9, 9))
    outside = tmp_path / "outside.jpg"
    jpeg(outside, (1, 2, 3))
    os.symlink(outside, (store / thumb_rel(h(4), "small")))
    shared = {"small": thumb_rel(h(1), "small"), "large": thumb_rel(h(1), "small")}
    model.add(
        *photo(1), ThumbnailReady(content_hash=h(1), sizes=shared),
        *photo(2), ThumbnailReady(content_hash=h(2), sizes={
            s: legacy_thumb_rel(h(2), s) for s in ("small", "large")}),
        # another content's thumbnail, a face crop: files of the store, not ours to serve
        *photo(3), ThumbnailReady(content_hash=h(3), sizes={
            "small": thumb_rel(h(1), "small"), "large": f"faces/00/{h(3)}.jpg"}),
        *photo(4), ThumbnailReady(content_hash=h(4), sizes={"small": thumb_rel(h(4), "small")}),
    ).publish()  # fmt: skip
    for size in ("small", "large"):
        r = client.get(url(1, size))
        assert r.status_code == 200 and r.content == new, r.text
        assert r.headers["content-type"] == "image/jpeg"
    assert client.get(url(2, "small")).content == old_small
    assert client.get(url(2, "large")).content == old_large
    for size in ("small", "large"):
        detail = bad(client, url(3, size), 404)
        assert "not a thumbnail of this content" in detail and "refused" in detail
    assert "outside" in bad(client, url(4), 404)  # the exact shape, but a link out


def test_face_crop_reads_our_thumbnail_shapes_only(
    model: ReadModel, client: TestClient[Any], settings: Settings
) -> None:
    store = settings.thumbs_dir
    jpeg(store / thumb_rel(h(1), "large"), (200, 0, 0), (400, 300))
    jpeg(store / legacy_thumb_rel(h(2), "large"), (0, 200, 0), (400, 300))
    box = (0.25, 0.25, 0.5, 0.5)
    face = [FaceBox(box=box, score=1.0, landmarks=[(0.3, 0.3)] * 5, embedding=[0.0] * 128)]
    for n, sizes in (
        (1, {"large": thumb_rel(h(1), "large")}),
        (2, {"large": legacy_thumb_rel(h(2), "large")}),
        (3, {"large": thumb_rel(h(1), "large")}),  # another content's: never cropped from
    ):
        model.add(
            *photo(n),
            ThumbnailReady(content_hash=h(n), sizes=sizes),
            FacesDetected(content_hash=h(n), model=MODEL, faces=face),
        )
    model.publish()
    for n, colour in ((1, (200, 0, 0)), (2, (0, 200, 0))):
        r = client.get(f"/faces/{face_id(h(n), MODEL, 0)}/thumbnail")
        assert r.status_code == 200, r.text
        pixel = Image.open(io.BytesIO(r.content)).convert("RGB").getpixel((5, 5))
        assert all(abs(a - b) < 30 for a, b in zip(pixel, colour, strict=True)), pixel
    detail = bad(client, f"/faces/{face_id(h(3), MODEL, 0)}/thumbnail", 404)
    assert "no thumbnail" in detail
