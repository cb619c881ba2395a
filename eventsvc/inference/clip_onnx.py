"""In-process CLIP on ONNX Runtime, from a model directory in the layout Immich publishes::

    config.json                      open_clip style: embed_dim, vision_cfg.image_size,
                                     text_cfg.context_length
    visual/model.onnx                image -> embedding
    visual/preprocess_cfg.json       size, mean, std, interpolation, resize_mode
    textual/model.onnx               token ids -> embedding
    textual/tokenizer.json           a `tokenizers` tokenizer
    textual/tokenizer_config.json    pad_token (and friends)

Sessions run in a worker thread (ONNX Runtime releases the GIL). The model version is
the directory's name plus a short BLAKE3 digest of both ONNX files, so two different
weight files never share a version.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from eventsvc.core.errors import BadInput, ModelUnavailable
from eventsvc.core.inference import ModelInfo

__all__ = ["OnnxClip", "Preprocess", "model_digest", "preprocess"]

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
_DIGESTS: dict[tuple[str, int, int], str] = {}


def model_digest(*files: Path) -> str:
    """Short BLAKE3 digest of the files' bytes (cached per path, size and mtime)."""
    import blake3

    h = blake3.blake3()
    for f in files:
        st = f.stat()
        key = (str(f), st.st_size, st.st_mtime_ns)
        one = _DIGESTS.get(key)
        if one is None:
            one = blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(f).hexdigest()
            _DIGESTS[key] = one
        h.update(one.encode())
    return h.hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Preprocess:
    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"


