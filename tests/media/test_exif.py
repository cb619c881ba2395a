"""Tests for eventsvc.media.exif: EXIF facts from generated fixtures, hostile input, video."""

from __future__ import annotations

import io
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from eventsvc.media.exif import ExifFacts, MediaError, extract_image, extract_video, is_heif

# Pillow warns (UserWarning) about the corrupt IFDs these tests feed it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")

R = IFDRational
BOUND_S = 2.0  # the timeout used for hostile files
SLACK_S = 1.0  # scheduling slack on a busy machine: less than the bound, so a file that
# ran to the end of its time and then some more still fails the check


def make_exif(
    *,
    orientation: int | None = 1,
    lat: tuple[str, float] | None = ("N", 48.8584),
    lon: tuple[str, float] | None = ("E", 2.2945),
    alt: tuple[int, float] | None = (0, 35.5),
    subsec: str | None = "123",
    offset: str | None = "+02:00",
) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS R5"
    if orientation is not None:
        exif[0x0112] = orientation
    ifd = exif.get_ifd(0x8769)
    ifd[0x9003] = "2023:01:02 12:34:56"
    ifd[0x9004] = "2023:01:02 12:35:00"
    if subsec is not None:
        ifd[0x9291] = subsec
    if offset is not None:
        ifd[0x9011] = offset
    ifd[0x920A] = R(50, 1)
    ifd[0x829D] = R(28, 10)
    ifd[0x829A] = R(1, 250)
    ifd[0x8827] = 400
    ifd[0xA434] = "RF24-70mm F2.8 L IS USM"
    if lat or lon:
        gps = exif.get_ifd(0x8825)
        for (ref_tag, val_tag), coord in (((1, 2), lat), ((3, 4), lon)):
            if coord is None:
                continue
            ref, value = coord
            deg = int(value)
            minutes = int((value - deg) * 60)
            seconds = round(((value - deg) * 60 - minutes) * 60 * 1000)
            gps[ref_tag] = ref
            gps[val_tag] = (R(deg), R(minutes), R(seconds, 1000))
        if alt is not None:
            gps[5] = bytes([alt[0]])
            gps[6] = R(round(alt[1] * 10), 10)
    return exif


def save(path: Path, fmt: str, exif: Image.Exif | None = None, size=(200, 100)) -> Path:
    img = Image.new("RGB", size, (200, 30, 30))
    kwargs = {"exif": exif} if exif is not None else {}
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    img.save(path, fmt, **kwargs)
    return path


def timed(path: Path, **kwargs: float) -> tuple[ExifFacts, float]:
    start = time.monotonic()
    facts = extract_image(path, **kwargs)
    return facts, time.monotonic() - start


# ----------------------------------------------------------------------- good files


def test_jpeg_all_fields(tmp_path: Path) -> None:
    path = save(tmp_path / "a.jpg", "JPEG", make_exif(alt=(1, 10.5)))
    facts = extract_image(path)
    assert facts == ExifFacts(
        make="Canon",
        model="EOS R5",
        lens="RF24-70mm F2.8 L IS USM",
        width=200,
        height=100,
        orientation=1,
        gps_lat=pytest.approx(48.8584, abs=1e-6),
        gps_lon=pytest.approx(2.2945, abs=1e-6),
        gps_alt=-10.5,
        focal_length=50.0,
        f_number=2.8,
        exposure_time=0.004,
        iso=400,
        date_original="2023-01-02T12:34:56.123",
        date_digitized="2023-01-02T12:35:00",
        utc_offset="+02:00",
    )


@pytest.mark.parametrize(
    ("lat_ref", "lon_ref", "sign_lat", "sign_lon"),
    [("N", "E", 1, 1), ("S", "W", -1, -1), ("N", "W", 1, -1), ("S", "E", -1, 1)],
)
def test_gps_hemispheres(
    tmp_path: Path, lat_ref: str, lon_ref: str, sign_lat: int, sign_lon: int
) -> None:
    exif = make_exif(lat=(lat_ref, 33.85985), lon=(lon_ref, 151.2008333), alt=None)
    facts = extract_image(save(tmp_path / "g.jpg", "JPEG", exif))
    assert facts.gps_lat == pytest.approx(sign_lat * 33.85985, abs=1e-6)
    assert facts.gps_lon == pytest.approx(sign_lon * 151.2008333, abs=1e-6)
    assert facts.gps_alt is None


