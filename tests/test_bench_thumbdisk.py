"""bench.thumbdisk's own measures: disk bytes of a tree, SSIM, and the WebP quality search."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from bench.thumbdisk import disk_bytes, ssim, webp_matching


def textured(seed: int = 1, size: tuple[int, int] = (160, 120)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size[0], dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 25, (size[1], size[0], 3)).astype(np.float32)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def test_disk_bytes_counts_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"x" * 10_000)
    (tmp_path / "g").write_bytes(b"")
    fb, db, nf, nd = disk_bytes(tmp_path)
    assert (nf, nd) == (2, 2)
    assert fb >= 10_000 and db > 0  # whole blocks: at least the bytes written


def test_ssim_is_one_for_equal_images_and_drops_with_damage() -> None:
    img = textured()
    assert abs(ssim(img, img.copy()) - 1.0) < 1e-9
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=10)
    damaged = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    assert ssim(img, damaged) < 0.9


def test_webp_matching_reaches_the_target_at_the_lowest_quality() -> None:
    img = textured(2)
    target = 0.9
    q, data, s = webp_matching(img, target, method=2)
    assert s >= target and data[:4] == b"RIFF"
    if q > 1:  # one step lower misses the target
        buf = io.BytesIO()
        img.save(buf, "WEBP", quality=q - 1, method=2)
        assert ssim(img, Image.open(io.BytesIO(buf.getvalue())).convert("RGB")) < target