def preprocess(img: Image.Image, cfg: Preprocess) -> np.ndarray:
    """CHW float32, normalised: resize (shortest side, then centre crop; or squash)."""
    img = img if img.mode == "RGB" else img.convert("RGB")
    w, h = cfg.size
    resample = _RESAMPLE.get(cfg.interpolation, Image.Resampling.BICUBIC)
    if cfg.resize_mode == "squash":
        img = img.resize((w, h), resample)
    else:
        scale = max(w / img.width, h / img.height)
        nw, nh = max(w, round(img.width * scale)), max(h, round(img.height * scale))
        img = img.resize((nw, nh), resample)
        left, top = (nw - w) // 2, (nh - h) // 2
        img = img.crop((left, top, left + w, top + h))
    arr = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
    arr = (arr - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelUnavailable(f"{path} is not a JSON object")
    return data


class OnnxClip:
    """A :class:`~eventsvc.core.inference.ClipBackend` on ONNX Runtime."""

    def __init__(self, directory: Path, *, name: str | None = None, threads: int = 0) -> None:
        self.directory = Path(directory)
        self.name = name or self.directory.name
        self.threads = threads
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] | None = None

    # ------------------------------------------------------------ loading

    def _load(self) -> dict[str, Any]:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load_files()
            return self._loaded

    def _load_files(self) -> dict[str, Any]:
        d = self.directory
        need = [
            d / "config.json",
            d / "visual" / "model.onnx",
            d / "textual" / "model.onnx",
            d / "textual" / "tokenizer.json",
        ]
        missing = [str(p.relative_to(d)) for p in need if not p.is_file()]
        if missing:
            raise ModelUnavailable(
                f"CLIP model directory {d} lacks {', '.join(missing)} (Immich layout expected)"
            )
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelUnavailable(
                f"CLIP needs onnxruntime and tokenizers (pip install 'eventsvc[clip]'): {exc}"
            ) from exc
        config = _read_json(d / "config.json")
        pre_path = d / "visual" / "preprocess_cfg.json"
        pre = _read_json(pre_path) if pre_path.is_file() else {}
        tok_cfg_path = d / "textual" / "tokenizer_config.json"
        tok_cfg = _read_json(tok_cfg_path) if tok_cfg_path.is_file() else {}
        try:
            image_size = pre.get("size") or config["vision_cfg"]["image_size"]
            if isinstance(image_size, int):
                image_size = [image_size, image_size]
            cfg = Preprocess(
                size=(int(image_size[0]), int(image_size[-1])),
                mean=tuple(pre.get("mean", (0.48145466, 0.4578275, 0.40821073))),  # type: ignore[arg-type]
                std=tuple(pre.get("std", (0.26862954, 0.26130258, 0.27577711))),  # type: ignore[arg-type]
                interpolation=str(pre.get("interpolation", "bicubic")),
                resize_mode=str(pre.get("resize_mode", "shortest")),
            )
            context = int(config.get("text_cfg", {}).get("context_length", 77))
            dim = int(config["embed_dim"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelUnavailable(
                f"{d / 'config.json'} is not an open_clip config: {exc}"
            ) from exc
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        try:
            visual = ort.InferenceSession(
                str(d / "visual" / "model.onnx"), opts, providers=providers
            )
            textual = ort.InferenceSession(
                str(d / "textual" / "model.onnx"), opts, providers=providers
            )
            tokenizer = Tokenizer.from_file(str(d / "textual" / "tokenizer.json"))
        except Exception as exc:  # onnxruntime and tokenizers raise their own types
            raise ModelUnavailable(f"cannot load the CLIP model in {d}: {exc}") from exc
        pad = tok_cfg.get("pad_token", "<|endoftext|>")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        pad_id = tokenizer.token_to_id(str(pad)) if pad is not None else None
        tokenizer.enable_padding(
            length=context, pad_token=str(pad), pad_id=pad_id if pad_id is not None else 0
        )
        tokenizer.enable_truncation(max_length=context)
        text_in = textual.get_inputs()[0]
        vis_in = visual.get_inputs()[0]
        version = f"{self.name}-{model_digest(need[1], need[2])}"
        return {
            "visual": visual,
            "textual": textual,
            "tokenizer": tokenizer,
            "pre": cfg,
            "vis_input": vis_in.name,
            "vis_batched": not isinstance(vis_in.shape[0], int),
            "text_input": text_in.name,
            "text_dtype": np.int32 if "int32" in text_in.type else np.int64,
            "text_batched": not isinstance(text_in.shape[0], int),
            "info": ModelInfo(task="clip", name=self.name, version=version, dim=dim),
        }

    # ------------------------------------------------------------ the protocol

    async def info(self) -> ModelInfo:
        loaded = await asyncio.to_thread(self._load)
        return loaded["info"]  # type: ignore[no-any-return]

    def info_sync(self) -> ModelInfo:
        return self._load()["info"]  # type: ignore[no-any-return]

    def encode_images_sync(self, images: Sequence[Image.Image]) -> np.ndarray:
        m = self._load()
        if not images:
            return np.zeros((0, m["info"].dim), np.float32)
        arrays = []
        for i, img in enumerate(images):
            try:
                arrays.append(preprocess(img, m["pre"]))
            except Exception as exc:  # Pillow errors on a broken image
                raise BadInput(f"cannot preprocess image {i}: {exc}", index=i) from exc
        batch = np.stack(arrays)
        return _unit(self._run(m["visual"], m["vis_input"], batch, m["vis_batched"]))

    def encode_texts_sync(self, texts: Sequence[str]) -> np.ndarray:
        m = self._load()
        if not texts:
            return np.zeros((0, m["info"].dim), np.float32)
        encs = m["tokenizer"].encode_batch([str(t) for t in texts])
        ids = np.asarray([e.ids for e in encs], dtype=m["text_dtype"])
        return _unit(self._run(m["textual"], m["text_input"], ids, m["text_batched"]))

    @staticmethod
    def _run(session: Any, name: str, batch: np.ndarray, batched: bool) -> np.ndarray:
        if batched:
            return np.asarray(session.run(None, {name: batch})[0])
        rows = [session.run(None, {name: batch[i : i + 1]})[0] for i in range(len(batch))]
        return np.concatenate(rows)

    async def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return await asyncio.to_thread(self.encode_images_sync, list(images))

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.encode_texts_sync, list(texts))

    async def aclose(self) -> None:
        with self._lock:
            self._loaded = None
