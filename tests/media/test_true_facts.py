"""Derived facts that must match the file (issue 13, items 6-8): full dimensions from the
header (never the reduced decode or EXIF PixelXDimension), XMP dates in the waterfall,
and cut-short media refused rather than thumbnailed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from eventsvc.core.dates import SOURCES, resolve_date_taken
from eventsvc.media import decode, exif
from eventsvc.media.exif import MediaError
from eventsvc.media.integrity import bmff_truncation
from eventsvc.media.sandbox import DecodeFailed, DecodeSandbox
from tests.media.heif_grid import grid_heic


def _jpeg(path: Path, size: tuple[int, int], orientation: int | None = None) -> Path:
    ex = Image.Exif()
    if orientation is not None:
        ex[0x0112] = orientation
    ex.get_ifd(0x8769)[0xA002] = size[0] // 2  # a lying PixelXDimension / PixelYDimension
    ex.get_ifd(0x8769)[0xA003] = size[1] // 2
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    img.save(path, "JPEG", quality=70, exif=ex)
    return path


# ------------------------------------------------------------------ 6. dimensions


@pytest.mark.parametrize(
    ("orientation", "upright"), [(None, (3264, 2448)), (1, (3264, 2448)), (6, (2448, 3264))]
)
def test_thumbnail_size_is_the_full_upright_frame(
    tmp_path: Path, orientation: int | None, upright: tuple[int, int]
) -> None:
    path = _jpeg(tmp_path / "big.jpg", (3264, 2448), orientation)
    img = decode.thumb_image(path, raw=False, max_pixels=None)
    assert max(img.size) < 3264  # the decode itself is reduced (draft)...
    ts = decode.thumbnail_set(img)
    assert (ts.width, ts.height) == upright  # ...its reported size is not


def test_thumbnail_size_through_the_sandbox_and_other_formats(tmp_path: Path) -> None:
    png = tmp_path / "big.png"
    Image.new("RGB", (3100, 1900), (10, 200, 30)).save(png)
    webp = tmp_path / "big.webp"
    Image.new("RGB", (3000, 1000), (10, 20, 230)).save(webp, quality=40)
    jpg = _jpeg(tmp_path / "big.jpg", (3264, 2448), 8)
    sandbox = DecodeSandbox()
    try:
        for path, size in ((png, (3100, 1900)), (webp, (3000, 1000)), (jpg, (2448, 3264))):
            with open(path, "rb") as fh:
                ts = sandbox.thumbnails(fh.fileno())
            assert (ts.width, ts.height) == size, path.name
    finally:
        sandbox.close()


def test_exif_dimensions_come_from_the_header_not_pixel_x_dimension(tmp_path: Path) -> None:
    facts = exif.extract_image(_jpeg(tmp_path / "big.jpg", (3264, 2448), 6))
    assert (facts.width, facts.height) == (3264, 2448)  # stored, before orientation
    assert facts.orientation == 6


def test_exif_dimensions_never_from_pixel_x_dimension_when_the_header_fails(
    tmp_path: Path,
) -> None:
    data = _jpeg(tmp_path / "big.jpg", (640, 480)).read_bytes()
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    broken = tmp_path / "nosof.jpg"
    broken.write_bytes(data[:sof] + b"\xff\xd9")  # EXIF intact, no frame header at all
    facts = exif.extract_image(broken)
    assert (facts.width, facts.height) == (None, None)


# ------------------------------------------------------------------ 7. XMP dates

_XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" {attrs}>{body}'
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def test_xmp_date_forms() -> None:
    attr = _XMP.format(attrs='xmp:CreateDate="2011-03-04T05:06:07+01:00"', body="")
    assert exif.xmp_date(attr)[:2] == ("2011-03-04T05:06:07", "+01:00")
    elem = _XMP.format(attrs="", body="<photoshop:DateCreated>2009-12-31</photoshop:DateCreated>")
    assert exif.xmp_date(elem)[:2] == ("2009-12-31T00:00:00", None)
    both = _XMP.format(
        attrs='photoshop:DateCreated="2001-01-01" xmp:CreateDate="2002-02-02T02:02:02.5"', body=""
    )
    assert exif.xmp_date(both)[0] == "2002-02-02T02:02:02.500"  # CreateDate first
    assert exif.xmp_date(_XMP.format(attrs='xmp:CreateDate="yesterday"', body=""))[0] is None
    # Matched as text: an entity bomb is inert (no DTD is ever read).
    bomb = '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>' + _XMP.format(
        attrs='xmp:CreateDate="&a;"', body=""
    )
    assert exif.xmp_date(bomb)[0] is None


def test_embedded_xmp_date_is_extracted(tmp_path: Path) -> None:
    path = tmp_path / "edited.jpg"
    xmp = _XMP.format(attrs='xmp:CreateDate="2015-06-07T08:09:10"', body="").encode()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(path, "JPEG", xmp=xmp)
    facts = exif.extract_image(path)
    assert facts.xmp_date == "2015-06-07T08:09:10"
    assert facts.date_original is None


def test_waterfall_has_xmp_sources_between_exif_and_container() -> None:
    assert SOURCES.index("exif_digitized") < SOURCES.index("xmp") < SOURCES.index("xmp_sidecar")
    assert SOURCES.index("xmp_sidecar") < SOURCES.index("container")
    common = {"file_name": "IMG_20200101_000000.jpg", "fs_times": [10**18]}
    got = resolve_date_taken(
        exif_original=None, exif_digitized=None, container_created="2000-01-01T00:00:00Z",
        xmp="2015-06-07T08:09:10", xmp_sidecar="2016-01-01T00:00:00", **common,
    )  # fmt: skip
    assert got == ("2015-06-07T08:09:10", "xmp")
    got = resolve_date_taken(
        exif_original=None, exif_digitized=None, container_created=None,
        xmp=None, xmp_sidecar="2016-01-01T00:00:00", **common,
    )  # fmt: skip
    assert got == ("2016-01-01T00:00:00", "xmp_sidecar")
    got = resolve_date_taken(
        exif_original="2010-01-01T00:00:00", exif_digitized=None, container_created=None,
        xmp="2015-06-07T08:09:10", xmp_sidecar=None, **common,
    )  # fmt: skip
    assert got == ("2010-01-01T00:00:00", "exif_original")


# ------------------------------------------------------------------ 8. truncated media


def _cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    out = path.with_name(f"cut-{int(fraction * 100)}-{path.name}")
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def _noisy(size: tuple[int, int]) -> Image.Image:
    return Image.effect_noise(size, 60).convert("RGB")


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "HEIF", "WEBP", "TIFF"])
def test_truncated_images_fail_to_decode(tmp_path: Path, fmt: str, fraction: float) -> None:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    whole = tmp_path / f"whole.{fmt.lower()}"
    lossy = fmt in ("JPEG", "HEIF", "WEBP")
    _noisy((640, 480)).save(whole, fmt, **({"quality": 90} if lossy else {}))
    decode.thumb_image(whole, raw=False, max_pixels=None)  # the whole file decodes
    cut = _cut(whole, fraction)
    with pytest.raises(MediaError):
        decode.thumbnail_set(decode.thumb_image(cut, raw=False, max_pixels=None))


def test_truncated_grid_heic_fails_in_the_sandbox(tmp_path: Path) -> None:
    """A phone's HEIC is a grid of tiles: libheif decodes missing tiles as flat green
    without an error, so the file's own box lengths must tell it is cut short."""
    whole = tmp_path / "whole.heic"
    whole.write_bytes(grid_heic(_noisy((512, 256)), columns=4))
    sandbox = DecodeSandbox()
    try:
        with open(whole, "rb") as fh:
            assert sandbox.thumbnails(fh.fileno()).width == 512
        for fraction in (0.2, 0.5, 0.7, 0.8, 0.9, 0.99):
            with open(_cut(whole, fraction), "rb") as fh, pytest.raises(DecodeFailed):
                sandbox.thumbnails(fh.fileno())
    finally:
        sandbox.close()


