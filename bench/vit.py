"""A random-weight CLIP ViT-B/32 in ONNX, built with onnx.helper (no torch): the image
tower (visual tower + projection) here, the text tower in bench/clip_text.py, both with
the real model's graph shape and FLOPs, in a model directory in the Immich layout.

The directory is a cache (``default_cache()``: under $TMPDIR): built once, atomically
(into a sibling, then renamed), and rebuilt when its ``config.json`` lacks this
module's ``BUILD`` tag."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from bench.clip_text import CONTEXT, make_text_b32
from bench.onnx_graph import GraphBuilder

__all__ = ["BUILD", "default_cache", "make_vit_b32"]

BUILD = "vit-b32-random/3 (full text tower)"
WIDTH, LAYERS, HEADS, PATCH, SIZE, EMBED = 768, 12, 12, 32, 224, 512


def default_cache() -> Path:
    """Under the caller's $TMPDIR (not ``python -m bench``'s run directory, removed at
    the end of every run)."""
    from bench.cleanup import cache_dir

    return cache_dir() / "eventsvc-bench-clip-vit-b32"


def _current(d: Path) -> bool:
    try:
        return json.loads((d / "config.json").read_text()).get("bench_build") == BUILD
    except (OSError, ValueError, AttributeError):
        return False


def make_vit_b32(directory: Path, seed: int = 0) -> Path:
    """The model directory ``directory``, built there unless already current."""
    d = Path(directory)
    if _current(d):
        return d
    if d.exists() and any(d.iterdir()) and not (d / "config.json").is_file():
        raise SystemExit(f"{d} is not empty and holds no model: not overwriting it")
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.build-", dir=d.parent))
    try:
        _build(tmp, seed)
        if d.exists():  # an older build: move it aside, then remove it
            old = d.with_name(f".{d.name}.old-{os.getpid()}")
            d.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return d


def _build(d: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = GraphBuilder(rng, WIDTH)
    inits, nodes = g.inits, g.nodes
    w, const, node, ln = g.w, g.const, g.node, g.ln

    tokens = (SIZE // PATCH) ** 2 + 1
    x = node("Conv", ["image", w("conv1.w", WIDTH, 3, PATCH, PATCH)], "patches",
             strides=[PATCH, PATCH])  # fmt: skip
    x = node("Reshape", [x, const("s1", np.array([0, WIDTH, -1], np.int64))], "flat")
    x = node("Transpose", [x], "seq", perm=[0, 2, 1])  # [N, 49, 768]
    cls = node("Expand", [w("cls", 1, 1, WIDTH),
                          node("Concat", [node("Slice", [node("Shape", [x], "shp"),
                                                         const("z", np.array([0], np.int64)),
                                                         const("o", np.array([1], np.int64))],
                                               "n"),
                                          const("one_w", np.array([1, WIDTH], np.int64))],
                               "clsshape", axis=0)], "clsx")  # fmt: skip
    x = node("Concat", [cls, x], "withcls", axis=1)
    x = node("Add", [x, w("pos", tokens, WIDTH)], "emb")
    x = ln(x, "ln_pre")
    x = g.blocks(x, layers=LAYERS, tokens=tokens, heads=HEADS)
    x = node("Gather", [x, const("zero", np.array(0, np.int64))], "clsout", axis=1)
    x = ln(x, "ln_post")
    node("MatMul", [x, w("proj", WIDTH, EMBED)], "embedding")
    graph = helper.make_graph(
        nodes, "vit_b32_random",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", EMBED])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (d / "visual").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(d / "visual" / "model.onnx"))
    make_text_b32(d / "textual", seed=seed + 1)
    (d / "visual" / "preprocess_cfg.json").write_text(json.dumps({
        "size": [SIZE, SIZE], "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic",
        "resize_mode": "shortest",
    }))  # fmt: skip
    # config.json last: its tag marks the build complete.
    (d / "config.json").write_text(json.dumps({
        "embed_dim": EMBED, "vision_cfg": {"image_size": SIZE, "patch_size": PATCH},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": 49408, "width": 512,
                     "heads": 8, "layers": 12},
        "bench_build": BUILD,
    }))  # fmt: skip
