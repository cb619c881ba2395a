"""Tiny but meaningful CLIP models in the Immich layout, built with onnx.helper.

The visual model maps an image's mean R, G, B to embedding dimensions; the textual
model maps the words "red", "green", "blue" to the same dimensions. So "red" ranks red
photos first, with real onnxruntime, a real `tokenizers` tokenizer and the real loader.
``variant`` moves the colours to other dimensions: a second, different model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

__all__ = ["DIM", "VOCAB", "colour_image", "make_tiny_clip"]

DIM = 8
VOCAB = {
    "<|endoftext|>": 0, "[UNK]": 1, "red": 2, "green": 3, "blue": 4,
    "a": 5, "photo": 6, "of": 7, "dog": 8, "beach": 9,
}  # fmt: skip
COLOURS = {"red": (230, 20, 20), "green": (20, 210, 30), "blue": (25, 30, 220)}


def colour_image(name: str, size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, COLOURS[name])


def _save(model: onnx.ModelProto, path: Path) -> None:
    model.opset_import[0].version = 17
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def make_tiny_clip(directory: Path, *, variant: int = 0, image_size: int = 32,
                   context: int = 8, batched: bool = True) -> Path:  # fmt: skip
    """Write a tiny model into ``directory`` (Immich layout) and return it."""
    d = Path(directory)
    dims = [(i + variant * 3) % DIM for i in range(3)]
    # visual: mean over H, W -> [N, 3] -> shifted so grey is neutral -> [N, DIM]
    w = np.zeros((3, DIM), np.float32)
    for c, k in enumerate(dims):
        w[c, k] = 1.0
    bias = np.full((DIM,), 0.02, np.float32)
    n = "N" if batched else 1
    vis = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["m4"], axes=[2, 3], keepdims=0),
            helper.make_node("Sub", ["m4", "half"], ["centred"]),
            helper.make_node("MatMul", ["centred", "w"], ["proj"]),
            helper.make_node("Add", ["proj", "bias"], ["embedding"]),
        ],
        "tiny_visual",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [n, 3, image_size, image_size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [n, DIM])],
        [
            numpy_helper.from_array(np.full((3,), 0.3, np.float32), "half"),
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    _save(helper.make_model(vis), d / "visual" / "model.onnx")
    table = np.zeros((len(VOCAB), DIM), np.float32)
    for word, k in zip(("red", "green", "blue"), dims, strict=True):
        table[VOCAB[word], k] = 1.0
    for word in ("a", "photo", "of", "dog", "beach", "[UNK]"):
        table[VOCAB[word]] = 0.01
    txt = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "text"], ["tok"], axis=0),
            helper.make_node("ReduceSum", ["tok", "axis1"], ["summed"], keepdims=0),
            helper.make_node("Add", ["summed", "tbias"], ["embedding"]),
        ],
        "tiny_textual",
        [helper.make_tensor_value_info("text", TensorProto.INT32, ["N", context])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", DIM])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
            numpy_helper.from_array(np.full((DIM,), 0.001, np.float32), "tbias"),
        ],
    )
    _save(helper.make_model(txt), d / "textual" / "model.onnx")

    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    tok = Tokenizer(WordLevel(VOCAB, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(d / "textual" / "tokenizer.json"))
    (d / "textual" / "tokenizer_config.json").write_text(
        json.dumps({"pad_token": "<|endoftext|>", "model_max_length": context})
    )
    (d / "config.json").write_text(
        json.dumps(
            {
                "embed_dim": DIM,
                "vision_cfg": {"image_size": image_size},
                "text_cfg": {"context_length": context, "vocab_size": len(VOCAB)},
            }
        )
    )
    (d / "visual" / "preprocess_cfg.json").write_text(
        json.dumps(
            {
                "size": [image_size, image_size],
                "mode": "RGB",
                "mean": [0.0, 0.0, 0.0],
                "std": [1.0, 1.0, 1.0],
                "interpolation": "bicubic",
                "resize_mode": "shortest",
            }
        )
    )
    return d
