"""A random-weight CLIP ViT-B/32 (visual tower + projection) in ONNX, built with
onnx.helper (no torch): the same graph shape and FLOPs as the real image encoder, in a
model directory in the Immich layout (the textual side is a small stand-in)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["make_vit_b32"]

WIDTH, LAYERS, HEADS, PATCH, SIZE, EMBED = 768, 12, 12, 32, 224, 512


def make_vit_b32(directory: Path, seed: int = 0) -> Path:
    d = Path(directory)
    if (d / "visual" / "model.onnx").is_file() and (d / "config.json").is_file():
        return d
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def w(name: str, *shape: int, scale: float = 0.02) -> str:
        inits.append(numpy_helper.from_array(
            (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32), name
        ))  # fmt: skip
        return name

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def ln(x: str, name: str) -> str:
        g = const(f"{name}.g", np.ones(WIDTH, np.float32))
        b = const(f"{name}.b", np.zeros(WIDTH, np.float32))
        return node("LayerNormalization", [x, g, b], f"{name}.out", axis=-1, epsilon=1e-5)

    def linear(x: str, name: str, n_in: int, n_out: int) -> str:
        y = node("MatMul", [x, w(f"{name}.w", n_in, n_out)], f"{name}.mm")
        return node("Add", [y, const(f"{name}.b", np.zeros(n_out, np.float32))], f"{name}.out")

    tokens = (SIZE // PATCH) ** 2 + 1
    hd = WIDTH // HEADS
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
    heads_shape = const("hs", np.array([0, tokens, HEADS, hd], np.int64))
    merge_shape = const("ms", np.array([0, tokens, WIDTH], np.int64))
    scale = const("scale", np.array(1.0 / np.sqrt(hd), np.float32))
    for i in range(LAYERS):
        p = f"l{i}"
        h = ln(x, f"{p}.ln1")
        qkv = []
        for part in ("q", "k", "v"):
            t = linear(h, f"{p}.{part}", WIDTH, WIDTH)
            t = node("Reshape", [t, heads_shape], f"{p}.{part}.r")
            qkv.append(node("Transpose", [t], f"{p}.{part}.t", perm=[0, 2, 1, 3]))
        kt = node("Transpose", [qkv[1]], f"{p}.kt", perm=[0, 1, 3, 2])
        att = node("Mul", [node("MatMul", [qkv[0], kt], f"{p}.qk"), scale], f"{p}.sc")
        att = node("Softmax", [att], f"{p}.sm", axis=-1)
        o = node("MatMul", [att, qkv[2]], f"{p}.av")
        o = node("Transpose", [o], f"{p}.ot", perm=[0, 2, 1, 3])
        o = node("Reshape", [o, merge_shape], f"{p}.om")
        x = node("Add", [x, linear(o, f"{p}.proj", WIDTH, WIDTH)], f"{p}.res1")
        h = ln(x, f"{p}.ln2")
        h = linear(h, f"{p}.fc", WIDTH, WIDTH * 4)
        a = node("Mul", [h, const(f"{p}.a", np.array(1.702, np.float32))], f"{p}.ha")
        h = node("Mul", [h, node("Sigmoid", [a], f"{p}.sg")], f"{p}.gelu")  # QuickGELU
        x = node("Add", [x, linear(h, f"{p}.fc2", WIDTH * 4, WIDTH)], f"{p}.res2")
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
    # A small textual stand-in so the directory loads as a whole model.
    from tests.clip.tiny import make_tiny_clip

    tiny = make_tiny_clip(d / "_tiny")
    (d / "textual").mkdir(exist_ok=True)
    for f in ("model.onnx", "tokenizer.json", "tokenizer_config.json"):
        (d / "textual" / f).write_bytes((tiny / "textual" / f).read_bytes())
    (d / "config.json").write_text(json.dumps({
        "embed_dim": EMBED, "vision_cfg": {"image_size": SIZE, "patch_size": PATCH},
        "text_cfg": {"context_length": 8},
    }))  # fmt: skip
    (d / "visual" / "preprocess_cfg.json").write_text(json.dumps({
        "size": [SIZE, SIZE], "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic",
        "resize_mode": "shortest",
    }))  # fmt: skip
    return d