def test_gps_null_island_is_dropped(tmp_path: Path) -> None:
    exif = make_exif(lat=("N", 0.0), lon=("E", 0.0))
    facts = extract_image(save(tmp_path / "z.jpg", "JPEG", exif))
    assert facts.gps_lat is None and facts.gps_lon is None
    assert any("0,0" in w for w in facts.warnings)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientations(tmp_path: Path, orientation: int) -> None:
    facts = extract_image(save(tmp_path / "o.jpg", "JPEG", make_exif(orientation=orientation)))
    assert facts.orientation == orientation
    assert (facts.width, facts.height) == (200, 100)  # stored size, before orientation


@pytest.mark.parametrize(
    ("subsec", "offset", "expected_date", "expected_offset"),
    [
        ("5", "-05:00", "2023-01-02T12:34:56.500", "-05:00"),
        ("123456", "+0530", "2023-01-02T12:34:56.123", "+05:30"),
        (None, None, "2023-01-02T12:34:56", None),
        ("  ", "bogus", "2023-01-02T12:34:56", None),
    ],
)
def test_subseconds_and_offsets(
    tmp_path: Path,
    subsec: str | None,
    offset: str | None,
    expected_date: str,
    expected_offset: str | None,
) -> None:
    exif = make_exif(subsec=subsec, offset=offset)
    facts = extract_image(save(tmp_path / "s.jpg", "JPEG", exif))
    assert facts.date_original == expected_date
    assert facts.utc_offset == expected_offset


def test_offset_time_fallback(tmp_path: Path) -> None:
    exif = make_exif(offset=None)
    exif.get_ifd(0x8769)[0x9010] = "-03:00"  # OffsetTime (modification) as last resort
    assert extract_image(save(tmp_path / "f.jpg", "JPEG", exif)).utc_offset == "-03:00"


def test_png_with_and_without_exif(tmp_path: Path) -> None:
    facts = extract_image(save(tmp_path / "e.png", "PNG", make_exif(orientation=6)))
    assert (facts.make, facts.orientation, facts.width, facts.height) == ("Canon", 6, 200, 100)
    assert facts.date_original == "2023-01-02T12:34:56.123"
    plain = extract_image(save(tmp_path / "p.png", "PNG", size=(30, 40)))
    assert (plain.make, plain.width, plain.height) == (None, 30, 40)


def test_tiff_stored_size_and_orientation(tmp_path: Path) -> None:
    facts = extract_image(save(tmp_path / "t.tif", "TIFF", make_exif(orientation=6)))
    assert (facts.make, facts.model, facts.orientation) == ("Canon", "EOS R5", 6)
    assert (facts.width, facts.height) == (200, 100)


def test_heic_via_pillow_heif(tmp_path: Path) -> None:
    path = save(tmp_path / "h.heic", "HEIF", make_exif(orientation=6, alt=(0, 12.0)))
    facts = extract_image(path)
    assert (facts.make, facts.model, facts.orientation) == ("Canon", "EOS R5", 6)
    assert facts.date_original == "2023-01-02T12:34:56.123"
    assert facts.utc_offset == "+02:00"
    assert facts.gps_lat == pytest.approx(48.8584, abs=1e-6)
    assert facts.gps_alt == 12.0
    # pillow-heif hands back display pixels; width/height + orientation must reproduce them.
    with Image.open(path) as im:
        assert (facts.height, facts.width) == im.size


