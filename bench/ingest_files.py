"""ingest's files: N distinct 12-megapixel JPEGs made from a few base images.

A few (8) distinct 4000x3000 base images (gradients, shapes, texture, mild noise; ~3 MB
at quality 90) with Pillow-written EXIF (Make, Model, Orientation, DateTimeOriginal, GPS,
exposure), each encoded once; N distinct files are byte copies whose EXIF ImageUniqueID
(a fixed-length ASCII field) is patched in place, so every file is a valid JPEG with its
own content hash. ``warm`` reads them once and ``pinned`` holds them mapped. Used by
:mod:`bench.ingest` and :mod:`bench.rederive`.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import say

__all__ = ["BASES", "HEIGHT", "WIDTH", "cached_files", "make_base", "make_files", "pinned", "warm"]

WIDTH, HEIGHT = 4000, 3000
BASES = 8
UID_MARK = b"BENCHUID"
UID_LEN = 32  # the EXIF ImageUniqueID: 32 ASCII hex digits (+ NUL)
PER_DIR = 250
_CACHE_VERSION = 1
_ORIENTATIONS = (1, 1, 6, 1, 1, 8, 1, 3)  # mostly upright, like a real library
_CAMERAS = (("Canon", "EOS R6"), ("NIKON CORPORATION", "NIKON Z 6"), ("Apple", "iPhone 13"),
            ("SONY", "ILCE-7M3"), ("FUJIFILM", "X-T4"), ("Google", "Pixel 7"),
            ("OLYMPUS CORPORATION", "E-M1MarkII"), ("Panasonic", "DC-G9"))  # fmt: skip


# ---------------------------------------------------------------- data


def make_base(seed: int) -> bytes:
    """One 4000x3000 quality-90 JPEG (~3 MB) with EXIF and a placeholder ImageUniqueID."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter
    from PIL.TiffImagePlugin import IFDRational

    rng = np.random.default_rng(seed)
    corners = rng.uniform(20, 235, (3, 3)).astype(np.float32)
    x = np.linspace(0, 1, WIDTH, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None, None]
    grad = corners[0] * (1 - x) * (1 - y) + corners[1] * x + corners[2] * y * (1 - x)
    im = Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        w, h = (int(v) for v in rng.integers(50, 1200, 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + w, y0 + h], fill=fill)
    im = im.filter(ImageFilter.BoxBlur(4))
    texture = Image.fromarray(
        rng.integers(0, 256, (HEIGHT // 4, WIDTH // 4), dtype=np.uint8), "L"
    ).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    pixels = np.asarray(im).astype(np.int16)
    pixels += ((np.asarray(texture).astype(np.int16) - 128) * 40 // 128)[:, :, None]
    pixels += rng.integers(-4, 5, (HEIGHT, WIDTH, 3), dtype=np.int16)
    im = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")

    make, model = _CAMERAS[seed % len(_CAMERAS)]
    when = f"2023:{1 + seed % 12:02d}:{1 + seed % 28:02d} 12:{seed % 60:02d}:56"
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    exif[0x0112] = _ORIENTATIONS[seed % len(_ORIENTATIONS)]
    exif[0x0131] = "bench-ingest"
    exif[0x0132] = when
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = sub[0x9004] = when  # DateTimeOriginal, DateTimeDigitized
    sub[0x9011] = "+01:00"
    sub[0x829A] = IFDRational(1, 250)  # ExposureTime
    sub[0x829D] = IFDRational(28, 10)  # FNumber
    sub[0x8827] = 100 * (1 + seed % 8)  # ISO
    sub[0x920A] = IFDRational(50, 1)  # FocalLength
    sub[0xA420] = (UID_MARK + b"0" * (UID_LEN - len(UID_MARK))).decode()  # ImageUniqueID
    gps = exif.get_ifd(0x8825)
    gps[1], gps[3] = "N", "E"
    gps[2] = (IFDRational(40 + seed, 1), IFDRational(51, 1), IFDRational(2424, 100))
    gps[4] = (IFDRational(2 + seed, 1), IFDRational(21, 1), IFDRational(756, 100))
    gps[5], gps[6] = 0, IFDRational(35 + seed, 1)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, exif=exif)
    data = buf.getvalue()
    if data.count(UID_MARK) != 1:
        raise SystemExit(f"base image {seed}: the ImageUniqueID placeholder is not unique")
    return data


def make_files(root: Path, n: int, pool: Any) -> list[Path]:
    """N distinct valid JPEGs from BASES encodes (ImageUniqueID patched per file)."""
    t0 = time.perf_counter()
    bases = pool.map(make_base, range(min(BASES, n)))
    say(
        f"encoded {len(bases)} base images in {time.perf_counter() - t0:.1f}s "
        f"({', '.join(f'{len(b) / 1e6:.1f}' for b in bases)} MB)"
    )
    t0 = time.perf_counter()
    offsets = [b.index(UID_MARK) for b in bases]
    paths: list[Path] = []
    for i in range(n):
        k = i % len(bases)
        data = bytearray(bases[k])
        data[offsets[k] : offsets[k] + UID_LEN] = b"%032x" % (0xB0000000 + i)
        leaf = root / f"{2020 + i // 1000}" / f"roll-{i // PER_DIR % 100:02d}"
        if i % PER_DIR == 0 or not leaf.is_dir():
            leaf.mkdir(parents=True, exist_ok=True)
        path = leaf / f"IMG_{i:05d}.jpg"
        with open(path, "wb") as f:
            f.write(data)
        paths.append(path)
    say(f"wrote {n} files in {time.perf_counter() - t0:.1f}s")
    return paths


def cached_files(parent: Path, n: int, pool: Any) -> list[Path]:
    root = parent / f"eventsvc-bench-ingest-files-v{_CACHE_VERSION}-{n}"
    done = root / ".complete"
    if done.exists():
        paths = [root / line for line in done.read_text().splitlines() if line]
        if len(paths) == n and all(p.is_file() for p in paths):
            say(f"reusing {n} cached files in {root}")
            return paths
    shutil.rmtree(root, ignore_errors=True)
    paths = make_files(root / "library", n, pool)
    done.write_text("".join(f"{p.relative_to(root)}\n" for p in paths))
    say(f"cached the files in {root} (remove it when done)")
    return paths


def warm(paths: list[Path]) -> int:
    """Read every file once so both runs find them in the page cache; returns bytes."""
    total = 0
    buf = bytearray(8 << 20)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    return total


@contextlib.contextmanager
def pinned(paths: list[Path]) -> Iterator[int]:
    """Keep the files in the page cache: a populated read-only shared mapping of each.

    A read beforehand is not enough where the kernel pages out idle page cache (e.g. a
    VM's DAMON reclaim of unmapped file pages idle for ~30 s): the files would be read
    from storage again during runs that take minutes. Mapped pages are left alone.
    Yields the bytes mapped (0 where mapping is refused: warm-by-reading only).
    """
    maps: list[mmap.mmap] = []
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    try:
        try:
            for p in paths:
                with open(p, "rb") as f:
                    maps.append(mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ))
        except (OSError, ValueError) as exc:
            say(f"cannot map the files ({exc}); they are only read once beforehand")
            for m in maps:
                m.close()
            maps = []
        yield sum(len(m) for m in maps)
    finally:
        for m in maps:
            m.close()
