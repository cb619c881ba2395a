"""The ONNX back-end on real onnxruntime/tokenizers, model resolution, the vector index."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eventsvc.core.errors import BadInput, ModelUnavailable
from eventsvc.core.inference import ClipBackend
from eventsvc.core.settings import Settings
from eventsvc.inference.clip_onnx import OnnxClip
from eventsvc.inference.models import clip_backend, resolve_model_dir
from projections.vectors import ModelMatrix, VectorIndex, top_k
from tests.clip.tiny import DIM, colour_image, make_tiny_clip

COLOURS = ("red", "green", "blue")


async def test_onnx_backend_ranks_matching_colours_first(tiny_models: tuple[Path, Path]) -> None:
    clip = OnnxClip(tiny_models[0])
    assert isinstance(clip, ClipBackend)
    info = await clip.info()
    assert (info.task, info.name, info.dim) == ("clip", "tiny-a", DIM)
    imgs = await clip.encode_images(
        [colour_image(c, (80 + 10 * i, 50)) for i, c in enumerate(COLOURS)]
    )
    texts = await clip.encode_texts(["a photo of RED", "green dog", "blue beach", "unknownword"])
    assert imgs.shape == (3, DIM) and imgs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(imgs, axis=1), 1.0, rtol=1e-5)
    scores = texts[:3] @ imgs.T
    assert list(scores.argmax(axis=1)) == [0, 1, 2]
    assert scores[0, 0] > 0.8 and scores[0, 1] < 0.2
    assert (await clip.encode_texts([])).shape == (0, DIM)


async def test_versions_differ_with_weights_and_unbatched_models_work(
    tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    a = await OnnxClip(tiny_models[0], name="m").info()
    b = await OnnxClip(tiny_models[1], name="m").info()
    assert a.version != b.version and a.version.startswith("m-")
    fixed = make_tiny_clip(tmp_path / "fixed", batched=False)
    clip = OnnxClip(fixed)
    vecs = await clip.encode_images([colour_image("blue"), colour_image("red")])
    assert vecs.shape == (2, DIM) and vecs[0].argmax() != vecs[1].argmax()


async def test_bad_image_is_bad_input_naming_it(tiny_models: tuple[Path, Path]) -> None:
    clip = OnnxClip(tiny_models[0])
    broken = Image.new("RGB", (0, 0))
    with pytest.raises(BadInput) as err:
        await clip.encode_images([colour_image("red"), broken])
    assert err.value.index == 1


async def test_incomplete_directory_is_model_unavailable(
    tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    d = tmp_path / "half"
    shutil.copytree(tiny_models[0], d)
    (d / "textual" / "model.onnx").unlink()
    with pytest.raises(ModelUnavailable, match=r"textual/model\.onnx"):
        await OnnxClip(d).info()
    with pytest.raises(ModelUnavailable, match="missing or incomplete"):
        resolve_model_dir(str(d), tmp_path / "models")
    (d / "textual" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelUnavailable, match="cannot load"):
        await OnnxClip(d).info()


async def test_offline_hub_model_says_both_ways_to_fix_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")  # HF_HUB_OFFLINE=1 (conftest)
    backend = clip_backend(settings)
    t0 = time.monotonic()
    with pytest.raises(ModelUnavailable) as err:
        await backend.info()
    assert time.monotonic() - t0 < 20
    text = str(err.value)
    assert "immich-app/ViT-B-32__openai" in text and "EVENTSVC_CLIP_MODEL_DIR" in text
    assert "downloads" in text


async def test_a_model_dropped_into_the_models_dir_is_found_without_download(
    tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", clip_model="someone/tiny")
    shutil.copytree(tiny_models[0], settings.models_dir / "someone--tiny")
    info = await clip_backend(settings).info()
    assert info.name == "tiny" and info.dim == DIM


def test_top_k_orders_and_thresholds() -> None:
    rng = np.random.default_rng(1)
    scores = rng.uniform(-1, 1, 1000).astype(np.float32)
    pos, vals = top_k(scores, 10)
    assert list(pos) == list(np.argsort(-scores)[:10])
    pos, vals = top_k(scores, 1000, threshold=0.9)
    assert len(pos) == int((scores >= 0.9).sum()) and all(np.diff(vals) <= 0)


def test_model_matrix_grows_and_overwrites() -> None:
    m = ModelMatrix("v", 4)
    m.add_many(["a", "b"], np.eye(4, dtype=np.float32)[:2], 5)
    m.add_many([f"h{i}" for i in range(2000)], np.full((2000, 4), 0.5, np.float32), 7)
    m.add_many(["a"], np.eye(4, dtype=np.float32)[3:4], 9)
    assert m.n == 2002 and m.first_seq == 5
    assert list(m.matrix[m.rows["a"]]) == [0, 0, 0, 1]
    hits = VectorIndex.rank(m, np.array([0, 0, 0, 1.0]), 1)
    assert hits[0][0] == "a"