def test_xmp_fallback_when_exif_is_missing(tmp_path: Path) -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        b'02/22-rdf-syntax-ns#"><rdf:Description tiff:Orientation="8" '
        b'exif:DateTimeOriginal="2010-04-13T09:37:22.5+02:00"/></rdf:RDF></x:xmpmeta>'
    )
    path = tmp_path / "xmp.jpg"
    Image.new("RGB", (30, 20)).save(path, "JPEG", xmp=xmp)
    facts = extract_image(path)
    assert (facts.orientation, facts.width, facts.height) == (8, 30, 20)
    assert (facts.date_original, facts.utc_offset) == ("2010-04-13T09:37:22.500", "+02:00")
    # EXIF wins over XMP when both are present.
    both = tmp_path / "both.jpg"
    Image.new("RGB", (30, 20)).save(both, "JPEG", xmp=xmp, exif=make_exif(orientation=3))
    facts = extract_image(both)
    assert (facts.orientation, facts.date_original) == (3, "2023-01-02T12:34:56.123")


def test_format_detected_by_magic_not_extension(tmp_path: Path) -> None:
    heic_named_jpg = save(tmp_path / "really-heic.jpg", "HEIF", make_exif())
    assert extract_image(heic_named_jpg).make == "Canon"
    jpeg_named_heic = save(tmp_path / "really-jpeg.heic", "JPEG", make_exif())
    assert extract_image(jpeg_named_heic).make == "Canon"


def test_is_heif_brands() -> None:
    def ftyp(major: bytes, *compat: bytes) -> bytes:
        body = b"ftyp" + major + b"\0\0\0\0" + b"".join(compat)
        return struct.pack(">I", len(body) + 4) + body

    assert is_heif(ftyp(b"heic", b"mif1", b"heic"))
    assert is_heif(ftyp(b"mif1", b"heic"))
    assert is_heif(ftyp(b"avif", b"avif"))
    assert not is_heif(ftyp(b"isom", b"iso2", b"avc1", b"mp41"))
    assert not is_heif(ftyp(b"qt  ", b"qt  "))
    assert not is_heif(b"\xff\xd8\xff\xe0")
    assert not is_heif(b"")


def test_canon_ciff_app0(tmp_path: Path) -> None:
    """Old PowerShots store make/model/date in a CIFF heap in APP0 instead of EXIF."""
    values = b"Canon\0Canon PowerShot A5\0\0"
    stamp = struct.pack("<IiI", 972687386, 0, 0)  # 2000-10-27T22:56:26 (camera local)
    entries = [(0x080A, len(values), 0), (0x180E, len(stamp), len(values))]
    table = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HII", *e) for e in entries)
    heap = values + stamp + table + struct.pack("<I", len(values) + len(stamp))
    ciff = b"II" + struct.pack("<I", 26) + b"HEAPJPGM" + bytes(12) + heap
    base = io.BytesIO()
    Image.new("RGB", (16, 8)).save(base, "JPEG")
    data = base.getvalue()
    segment = b"\xff\xe0" + struct.pack(">H", len(ciff) + 2) + ciff
    path = tmp_path / "ciff.jpg"
    path.write_bytes(data[:2] + segment + data[2:])
    facts = extract_image(path)
    assert (facts.make, facts.model) == ("Canon", "Canon PowerShot A5")
    assert facts.date_original == "2000-10-27T22:56:26"
    assert (facts.width, facts.height) == (16, 8)


# --------------------------------------------------------------- broken / hostile


def jpeg_with_app1(tiff: bytes) -> bytes:
    """A valid 8x8 JPEG carrying ``tiff`` as its EXIF APP1 payload."""
    base = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(base, "JPEG")
    data = base.getvalue()
    payload = b"Exif\0\0" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def tiff_blob(entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0) -> bytes:
    """Little-endian TIFF header + IFD0 at 8; entries are (tag, type, count, 4-byte value)."""
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")[:4]
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", next_ifd)


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


