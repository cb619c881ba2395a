"""Tests for eventsvc.media.thumbs: decoding, orientation, modes, rendering, paths, video."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eventsvc.media.exif import MediaError
from eventsvc.media.thumbs import (
    SIZES,
    decode_for_thumbs,
    embedded_preview,
    preview_image,
    render_thumbnails,
    thumb_path,
    video_frame,
    write_atomic,
)

RED, BLUE = (220, 20, 20), (20, 20, 220)


def two_tone(size: tuple[int, int] = (200, 100)) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", size, RED)
    img.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return img


def save_oriented(path: Path, orientation: int, fmt: str = "JPEG") -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    two_tone().save(path, fmt, exif=exif, quality=95)
    return path


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel[:3], colour, strict=True))


def test_sizes() -> None:
    assert SIZES == {"small": 256, "large": 1440}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied(tmp_path: Path, orientation: int) -> None:
    img = decode_for_thumbs(save_oriented(tmp_path / "o.jpg", orientation), max_edge=256)
    assert img.mode == "RGB"
    assert img.size == ((100, 200) if orientation >= 5 else (200, 100))


def test_orientation_content(tmp_path: Path) -> None:
    rotated_180 = decode_for_thumbs(save_oriented(tmp_path / "3.jpg", 3), max_edge=256)
    assert near(rotated_180.getpixel((10, 50)), BLUE)  # left half is now blue
    rotated_cw = decode_for_thumbs(save_oriented(tmp_path / "6.jpg", 6), max_edge=256)
    assert near(rotated_cw.getpixel((50, 10)), RED)  # 90 cw: the old left is on top
    assert near(rotated_cw.getpixel((50, 190)), BLUE)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_orientation_other_formats(tmp_path: Path, fmt: str) -> None:
    img = decode_for_thumbs(save_oriented(tmp_path / f"o.{fmt.lower()}", 6, fmt), max_edge=256)
    assert img.size == (100, 200)
    assert near(img.getpixel((50, 10)), RED)


def test_heic_not_rotated_twice(tmp_path: Path) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    path = save_oriented(tmp_path / "o.heic", 6, "HEIF")
    with Image.open(path) as im:
        decoder_size = im.size  # pillow-heif already applied the file's transforms
    assert decode_for_thumbs(path, max_edge=256).size == decoder_size


@pytest.mark.parametrize(
    ("size", "max_edge", "expected"),
    [
        ((4000, 3000), 1440, (2000, 1500)),  # 1/2 is the smallest scale >= 1440
        ((4000, 3000), 256, (500, 375)),  # 1/8
        ((6000, 1000), 1440, (1500, 250)),  # panorama: only the long edge matters
        ((1000, 800), 1440, (1000, 800)),  # never smaller than the source allows
    ],
)
def test_jpeg_draft_scale(
    tmp_path: Path, size: tuple[int, int], max_edge: int, expected: tuple[int, int]
) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", size, (90, 120, 150)).save(path, quality=50)
    img = decode_for_thumbs(path, max_edge=max_edge)
    assert img.size == expected
    assert max(img.size) >= min(max_edge, max(size))


def _saved(tmp_path: Path, img: Image.Image, name: str, **kwargs: object) -> Path:
    path = tmp_path / name
    img.save(path, **kwargs)
    return path


def test_mode_conversions(tmp_path: Path) -> None:
    cmyk = _saved(tmp_path, Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "cmyk.jpg")
    assert near(decode_for_thumbs(cmyk, max_edge=256).getpixel((5, 5)), (255, 0, 0), 60)

    pal = Image.new("P", (40, 30), 1)
    pal.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    pal.info["transparency"] = 0
    pal.putpixel((0, 0), 0)
    p_img = decode_for_thumbs(_saved(tmp_path, pal, "p.png"), max_edge=256)
    assert p_img.mode == "RGB"
    assert near(p_img.getpixel((5, 5)), (0, 200, 0), 5)
    assert p_img.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white

    rgba = Image.new("RGBA", (40, 30), (0, 0, 255, 0))
    assert decode_for_thumbs(_saved(tmp_path, rgba, "a.png"), max_edge=256).getpixel((3, 3)) == (
        255,
        255,
        255,
    )
    la = Image.new("LA", (40, 30), (80, 255))
    assert decode_for_thumbs(_saved(tmp_path, la, "la.png"), max_edge=256).getpixel((3, 3)) == (
        80,
        80,
        80,
    )
    bilevel = Image.new("1", (40, 30), 1)
    assert decode_for_thumbs(_saved(tmp_path, bilevel, "b.png"), max_edge=256).getpixel((3, 3)) == (
        255,
        255,
        255,
    )


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.zeros((20, 40), dtype=np.uint16)
    arr[:, 20:] = 65535
    arr[:, :20] = 32896
    path = _saved(tmp_path, Image.fromarray(arr), "g16.png")
    img = decode_for_thumbs(path, max_edge=256)
    assert img.mode == "RGB"
    assert near(img.getpixel((5, 5)), (128, 128, 128), 2)
    assert img.getpixel((35, 5)) == (255, 255, 255)


def test_icc_profile_conversion(tmp_path: Path) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = _saved(tmp_path, Image.new("RGB", (40, 30), (10, 150, 240)), "icc.png", icc_profile=srgb)
    assert near(decode_for_thumbs(path, max_edge=256).getpixel((4, 4)), (10, 150, 240), 4)
    bogus = _saved(
        tmp_path,
        Image.new("RGB", (40, 30), (10, 150, 240)),
        "bad.png",
        icc_profile=b"not a profile",
    )
    assert near(decode_for_thumbs(bogus, max_edge=256).getpixel((4, 4)), (10, 150, 240), 1)


def test_undecodable_raises(tmp_path: Path) -> None:
    path = tmp_path / "text.jpg"
    path.write_text("hello")
    with pytest.raises(MediaError) as info:
        decode_for_thumbs(path, max_edge=256)
    assert isinstance(info.value.__cause__, OSError)  # PIL.UnidentifiedImageError
    with pytest.raises(MediaError):
        decode_for_thumbs(tmp_path / "missing.jpg", max_edge=256)


def test_render_thumbnails(tmp_path: Path) -> None:
    out = render_thumbnails(two_tone((3000, 2000)))
    assert set(out) == {"small", "large"}
    sizes = {}
    for name, data in out.items():
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG"
            assert im.info.get("progressive") or im.info.get("progression")
            sizes[name] = im.size
    assert sizes == {"large": (1440, 960), "small": (256, 171)}


def test_render_never_upscales_and_accepts_any_mode() -> None:
    out = render_thumbnails(Image.new("RGBA", (100, 50), (0, 0, 0, 0)), {"small": 256, "x": 64})
    with Image.open(io.BytesIO(out["small"])) as im:
        assert im.size == (100, 50)
    with Image.open(io.BytesIO(out["x"])) as im:
        assert im.size == (64, 32)


def test_portrait_thumbnail_from_oriented_landscape(tmp_path: Path) -> None:
    img = decode_for_thumbs(save_oriented(tmp_path / "o.jpg", 6), max_edge=SIZES["large"])
    with Image.open(io.BytesIO(render_thumbnails(img, {"small": 64})["small"])) as thumb:
        assert thumb.size == (32, 64)


def test_thumb_path() -> None:
    digest = "ab" + "0" * 62
    assert thumb_path("/data/thumbs", digest, "small") == Path(
        f"/data/thumbs/ab/{digest}-small.jpg"
    )
    for bad_hash in ("", "a", "../etc", "ab/cd", "ab\\cd", "a b c"):
        with pytest.raises(ValueError):
            thumb_path("/data", bad_hash, "small")
    with pytest.raises(ValueError):
        thumb_path("/data", digest, "../large")


def test_write_atomic(tmp_path: Path) -> None:
    target = thumb_path(tmp_path, "cafe" * 16, "small")
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_embedded_preview_of_a_non_raw_file_is_none(tmp_path: Path) -> None:
    path = tmp_path / "not-raw.jpg"
    two_tone().save(path)
    assert embedded_preview(path) is None  # the real rawpy refuses a JPEG


def _jpeg_bytes(img: Image.Image, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    img.save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kind", "orientation", "flip", "size", "top_left"),
    [
        ("jpeg", None, 0, (200, 100), RED),
        ("jpeg", None, 6, (100, 200), RED),  # LibRaw flip 6 = 90 clockwise
        ("jpeg", None, 5, (100, 200), BLUE),  # 5 = 90 counter-clockwise
        ("jpeg", 3, 6, (200, 100), BLUE),  # the preview's own EXIF orientation wins
        ("bitmap", None, 3, (200, 100), BLUE),
    ],
)
def test_embedded_preview_orientation(
    kind: str,
    orientation: int | None,
    flip: int,
    size: tuple[int, int],
    top_left: tuple[int, int, int],
) -> None:
    img = two_tone()
    data = _jpeg_bytes(img, orientation) if kind == "jpeg" else np.asarray(img)
    preview = preview_image(kind, data, flip)
    assert preview is not None and preview.mode == "RGB"
    assert preview.size == size
    assert near(preview.getpixel((5, 5)), top_left)


# -------------------------------------------------------------------------- video


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import av  # noqa: F401
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    root = tmp_path_factory.mktemp("clips")
    plain, rotated = root / "plain.mp4", root / "rotated.mp4"
    # One key frame every 3 s: reaching 10 % of the clip needs decoding forward.
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=3:size=160x120:rate=10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "30",
            str(plain),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-y",
            "-display_rotation",
            "90",
            "-i",
            str(plain),
            "-c",
            "copy",
            str(rotated),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return {"plain": plain, "rotated": rotated}


def _frames(path: Path) -> list[Image.Image]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def test_video_frame_seeks_and_decodes_forward(clips: dict[str, Path]) -> None:
    frames = _frames(clips["plain"])
    assert len(frames) == 30
    got = video_frame(clips["plain"], at_fraction=0.1)
    assert got.size == (160, 120)
    diffs = [int(np.abs(np.asarray(got, np.int16) - np.asarray(f, np.int16)).sum()) for f in frames]
    assert diffs.index(min(diffs)) == 3  # frame at 0.3 s of 3 s, not the key frame at 0
    assert min(diffs) == 0


def test_video_frame_applies_rotation(clips: dict[str, Path]) -> None:
    assert video_frame(clips["rotated"]).size == (120, 160)


def test_video_frame_end_and_errors(clips: dict[str, Path], tmp_path: Path) -> None:
    assert video_frame(clips["plain"], at_fraction=1.0).size == (160, 120)
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    with pytest.raises(MediaError, match="cannot extract"):
        video_frame(bad)
