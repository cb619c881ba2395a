"""Faces on real photos with real dlib: scikit-image's public-domain astronaut portrait and
transformed copies (one person), face-free images (no faces), corrupt files, a missing
model; the pipeline and API end to end; the inference protocol over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import skimage.data
import uvicorn
from litestar import Litestar
from PIL import Image, ImageOps

from eventsvc.core.errors import BackendUnavailable, BadInput, ConfigError, ModelUnavailable
from eventsvc.core.events import FacesDetected
from eventsvc.core.inference import DetectedFace, FaceBackend, ModelInfo
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library, Settings
from eventsvc.inference.dlib_faces import DlibFaceBackend, DlibSettings
from eventsvc.inference.faces_http import HttpFaceBackend
from eventsvc.inference.service import create_inference_app
from projections.app import create_app
from projections.projector import rebuild
from tests.harness import Pipeline, running, wait_until

ASTRO = ("astro.jpg", "astro_mirror.jpg", "astro_800.png", "astro_400.jpg", "astro_q70.jpg")
FACE_FREE = ("coffee.jpg", "cat.jpg")


def astronaut() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut())


def variants() -> dict[str, Image.Image]:
    a = astronaut()
    q70 = io.BytesIO()
    a.save(q70, "JPEG", quality=70)
    return {
        "astro.jpg": a,
        "astro_mirror.jpg": ImageOps.mirror(a),
        "astro_800.png": a.resize((800, 800), Image.Resampling.BICUBIC),
        "astro_400.jpg": a.resize((400, 400), Image.Resampling.BICUBIC),
        "astro_q70.jpg": Image.open(io.BytesIO(q70.getvalue())).convert("RGB"),
        "coffee.jpg": Image.fromarray(skimage.data.coffee()),
        "cat.jpg": Image.fromarray(skimage.data.chelsea()),
    }


def face_library(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, img in variants().items():
        img.save(root / name, quality=92) if name.endswith(".jpg") else img.save(root / name)
    (root / "copies").mkdir()
    shutil.copy(root / "astro.jpg", root / "copies" / "same_bytes.jpg")  # same content
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 300)  # corrupt
    return root


@pytest.fixture(scope="module")
def backend() -> DlibFaceBackend:
    return DlibFaceBackend(DlibSettings())


def dist(a: DetectedFace, b: DetectedFace) -> float:
    return float(np.linalg.norm(np.subtract(a.embedding, b.embedding)))


# ------------------------------------------------------------------ the dlib back-end


async def test_dlib_finds_the_astronaut_and_nothing_in_face_free_images(
    backend: DlibFaceBackend,
) -> None:
    imgs = variants()
    info = await backend.info()
    assert info.name == "dlib-hog-resnet-v1" and info.dim == 128
    assert info.version.startswith("dlib-hog-resnet-v1-")
    found = dict(zip(imgs, await backend.detect(list(imgs.values())), strict=True))
    for name in FACE_FREE:
        assert found[name] == [], name
    for name in ASTRO:
        assert len(found[name]) == 1, (name, found[name])
        face = found[name][0]
        left, top, right, bottom = face.box
        # Her face: around x 0.43 (0.57 mirrored), y 0.24 of the portrait.
        cx = (left + right) / 2
        assert abs(cx - (0.57 if "mirror" in name else 0.43)) < 0.05, name
        assert abs((top + bottom) / 2 - 0.24) < 0.05, name
        assert 0.1 < right - left < 0.3 and face.score > 0.5
        assert len(face.landmarks) == 5
        assert all(left <= x <= right and top <= y <= bottom for x, y in face.landmarks)
        assert len(face.embedding) == 128
    ref = found["astro.jpg"][0]
    for name in ASTRO:  # the transformed copies are one person, well inside 0.5
        assert dist(ref, found[name][0]) < 0.3, name


async def test_dlib_cnn_detector_option() -> None:
    cnn = DlibFaceBackend(DlibSettings(detector="cnn", upsample=0, min_score=0.5))
    info = await cnn.info()
    assert info.name == "dlib-cnn-resnet-v1"
    (faces,) = await cnn.detect([astronaut()])
    assert len(faces) == 1
    (hog,) = (await DlibFaceBackend().detect([astronaut()]))[0]
    assert dist(faces[0], hog) < 0.3  # same descriptor network, same face


async def test_min_size_and_upsample_are_settings() -> None:
    small = astronaut().resize((256, 256))  # the face is ~44 px wide
    assert len((await DlibFaceBackend(DlibSettings(upsample=1)).detect([small]))[0]) == 1
    assert (await DlibFaceBackend(DlibSettings(upsample=1, min_size=60)).detect([small]))[0] == []


async def test_boxes_are_relative_to_the_upright_image(
    tmp_path: Path, backend: DlibFaceBackend
) -> None:
    """A JPEG stored sideways with EXIF Orientation 6, and a HEIC: boxes as displayed."""
    from pillow_heif import register_heif_opener

    from eventsvc.media.load import load_upright

    register_heif_opener()
    a = astronaut()
    sideways = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    a.transpose(Image.Transpose.ROTATE_90).save(sideways, quality=92, exif=exif)
    heic = tmp_path / "astro.heic"
    a.save(heic, quality=90)
    for path in (sideways, heic):
        img = load_upright("faces", str(path), 1024)
        assert img.size == (512, 512)
        (face,) = (await backend.detect([img]))[0]
        left, top, right, bottom = face.box
        assert abs((left + right) / 2 - 0.43) < 0.05 and abs((top + bottom) / 2 - 0.24) < 0.05
    capped = load_upright("faces", str(sideways), 256)  # the long edge is capped
    assert capped.size == (256, 256)


def fake_models_package(tmp: Path) -> Path:
    """A broken install: the package is there, its .dat files are not."""
    pkg = tmp / "fake_site" / "face_recognition_models"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    return tmp / "fake_site"


async def test_missing_model_files_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(fake_models_package(tmp_path)))
    with pytest.raises(ModelUnavailable, match="face model files missing"):
        await DlibFaceBackend().info()
    with pytest.raises(ConfigError, match="detector"):
        DlibFaceBackend(DlibSettings(detector="bogus"))


# ------------------------------------------------------------------ pipeline + API


@contextlib.asynccontextmanager
async def serve_here(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


def faces_settings(settings: Settings, **kw: Any) -> Settings:
    return settings.model_copy(update={"workers": ["hasher", "media"], **kw})


async def test_pipeline_faces_people_and_api(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    root = face_library(tmp_path / "lib")
    lib = Library(id="faces", name="faces", root=root)
    pipe = Pipeline(event_log, faces_settings(settings), [lib])
    async with running(pipe, workers=("faces", "people")) as p:
        await _scan(p)
        await wait_until(lambda: p.workers["people"].stats.people == 1, 60)
        await p.settled(60)
        detected = [e for _, e in await p.events("FacesDetected")]
        by_count = sorted(len(e.faces) for e in detected)
        # 7 distinct decodable contents (the copy has the same bytes): 5 faces, 2 empty.
        assert by_count == [0, 0, 1, 1, 1, 1, 1], by_count
        failed = [e for _, e in await p.events("DerivationFailed") if e.stage == "faces"]
        assert len(failed) == 1 and "cannot decode" in failed[0].reason
        stats = p.workers["faces"].stats
        assert stats.model_error is None and stats.images == 7 and stats.faces == 5
        async with serve_here(create_app(p.settings, event_log=event_log)) as c:
            people = (await c.get("/people")).json()
            assert len(people["items"]) == 1 and people["next"] is None
            anna = people["items"][0]
            assert anna["face_count"] == 5 and anna["photo_count"] == 5 and anna["name"] is None
            pid = anna["person_id"]
            photos = (await c.get(f"/people/{pid}/photos")).json()["items"]
            assert len(photos) == 5 and all(len(ph["faces"]) == 1 for ph in photos)
            # The crop of the cover face shows a face (dlib finds it again in the crop).
            r = await c.get(anna["cover"]["thumbnail"])
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
            crop = Image.open(io.BytesIO(r.content))
            assert max(crop.size) <= 256
            assert len((await DlibFaceBackend().detect([crop]))[0]) == 1
            # Name her: an event; GET /photos?person= by name or id, with other filters.
            r = await c.patch(f"/people/{pid}", json={"name": "Anna"})
            assert r.status_code == 202, r.text
            await _until_applied(p, r.json()["seqs"][-1])
            by_name = (await c.get("/photos", params={"person": "anna"})).json()["items"]
            assert len(by_name) == 6  # five contents, one of them at two locations
            by_id = await c.get("/photos", params={"person": pid, "path_prefix": "copies/"})
            assert [i["path"] for i in by_id.json()["items"]] == ["copies/same_bytes.jpg"]
            none = (await c.get("/photos", params={"person": "Bob"})).json()["items"]
            assert none == []
            # Split one face off (a new person), reject another.
            faces = {ph["content_hash"]: ph["faces"][0]["face_id"] for ph in photos}
            split, gone = sorted(faces.values())[:2]
            r = await c.post(f"/faces/{split}/reassign", json={"new_person": True})
            assert r.status_code == 202, r.text
            new_pid = r.json()["person_id"]
            r = await c.post(f"/faces/{gone}/reject")
            assert r.status_code == 202, r.text
            await _until_applied(p, r.json()["seqs"][-1])
            counts = {
                i["person_id"]: i["face_count"] for i in (await c.get("/people")).json()["items"]
            }
            assert counts == {pid: 3, new_pid: 1}
            assert (await c.get(f"/faces/{gone}")).json()["rejected"] is True
            # Unhappy paths answer clearly.
            r = await c.get("/people/p-0000000000000000")
            assert r.status_code == 404 and "unknown person" in r.json()["detail"]
            r = await c.post(f"/faces/{split}/reassign", json={})
            assert r.status_code == 400
            r = await c.post(f"/people/{pid}/merge", json={"people": [pid]})
            assert r.status_code == 400 and "already" in r.json()["detail"]
            r = await c.get("/faces/not-a-face/thumbnail")
            assert r.status_code == 400
            # The split is merged back by hand.
            r = await c.post(f"/people/{pid}/merge", json={"people": [new_pid]})
            assert r.status_code == 202, r.text
            await _until_applied(p, r.json()["seqs"][-1])
            (only,) = (await c.get("/people")).json()["items"]
            assert only["person_id"] == pid and only["face_count"] == 4
            assert (await c.get(f"/people/{new_pid}")).json()["person_id"] == pid
        live = _people_rows(p)
    # Decisions survive `eventsvc rebuild`.
    await rebuild(event_log, settings.readmodel_dir)
    assert _people_rows(pipe) == live


async def _scan(p: Pipeline) -> None:
    await p.scanner.tick(full=True)


async def _until_applied(p: Pipeline, seq: int) -> None:
    await wait_until(lambda: p.projector is not None and p.projector.status.last_seq >= seq, 20)


def _people_rows(p: Pipeline) -> dict[str, Any]:
    conn = p.db()
    try:
        return {
            t: sorted(map(tuple, conn.execute(f"SELECT * FROM {t}")))
            for t in ("faces", "people", "face_scans", "people_decisions")
        }
    finally:
        conn.close()


async def test_worker_pauses_without_model_and_resumes(
    tmp_path: Path, event_log: EventLog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    astronaut().save(root / "a.jpg", quality=90)
    fake = str(fake_models_package(tmp_path))
    monkeypatch.syspath_prepend(fake)
    s = faces_settings(settings, faces_recheck_interval=0.3)
    async with running(Pipeline(event_log, s, [Library("l", "l", root)]), workers=("faces",)) as p:
        await _scan(p)
        worker = p.workers["faces"]
        await wait_until(lambda: worker.stats.model_error is not None, 20)
        assert "face model files missing" in worker.stats.model_error
        await wait_until(lambda: p.events("HashComputed"), 20)
        await asyncio.sleep(1.0)  # several re-checks: still nothing consumed or failed
        assert await p.events("FacesDetected") == []
        assert [e for _, e in await p.events("DerivationFailed") if e.stage == "faces"] == []
        ci = await event_log.js.consumer_info(s.stream, "faces")
        assert ci.num_pending + ci.num_ack_pending >= 1
        # The models appear (the operator fixed the install): the worker resumes by itself.
        monkeypatch.undo()
        await wait_until(lambda: p.events("FacesDetected"), 30)
        assert worker.stats.model_error is None
        (ev,) = [e for _, e in await p.events("FacesDetected")]
        assert isinstance(ev, FacesDetected) and len(ev.faces) == 1


# ------------------------------------------------------------------ inference over HTTP


class Flaky:
    """A FaceBackend that fails transiently ``fails`` times, then delegates."""

    def __init__(self, inner: FaceBackend, fails: int) -> None:
        self.inner, self.fails, self.calls = inner, fails, 0

    async def info(self) -> ModelInfo:
        return await self.inner.info()

    async def detect(self, images: Any) -> list[list[DetectedFace]]:
        self.calls += 1
        if self.calls <= self.fails:
            raise BackendUnavailable("GPU busy")
        return await self.inner.detect(images)

    async def aclose(self) -> None:
        return None


def inference_app(faces: FaceBackend | None) -> Litestar:
    """The real `eventsvc inference` application, serving only a face back-end."""
    return create_inference_app(Settings(), clip=None, faces=faces)


@contextlib.asynccontextmanager
async def serve(app: Litestar) -> AsyncIterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started, 10, 0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_http_backend_against_a_real_service(backend: DlibFaceBackend) -> None:
    flaky = Flaky(backend, fails=1)
    async with serve(inference_app(flaky)) as url:
        client = HttpFaceBackend(url, retries=2, backoff=0.05)
        try:
            info = await client.info()
            assert info == await backend.info()
            imgs = [astronaut(), Image.fromarray(skimage.data.coffee())]
            remote = await client.detect(imgs)  # the first try fails (500), the retry works
            assert flaky.calls == 2
            local = await backend.detect(imgs)
            assert len(remote[0]) == 1 and remote[1] == []
            assert dist(remote[0][0], local[0][0]) < 0.1  # JPEG q95 on the wire
            # Bad input: 422 with the index, BadInput on the client.
            async with httpx.AsyncClient(base_url=url) as raw:
                ok = base64.b64encode(_jpeg(astronaut())).decode()
                r = await raw.post("/v1/faces/detect", json={"images": [ok, "!!notb64"]})
                assert r.status_code == 422
                assert r.json()["code"] == "bad_input" and r.json()["index"] == 1
            with pytest.raises(BadInput):
                await client._call("POST", "/v1/faces/detect", {"images": ["nope"]})
        finally:
            await client.aclose()
    async with serve(inference_app(None)) as url:
        client = HttpFaceBackend(url, retries=0)
        try:
            with pytest.raises(ModelUnavailable, match="no face"):
                await client.info()
            with pytest.raises(ModelUnavailable):  # 503 model_unavailable on detect too
                await client.detect([astronaut()])
        finally:
            await client.aclose()
    # Nobody listening: retried, then BackendUnavailable (transient for the worker).
    client = HttpFaceBackend(url, retries=1, backoff=0.01, timeout=2)
    try:
        with pytest.raises(BackendUnavailable, match="2 tries"):
            await client.detect([astronaut()])
    finally:
        await client.aclose()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def test_worker_through_an_inference_service(
    tmp_path: Path, event_log: EventLog, settings: Settings, backend: DlibFaceBackend
) -> None:
    """`faces_inference_url`: the worker sends the pixels to the service; same facts."""
    root = tmp_path / "lib"
    root.mkdir()
    astronaut().save(root / "a.jpg", quality=90)
    Image.fromarray(skimage.data.coffee()).save(root / "c.jpg", quality=90)
    async with serve(inference_app(backend)) as url:
        s = faces_settings(settings, faces_inference_url=url)
        async with running(
            Pipeline(event_log, s, [Library("l", "l", root)]), workers=("faces",)
        ) as p:
            await _scan(p)
            await wait_until(lambda: p.workers["faces"].stats.images == 2, 30)
            found = {e.content_hash: e for _, e in await p.events("FacesDetected")}
    assert sorted(len(e.faces) for e in found.values()) == [0, 1]
    assert {e.model for e in found.values()} == {(await backend.info()).version}