HOSTILE = {
    "huge_counts": tiff_blob(
        [
            (0x010F, 2, 0xFFFFFFFF, u32(8)),  # ASCII Make, count 4 G
            (0x0110, 3, 0x7FFFFFFF, u32(8)),  # SHORT Model, count 2 G
            (0x8769, 4, 0x10000000, u32(8)),  # ExifOffset array
            (0x0112, 5, 0xFFFFFFFF, u32(0xFFFFFFF0)),  # RATIONAL orientation, far offset
        ]
    ),
    "self_referencing_ifd": tiff_blob(
        [(0x8769, 4, 1, u32(8)), (0x8825, 4, 1, u32(8)), (0xA005, 4, 1, u32(8))], next_ifd=8
    ),
    "ifd_loop": tiff_blob([(0x010F, 2, 4, b"abc\0")], next_ifd=26)
    + tiff_blob([(0x0110, 2, 4, b"xyz\0")], next_ifd=8)[8:],
    "wrong_types": tiff_blob(
        [
            (0x0112, 2, 4, b"six\0"),  # Orientation as ASCII
            (0x010F, 5, 1, u32(0x7FFFFFF0)),  # Make as RATIONAL far away
            (0x8769, 2, 4, b"abc\0"),  # ExifOffset as ASCII
            (0x8825, 12, 1, u32(0)),  # GPS pointer as DOUBLE
        ]
    ),
    "zero_denominators": tiff_blob([(0x8769, 4, 1, u32(26))])
    + struct.pack("<H", 2)
    + struct.pack("<HHII", 0x829D, 5, 1, 56)  # FNumber -> rational at 56
    + struct.pack("<HHII", 0x9003, 3, 1, 7)  # DateTimeOriginal as SHORT
    + u32(0)
    + struct.pack("<II", 28, 0),
    "max_entries_truncated": b"II*\0" + u32(8) + struct.pack("<H", 0xFFFF) + bytes(40),
    "bad_header": b"XX*\0" + u32(0xFFFFFFFF) + bytes(16),
    "offset_out_of_range": b"II*\0" + u32(0xFFFFFFF0),
    "negative_like_offset": b"MM\0*" + struct.pack(">I", 0x80000000) + bytes(8),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_exif_blobs_in_jpeg(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.jpg"
    path.write_bytes(jpeg_with_app1(HOSTILE[name]))
    facts, elapsed = timed(path, timeout_s=BOUND_S)
    assert isinstance(facts, ExifFacts)
    assert elapsed < BOUND_S + SLACK_S
    assert (facts.width, facts.height) == (8, 8)  # the header still gives the size
    assert all(isinstance(w, str) and len(w) <= 200 for w in facts.warnings)
    assert facts.orientation in (None, *range(1, 9))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_blobs_as_bare_tiff(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.tif"
    path.write_bytes(HOSTILE[name])
    facts, elapsed = timed(path, timeout_s=BOUND_S)
    assert isinstance(facts, ExifFacts)
    assert elapsed < BOUND_S + SLACK_S


def test_wrong_types_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "w.jpg"
    path.write_bytes(jpeg_with_app1(HOSTILE["wrong_types"]))
    facts = extract_image(path)
    assert facts.orientation is None
    assert any("orientation" in w for w in facts.warnings)


def _broken_files(tmp_path: Path) -> dict[str, Path]:
    good = save(tmp_path / "good.jpg", "JPEG", make_exif(), size=(400, 300))
    data = good.read_bytes()
    files = {
        "truncated_jpeg": data[: len(data) // 2],
        "truncated_in_exif": data[:60],
        "text_named_jpg": b"this is not an image\n" * 20,
        "empty": b"",
        "soi_only": b"\xff\xd8",
        "random": bytes((i * 7919) % 251 for i in range(5000)),
    }
    buf = io.BytesIO()
    Image.new("RGB", (12, 34)).save(buf, "PNG")
    files["png_named_jpg"] = buf.getvalue()
    out = {}
    for name, content in files.items():
        out[name] = tmp_path / f"{name}.jpg"
        out[name].write_bytes(content)
    return out


@pytest.mark.parametrize(
    "name",
    [
        "truncated_jpeg",
        "truncated_in_exif",
        "png_named_jpg",
        "text_named_jpg",
        "empty",
        "soi_only",
        "random",
    ],
)
def test_broken_files_never_raise(tmp_path: Path, name: str) -> None:
    path = _broken_files(tmp_path)[name]
    facts, elapsed = timed(path, timeout_s=BOUND_S)
    assert elapsed < BOUND_S + SLACK_S
    # What each file still gives: the header of a cut JPEG, a PNG's size; nothing (and a
    # warning saying why) from the rest.
    expected = {
        "truncated_jpeg": ("Canon", 400, 300),
        "png_named_jpg": (None, 12, 34),
    }.get(name, (None, None, None))
    assert (facts.make, facts.width, facts.height) == expected, facts
    if expected == (None, None, None):
        assert facts.warnings


def _ifd_chain_tiff(path: Path, ifds: int = 200, entries: int = 65534) -> Path:
    """Distinct, overlapping IFDs of 65534 entries each: work until the read budget stops it."""
    stride = 8
    buf = bytearray(8 + stride * ifds + 2 + 12 * entries + 8)
    buf[0:8] = b"II*\0" + u32(8)
    for k in range(ifds):
        start = 8 + stride * k
        buf[start : start + 2] = struct.pack("<H", entries)
        link = start + 2 + 12 * entries
        buf[link : link + 4] = u32(8 + stride * (k + 1) if k < ifds - 1 else 0)
    path.write_bytes(bytes(buf))
    return path


def test_time_bound_abandons_and_stops_worker(tmp_path: Path) -> None:
    path = _ifd_chain_tiff(tmp_path / "chain.tif")
    # Unbounded, the chain runs until the read budget stops it: that time is the yardstick.
    full, full_s = timed(path, timeout_s=120.0)
    assert not any("timed out" in w for w in full.warnings)
    assert any("gave up" in w for w in full.warnings)
    # A bound of a tenth of that must cut the work short and say so.
    facts, elapsed = timed(path, timeout_s=full_s / 10)
    assert any("timed out" in w for w in facts.warnings), facts.warnings
    assert not any("gave up" in w for w in facts.warnings)
    assert full_s / 10 <= elapsed < full_s / 2, (elapsed, full_s)
    deadline = time.monotonic() + 5 + 2 * full_s
    while any(t.name == "exif-extract" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "abandoned worker kept running"
        time.sleep(0.02)


def test_work_budget_stops_ifd_chain_inside_the_buffer(tmp_path: Path) -> None:
    """Thousands of overlapping IFDs in one 64 KiB APP1: stopped by the read budget."""
    ifds, entries, stride = 4000, 2000, 8
    blob = bytearray(8 + stride * ifds + 2 + 12 * entries + 8)
    blob[0:8] = b"II*\0" + u32(8)
    for k in range(ifds):
        start = 8 + stride * k
        blob[start : start + 2] = struct.pack("<H", entries)
        link = start + 2 + 12 * entries
        blob[link : link + 4] = u32(8 + stride * (k + 1) if k < ifds - 1 else 0)
    path = tmp_path / "chain.jpg"
    path.write_bytes(jpeg_with_app1(bytes(blob)))
    facts, _ = timed(path, timeout_s=120.0)
    # The read budget stopped it, not the time bound.
    assert any("gave up" in w for w in facts.warnings), facts.warnings
    assert not any("timed out" in w for w in facts.warnings)
    assert (facts.width, facts.height) == (8, 8)


def test_size_bound(tmp_path: Path) -> None:
    path = save(tmp_path / "big.jpg", "JPEG", make_exif(), size=(64, 64))
    with path.open("ab") as fh:
        fh.write(bytes(300_000))
    facts = extract_image(path, max_bytes=100_000)
    assert facts.make == "Canon"
    assert any("only the first 100000" in w for w in facts.warnings)


def test_unreadable_files_raise_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as info:
        extract_image(tmp_path / "missing.jpg")
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(MediaError):
        extract_image(tmp_path)


def test_exifread_logging_is_captured_not_printed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "loop.jpg"
    path.write_bytes(jpeg_with_app1(HOSTILE["self_referencing_ifd"]))
    facts = extract_image(path)
    assert not [r for r in caplog.records if r.name.startswith("exifread")]
    assert all(isinstance(w, str) for w in facts.warnings)


# -------------------------------------------------------------------------- video


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import av  # noqa: F401
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    root = tmp_path_factory.mktemp("videos")
    out = {name: root / f"{name}.mp4" for name in ("plain", "rotated", "apple", "android")}
    out["apple"] = root / "apple.mov"
    quiet = [ffmpeg, "-v", "error", "-y"]
    src = ["-f", "lavfi", "-i", "testsrc=duration=3:size=160x120:rate=10"]
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    commands = [
        [
            *quiet,
            *src,
            "-f",
            "lavfi",
            "-i",
            "sine=duration=3",
            *x264,
            "-c:a",
            "aac",
            "-shortest",
            "-metadata",
            "creation_time=2023-01-02T03:04:05Z",
            str(out["plain"]),
        ],
        [
            *quiet,
            "-display_rotation",
            "90",
            "-i",
            str(out["plain"]),
            "-c",
            "copy",
            str(out["rotated"]),
        ],
        [
            *quiet,
            *src,
            *x264,
            "-t",
            "1",
            "-movflags",
            "use_metadata_tags",
            "-metadata",
            "com.apple.quicktime.creationdate=2023-01-02T12:34:56+0200",
            "-metadata",
            "com.apple.quicktime.make=Apple",
            "-metadata",
            "com.apple.quicktime.model=iPhone 15",
            "-metadata",
            "com.apple.quicktime.location.ISO6709=+37.7858-122.4064+012.500/",
            str(out["apple"]),
        ],
        [
            *quiet,
            *src,
            *x264,
            "-t",
            "1",
            "-metadata",
            "location=+48.8584+002.2945/",
            "-metadata",
            "creation_time=1970-01-01T00:00:00Z",
            str(out["android"]),
        ],
    ]
    for cmd in commands:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    data = out["plain"].read_bytes()
    out["truncated"] = root / "truncated.mp4"  # index (moov) at the end: cannot open
    out["truncated"].write_bytes(data[: len(data) // 2])
    faststart = root / "faststart.mp4"
    subprocess.run(
        [*quiet, "-i", str(out["plain"]), "-c", "copy", "-movflags", "+faststart", str(faststart)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    data = faststart.read_bytes()
    out["truncated_faststart"] = root / "truncated_faststart.mp4"  # index ok, data cut
    out["truncated_faststart"].write_bytes(data[: len(data) // 2])
    out["text"] = root / "text.mp4"
    out["text"].write_text("not a video\n")
    out["empty"] = root / "empty.mp4"
    out["empty"].write_bytes(b"")
    return out


def test_video_plain(videos: dict[str, Path]) -> None:
    facts = extract_video(videos["plain"])
    assert facts.duration == pytest.approx(3.0, abs=0.1)
    assert (facts.video_codec, facts.audio_codec) == ("h264", "aac")
    assert (facts.width, facts.height, facts.rotation) == (160, 120, 0)
    assert facts.creation_time == "2023-01-02T03:04:05Z"


def test_video_rotation(videos: dict[str, Path]) -> None:
    # -display_rotation 90 is counter-clockwise; we report clockwise degrees (as exiftool).
    facts = extract_video(videos["rotated"])
    assert facts.rotation == 270
    assert (facts.width, facts.height) == (160, 120)


def test_video_apple_and_android_metadata(videos: dict[str, Path]) -> None:
    apple = extract_video(videos["apple"])
    assert (apple.make, apple.model) == ("Apple", "iPhone 15")
    assert (apple.date_original, apple.utc_offset) == ("2023-01-02T12:34:56", "+02:00")
    assert (apple.gps_lat, apple.gps_lon, apple.gps_alt) == (37.7858, -122.4064, 12.5)
    android = extract_video(videos["android"])
    assert (android.gps_lat, android.gps_lon) == (48.8584, 2.2945)
    assert android.creation_time is None  # epoch placeholder is not a date
    assert android.audio_codec is None


@pytest.mark.parametrize("name", ["truncated", "text", "empty"])
def test_video_corrupt_raises(videos: dict[str, Path], name: str) -> None:
    with pytest.raises(MediaError, match=r"cannot open|truncated"):
        extract_video(videos[name])


def test_video_truncated_after_index_raises(videos: dict[str, Path]) -> None:
    with pytest.raises(MediaError, match="truncated"):
        extract_video(videos["truncated_faststart"])


def test_video_missing_file(tmp_path: Path) -> None:
    import av  # noqa: F401

    with pytest.raises(MediaError):
        extract_video(tmp_path / "nope.mp4")
