"""thumbdisk: disk used by the thumbnail store per content, and WebP against JPEG.

Files: ``--photos`` 12-megapixel quality-90 JPEGs (:func:`bench.ingest_files.make_base`:
gradients, shapes, strong fine texture, noise, EXIF orientation; the headline figure),
``--smooth`` smoother 12-MP JPEGs (:func:`make_smooth`; together they bracket real
photos) and ``--small`` small images (random crops of the first, 80 to 1400 px on the long
edge, half of them no larger than the 256 px small size: icons, old web pictures,
messenger images).

Ours: the media deriver's own code, :func:`eventsvc.derive.media.analyse_image` (decode,
render, write) into a thumbnail root: files in ``<hash[:2]>/<hash>-<size>.jpg``, one file
when both sizes are the same pixels. Bytes on disk are ``st_blocks * 512`` of every file
and directory under the root. Shard directories only fill up in a big library, so the
directory cost per content is measured apart, at scale: ``--dir-contents`` contents' worth
of empty files in each layout (ours, and the layout before issue 18 with a directory per
content), and added per content.

Limit: the bare Pillow save of the same thumbnails: every distinct thumbnail image (the
same decode and resize, :func:`eventsvc.media.thumbs.thumbnail_images`), saved with
``Image.save`` (same JPEG settings) into one flat directory, files only.
ratio = ours / limit bytes per content of the 12-MP set; goal <= 1.05.
Before (the old layout: both sizes always written, a directory per content) is reported
beside it.

WebP: each 12-MP photo's two thumbnails (both sets, reported apart) are encoded as JPEG
at our quality; WebP (Pillow, libwebp ``method`` 4 and 2) takes the lowest quality whose
SSIM (luma, Gaussian window 1.5, Wang et al.; computed here with numpy/scipy) is at
least JPEG's. Bytes and encode time (median of ``--runs``) of both are reported; WebP
"wins" only when it saves >= 20 % at <= 1.5x JPEG's encode time
(encoding is a large share of the media worker's time per photo).

Scratch data lives in one temporary directory removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import io
import os
import random
import time
from pathlib import Path
from typing import Any

from bench.common import Outcome, base_parser, median, run_main, say, scratch_dir

__all__ = ["main", "ssim"]

GOAL = "<= 1.05"
WEBP_SAVING = 0.20
"""WebP must be at least this much smaller at equal SSIM ..."""
WEBP_SLOWDOWN = 1.5
"""... and encode at most this many times JPEG's time, to be worth switching to."""


# ---------------------------------------------------------------- measuring


def disk_bytes(root: Path) -> tuple[int, int, int, int]:
    """(file bytes, directory bytes, files, directories) on disk under ``root`` (not
    counting ``root`` itself): ``st_blocks * 512``, links not followed."""
    fb = db = nf = nd = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            db += os.lstat(os.path.join(dirpath, d)).st_blocks * 512
            nd += 1
        for f in filenames:
            fb += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            nf += 1
    return fb, db, nf, nd


def ssim(a: Any, b: Any) -> float:
    """Mean SSIM of the luma of two same-sized RGB images (Gaussian window, sigma 1.5)."""
    import numpy as np
    from scipy import ndimage

    def luma(img: Any) -> Any:
        x = np.asarray(img.convert("RGB"), dtype=np.float64)
        return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114

    x, y = luma(a), luma(b)

    def g(z: Any) -> Any:
        return ndimage.gaussian_filter(z, 1.5, truncate=3.5)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = g(x), g(y)
    sxx, syy, sxy = g(x * x) - mx * mx, g(y * y) - my * my, g(x * y) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(m.mean())