def test_bmff_truncation() -> None:
    box = (16).to_bytes(4, "big") + b"ftyp" + b"heic" + b"\0\0\0\0"
    mdat = (1000).to_bytes(4, "big") + b"mdat" + b"x" * 992
    assert bmff_truncation(io.BytesIO(box + mdat)) is None
    assert bmff_truncation(io.BytesIO(box + mdat + b"\0\0\0")) is None  # zero padding
    assert "mdat" in (bmff_truncation(io.BytesIO(box + mdat[:500])) or "")
    assert bmff_truncation(io.BytesIO(box + mdat[:6])) is not None


def test_api_display_size_is_upright_and_never_a_reduced_decode() -> None:
    from projections.api.rows import upright

    assert upright((2448, 3264), (3264, 2448), 6) == (2448, 3264)
    assert upright((None, None), (3264, 2448), 6) == (2448, 3264)
    assert upright((None, None), (3264, 2448), 1) == (3264, 2448)
    # A ThumbnailReady recorded from a draft decode (before issue 13): the header wins.
    assert upright((1224, 1632), (3264, 2448), 6) == (2448, 3264)
    assert upright((1632, 1224), (3264, 2448), None) == (3264, 2448)
    # A video (rotation, not orientation) or a RAW preview: the decoded size stands.
    assert upright((1080, 1920), (1920, 1080), None) == (1080, 1920)
    assert upright((6000, 4000), (160, 120), 1) == (6000, 4000)


def test_date_time_original_in_ifd0_is_read(tmp_path: Path) -> None:
    """Older cameras write DateTimeOriginal into IFD0, not the EXIF IFD (exiftool reads
    it there too); others put Make/Model in the EXIF IFD."""
    ex = Image.Exif()
    ex[0x010F] = "OldCam"
    ex[0x9003] = "2003:04:05 06:07:08"
    ex[0x9004] = "2003:04:05 06:07:09"
    ex.get_ifd(0x8769)[0x0110] = "X1"
    path = tmp_path / "old.jpg"
    Image.new("RGB", (64, 48)).save(path, exif=ex)
    facts = exif.extract_image(path)
    assert (facts.date_original, facts.date_digitized) == (
        "2003-04-05T06:07:08",
        "2003-04-05T06:07:09",
    )
    assert (facts.make, facts.model) == ("OldCam", "X1")