def _encode(img: Any, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _encode_s(img: Any, runs: int, fmt: str, **kw: Any) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        _encode(img, fmt, **kw)
        times.append(time.perf_counter() - t0)
    return median(times)


def _decoded(data: bytes) -> Any:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def webp_matching(img: Any, target: float, method: int) -> tuple[int, bytes, float]:
    """The lowest WebP quality (1-100) whose SSIM is >= ``target`` (bisection; 100 when
    none reaches it), with its bytes and SSIM."""
    lo, hi = 1, 100
    best: tuple[int, bytes, float] | None = None
    while lo <= hi:
        q = (lo + hi) // 2
        data = _encode(img, "WEBP", quality=q, method=method)
        s = ssim(img, _decoded(data))
        if s >= target:
            best, hi = (q, data, s), q - 1
        else:
            lo = q + 1
    if best is None:
        data = _encode(img, "WEBP", quality=100, method=method)
        best = (100, data, ssim(img, _decoded(data)))
    return best


# ---------------------------------------------------------------- files


def make_photos(folder: Path, count: int) -> list[Path]:
    from bench.ingest_files import make_base

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        t0 = time.monotonic()
        path = folder / f"photo{i:03d}.jpg"
        path.write_bytes(make_base(100 + i))
        out.append(path)
        say(f"12-MP photo {i + 1}/{count}: {path.stat().st_size / 1e6:.1f} MB "
            f"in {time.monotonic() - t0:.1f}s")  # fmt: skip
    return out


def make_smooth(folder: Path, count: int) -> list[Path]:
    """12-MP quality-90 JPEGs of smoother content than ``make_base`` (whose strong
    fine texture makes big thumbnails): a colour field, 1/f texture at 1/2 scale and
    larger, shapes, mild sensor noise. The two sets bracket real photos."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    from bench.ingest_files import HEIGHT, WIDTH

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    w, h = WIDTH // 2, HEIGHT // 2
    for i in range(count):
        rng = np.random.default_rng(1000 + i)
        field = Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8), "RGB")
        base = np.asarray(field.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
        tex = np.zeros((h, w), np.float32)
        for step, amp in ((64, 30.0), (16, 18.0), (4, 10.0)):
            n = rng.standard_normal((h // step + 2, w // step + 2)).astype(np.float32)
            big = Image.fromarray(n, "F").resize((w + step, h + step), Image.Resampling.BILINEAR)
            tex += amp * np.asarray(big)[:h, :w]
        img = Image.fromarray(np.clip(base + tex[..., None], 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(60):
            x, y, r = (
                int(rng.integers(0, w)),
                int(rng.integers(0, h)),
                int(rng.integers(w // 80, w // 8)),
            )
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        img = img.filter(ImageFilter.GaussianBlur(1.2)).resize(
            (WIDTH, HEIGHT), Image.Resampling.BICUBIC
        )
        pixels = np.asarray(img, dtype=np.int16) + rng.integers(
            -3, 4, (HEIGHT, WIDTH, 3), dtype=np.int16
        )
        path = folder / f"smooth{i:03d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(
            path, "JPEG", quality=90
        )
        out.append(path)
        say(f"smooth 12-MP photo {i + 1}/{count}: {path.stat().st_size / 1e6:.1f} MB")
    return out


def make_small(folder: Path, photos: list[Path], count: int, seed: int = 7) -> list[Path]:
    """``count`` images, random crops of the photos: half 80-256 px, half 257-1400 px."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    bases = []
    for p in photos[:4]:
        with Image.open(p) as im:
            im.draft("RGB", (im.width // 2, im.height // 2))
            bases.append(im.convert("RGB"))
    out = []
    for i in range(count):
        base = bases[i % len(bases)]
        edge = rng.randint(80, 256) if i % 2 == 0 else rng.randint(257, 1400)
        aspect = rng.choice((4 / 3, 3 / 2, 1.0, 16 / 9, 3 / 4))
        w, h = (edge, max(1, round(edge / aspect))) if aspect >= 1 else (round(edge * aspect), edge)
        cw, ch = min(base.width, w * 2), min(base.height, h * 2)
        x, y = rng.randint(0, base.width - cw), rng.randint(0, base.height - ch)
        img = base.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.LANCZOS)
        path = folder / f"small{i:04d}.jpg"
        img.save(path, "JPEG", quality=90)
        out.append(path)
    return out


# ---------------------------------------------------------------- the sides


def ours(sources: list[Path], root: Path) -> dict[str, Any]:
    """The deriver's code: decode, render, write (new layout); also the old layout's
    files (both sizes, a directory per content) from the same renders."""
    import blake3

    from eventsvc.derive.media import write_thumbnails
    from eventsvc.media import decode

    old = root.parent / (root.name + "-old")
    for src in sources:
        digest = blake3.blake3(src.read_bytes()).hexdigest()
        fd = os.open(src, os.O_RDONLY)
        try:
            ts = decode.thumbnail_set(decode.thumb_image(fd, raw=False, max_pixels=None))
        finally:
            os.close(fd)
        write_thumbnails(ts, root, digest)
        for name, data in ts.jpegs.items():
            target = old / digest[:2] / digest / f"{name}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    fb, db, nf, nd = disk_bytes(root)
    ofb, odb, onf, ond = disk_bytes(old)
    return {
        "file_bytes": fb, "files": nf, "dirs": nd, "dir_bytes": db,
        "old_file_bytes": ofb, "old_files": onf, "old_dirs": ond, "old_dir_bytes": odb,
    }  # fmt: skip


def pixels(src: Path) -> dict[str, Any]:
    """The thumbnails' pixels of one file, before encoding (size name -> Image; the same
    object for sizes of the same pixels), decoded and resized as the deriver does."""
    from eventsvc.media import decode, thumbs

    fd = os.open(src, os.O_RDONLY)
    try:
        return thumbs.thumbnail_images(decode.thumb_image(fd, raw=False, max_pixels=None))
    finally:
        os.close(fd)


def bare(sources: list[Path], flat: Path) -> dict[str, Any]:
    """Pillow's own save of the same distinct thumbnails into one flat directory."""
    from eventsvc.media.thumbs import JPEG_QUALITY

    flat.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sources):
        seen: set[int] = set()
        for name, img in pixels(src).items():
            if id(img) in seen:
                continue
            seen.add(id(img))
            img.save(flat / f"{i:06d}-{name}.jpg", "JPEG", quality=JPEG_QUALITY, progressive=True)
    fb, _, nf, _ = disk_bytes(flat)
    return {"file_bytes": fb, "files": nf}


def dirs_at_scale(root: Path, contents: int) -> dict[str, float]:
    """Directory bytes and inodes per content of each layout with ``contents`` contents
    (empty files: only the directories' blocks count)."""
    import hashlib

    new, old = root / "new", root / "old"
    for n in range(contents):
        h = hashlib.blake2b(n.to_bytes(8, "little"), digest_size=32).hexdigest()
        (new / h[:2]).mkdir(parents=True, exist_ok=True)
        (old / h[:2] / h).mkdir(parents=True, exist_ok=True)
        for size in ("small", "large"):
            (new / h[:2] / f"{h}-{size}.jpg").touch()
            (old / h[:2] / h / f"{size}.jpg").touch()
    out = {}
    for name, d in (("new", new), ("old", old)):
        _, db, nf, nd = disk_bytes(d)
        out[f"{name}_dir_bytes_per_content"] = db / contents
        out[f"{name}_dirs"] = nd
        out[f"{name}_inodes_per_content"] = (nf + nd) / contents
    return out


def webp_vs_jpeg(sources: list[Path], runs: int) -> dict[str, Any]:
    from eventsvc.media.thumbs import JPEG_QUALITY

    acc: dict[str, float] = {}
    qualities: dict[str, list[int]] = {"m4": [], "m2": []}
    for src in sources:
        seen: set[int] = set()
        for ref in pixels(src).values():  # both formats encode the same pixels
            if id(ref) in seen:
                continue
            seen.add(id(ref))
            jpeg = _encode(ref, "JPEG", quality=JPEG_QUALITY, progressive=True)
            target = ssim(ref, _decoded(jpeg))
            acc["jpeg_bytes"] = acc.get("jpeg_bytes", 0) + len(jpeg)
            acc["jpeg_s"] = acc.get("jpeg_s", 0) + _encode_s(
                ref, runs, "JPEG", quality=JPEG_QUALITY, progressive=True
            )
            acc["jpeg_ssim"] = acc.get("jpeg_ssim", 0) + target
            acc["n"] = acc.get("n", 0) + 1
            for method in (4, 2):
                q, webp, s = webp_matching(ref, target, method)
                k = f"m{method}"
                qualities[k].append(q)
                acc[f"webp_{k}_bytes"] = acc.get(f"webp_{k}_bytes", 0) + len(webp)
                acc[f"webp_{k}_s"] = acc.get(f"webp_{k}_s", 0) + _encode_s(
                    ref, runs, "WEBP", quality=q, method=method
                )
                acc[f"webp_{k}_ssim"] = acc.get(f"webp_{k}_ssim", 0) + s
    n = max(1, int(acc.get("n", 0)))
    out: dict[str, Any] = {
        "thumbnails": n,
        "jpeg_quality": JPEG_QUALITY,
        "jpeg_bytes_per_thumb": round(acc.get("jpeg_bytes", 0) / n),
        "jpeg_encode_ms": round(acc.get("jpeg_s", 0) / n * 1000, 2),
        "jpeg_ssim": round(acc.get("jpeg_ssim", 0) / n, 4),
    }
    wins = []
    for k in ("m4", "m2"):
        size_ratio = acc.get(f"webp_{k}_bytes", 0) / max(1, acc.get("jpeg_bytes", 1))
        time_ratio = acc.get(f"webp_{k}_s", 0) / max(1e-9, acc.get("jpeg_s", 1e-9))
        out[f"webp_{k}"] = {
            "qualities": sorted(qualities[k]),
            "bytes_per_thumb": round(acc.get(f"webp_{k}_bytes", 0) / n),
            "encode_ms": round(acc.get(f"webp_{k}_s", 0) / n * 1000, 2),
            "ssim": round(acc.get(f"webp_{k}_ssim", 0) / n, 4),
            "bytes_vs_jpeg": round(size_ratio, 3),
            "encode_time_vs_jpeg": round(time_ratio, 2),
        }
        if size_ratio <= 1 - WEBP_SAVING and time_ratio <= WEBP_SLOWDOWN:
            wins.append(k)
    out["webp_wins"] = bool(wins)
    out["rule"] = (f"WebP only if >= {WEBP_SAVING:.0%} smaller at equal SSIM and "
                   f"<= {WEBP_SLOWDOWN}x JPEG's encode time")  # fmt: skip
    return out


# ---------------------------------------------------------------- main


def _per_content(side: dict[str, Any], contents: int, dir_per_content: float) -> float:
    return side["file_bytes"] / contents + dir_per_content


def main(argv: list[str] | None = None) -> int:
    p = base_parser("thumbdisk", __doc__)
    p.add_argument("--photos", type=int, default=None, help="12-MP JPEGs (default 6; quick 2)")
    p.add_argument("--smooth", type=int, default=None,
                   help="smoother 12-MP JPEGs (default 4; quick 1)")  # fmt: skip
    p.add_argument("--small", type=int, default=None, help="small images (default 200; quick 40)")
    p.add_argument(
        "--dir-contents", type=int, default=None,
        help="contents for the directory cost at scale (default 20000; quick 2000)",
    )  # fmt: skip
    p.add_argument("--runs", type=int, default=3, help="encode-time runs, the median counts")
    a = p.parse_args(argv)
    photos_n = a.photos or (2 if a.quick else 6)
    small_n = a.small or (40 if a.quick else 200)
    smooth_n = a.smooth if a.smooth is not None else (1 if a.quick else 4)
    dir_n = a.dir_contents or (2000 if a.quick else 20000)

    def body() -> Outcome:
        with scratch_dir("thumbdisk", a.tmp, a.keep) as tmp:
            photos = make_photos(tmp / "photos", photos_n)
            smalls = make_small(tmp / "small", photos, small_n)
            say(f"directory cost at {dir_n} contents ...")
            dirs = dirs_at_scale(tmp / "dirs", dir_n)
            say(f"directories per content: ours {dirs['new_dir_bytes_per_content']:.0f} B, "
                f"before {dirs['old_dir_bytes_per_content']:.0f} B")  # fmt: skip
            sets: dict[str, dict[str, Any]] = {}
            smooth = make_smooth(tmp / "smooth", smooth_n)
            for name, sources in (("photos", photos), ("smooth", smooth), ("small", smalls)):
                t0 = time.monotonic()
                o = ours(sources, tmp / f"thumbs-{name}")
                b = bare(sources, tmp / f"flat-{name}")
                n = len(sources)
                sets[name] = {
                    "contents": n,
                    "ours": _per_content(o, n, dirs["new_dir_bytes_per_content"]),
                    "bare": b["file_bytes"] / n,
                    "before": o["old_file_bytes"] / n + dirs["old_dir_bytes_per_content"],
                    "files_per_content": o["files"] / n,
                    "old_files_per_content": o["old_files"] / n,
                }
                say(f"{name}: ours {sets[name]['ours'] / 1e3:.1f} kB/content, bare "
                    f"{sets[name]['bare'] / 1e3:.1f}, before {sets[name]['before'] / 1e3:.1f} "
                    f"({time.monotonic() - t0:.1f}s)")  # fmt: skip
            say("WebP against JPEG at equal SSIM (12-MP photos' thumbnails) ...")
            webp = webp_vs_jpeg(photos, a.runs)
            say(f"webp: {webp}")
            webp_smooth = webp_vs_jpeg(smooth, a.runs)
            say(f"webp (smooth photos): {webp_smooth}")
        value, limit = sets["photos"]["ours"], sets["photos"]["bare"]

        def summary(s: dict[str, Any]) -> dict[str, Any]:
            return {
                "contents": s["contents"],
                "ours_bytes_per_content": round(s["ours"]),
                "bare_bytes_per_content": round(s["bare"]),
                "before_bytes_per_content": round(s["before"]),
                "ours_gb_per_100k": round(s["ours"] * 1e5 / 1e9, 2),
                "before_gb_per_100k": round(s["before"] * 1e5 / 1e9, 2),
                "files_per_content": round(s["files_per_content"], 2),
                "before_files_per_content": round(s["old_files_per_content"], 2),
            }

        return {
            "value": round(value), "limit": round(limit), "unit": "bytes/content (12-MP JPEGs)",
            "ratio": round(value / limit, 3), "goal": GOAL,
            "value_is": "our store's file + directory bytes per content (st_blocks*512), "
                        "directories measured at dir_contents",
            "limit_is": "Pillow's save of the same distinct thumbnails into one flat "
                        "directory, file bytes only",
            "photos_12mp": summary(sets["photos"]),
            "photos_12mp_smooth": summary(sets["smooth"]),
            "small_images": summary(sets["small"]),
            "dirs": {k: round(v, 2) for k, v in dirs.items()}, "dir_contents": dir_n,
            "webp": webp, "webp_smooth": webp_smooth, "format": "jpeg",
        }  # fmt: skip

    return run_main("thumbdisk", body, a.strict)
