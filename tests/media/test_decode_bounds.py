"""Bounded decoding (issue 11): pixel budget from the header, memory and time limits of
the decoder processes, measured on real files (a 13000x13000 PNG bomb of ~0.5 MB)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from eventsvc.core.errors import BadInput
from eventsvc.core.events import DerivationFailed
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.media.sandbox import DecodeFailed, DecodeLimits, DecodeSandbox
from tests.harness import Pipeline, b3, make_jpeg, make_video, running, wait_until

ROOT = Path(__file__).resolve().parents[2]
BOMB_EDGE = 13000  # 169 MP: just under Pillow's own bomb error (2 x 89.5 MP)


def png_bomb(path: Path, width: int = BOMB_EDGE, height: int = BOMB_EDGE) -> Path:
    """A valid single-colour RGB PNG, written row by row (never held decoded here)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack("!I", len(data)) + tag + data + struct.pack("!I", crc)

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + width * 3)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")
    assert path.stat().st_size < 600_000
    return path


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------ the header budget


def test_header_budget_refuses_the_bomb_before_decoding(bomb: Path) -> None:
    with DecodeSandbox(DecodeLimits(processes=1)) as box:
        fd = _open(bomb)
        try:
            t0 = time.monotonic()
            with pytest.raises(DecodeFailed) as info:
                box.thumbnails(fd)
            assert time.monotonic() - t0 < 5
            assert info.value.kind == "budget"
            assert "image is 13000x13000 = 169 MP, over the 64 MP decode budget" in str(info.value)
            assert "EVENTSVC_DECODE_MAX_PIXELS" in str(info.value)
            for load in (box.faces_image, box.clip_image):
                with pytest.raises(DecodeFailed, match="decode budget"):
                    load(fd, 1024)
            assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # the caller's offset is untouched
        finally:
            os.close(fd)
        # Nothing was decoded: the child never grew anywhere near the image's 507 MB.
        assert box.ping()["vm_hwm_kb"] < 200 * 1024
        assert box.killed == 0 and box.started == 1


def test_big_camera_jpegs_pass_progressive_ones_are_counted_in_full(tmp_path: Path) -> None:
    """A 72 MP baseline JPEG decodes at 1/4 scale (4.5 MP): within a 64 MP budget. A
    progressive one makes libjpeg hold every coefficient: judged at its full size."""
    img = Image.new("L", (9000, 8000), 120)
    base, prog = tmp_path / "base.jpg", tmp_path / "prog.jpg"
    img.save(base, quality=70)
    img.save(prog, quality=70, progressive=True)
    del img
    with DecodeSandbox(DecodeLimits(processes=1)) as box:
        fd = _open(base)
        try:
            ts = box.thumbnails(fd)
        finally:
            os.close(fd)
        # Decoded at 1/4 scale (it passed the budget), reported at its full size.
        assert (ts.width, ts.height) == (9000, 8000)
        with Image.open(io.BytesIO(ts.jpegs["large"])) as im:
            assert im.size == (1440, 1280)
        fd = _open(prog)
        try:
            with pytest.raises(DecodeFailed, match=r"9000x8000 = 72 MP, over the 64 MP") as info:
                box.thumbnails(fd)
        finally:
            os.close(fd)
        assert info.value.kind == "budget"


def test_inference_uploads_are_bounded_too(bomb: Path) -> None:
    from eventsvc.inference.wire import decode_images

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(buf, "PNG")
    ok = base64.b64encode(buf.getvalue()).decode()
    bad = base64.b64encode(bomb.read_bytes()).decode()
    with DecodeSandbox(DecodeLimits(processes=1)) as box:
        [img] = decode_images([ok], box)
        assert img.size == (64, 48) and img.getpixel((3, 3)) == (1, 2, 3)
        with pytest.raises(BadInput, match="over the 64 MP decode budget") as info:
            decode_images([ok, bad], box)
        assert info.value.index == 1
        with pytest.raises(BadInput, match="image 0 cannot be decoded"):
            decode_images([base64.b64encode(b"not an image").decode()], box)


# ------------------------------------------------------------------ memory and time

_MEASURE = r"""
import json, os, resource, sys, threading, time
from eventsvc.media.sandbox import DecodeFailed, DecodeLimits, DecodeSandbox

def status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

limits = DecodeLimits(**json.loads(sys.argv[2]))
box = DecodeSandbox(limits)
box.ping()
before = status("self", "VmHWM")
tree_peak, stop = [0], threading.Event()

def sample():
    while not stop.is_set():
        rss = status("self", "VmRSS") + sum(status(p, "VmRSS") for p in box.pids())
        tree_peak[0] = max(tree_peak[0], rss)
        time.sleep(0.005)

t = threading.Thread(target=sample, daemon=True)
t.start()
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CLOEXEC)
t0 = time.monotonic()
try:
    ts = box.thumbnails(fd)
    outcome = {"ok": [ts.width, ts.height]}
except DecodeFailed as exc:
    outcome = {"kind": exc.kind, "reason": str(exc)}
seconds = time.monotonic() - t0
after_fail = box.pids()
nfd = os.open(sys.argv[3], os.O_RDONLY | os.O_CLOEXEC)
ts = box.thumbnails(nfd)  # the next photo: a fresh child if the last one died
stop.set(); t.join()
box.close()
print(json.dumps({
    **outcome, "seconds": seconds, "next": [ts.width, ts.height], "killed": box.killed,
    "started": box.started, "parent_hwm_before_kb": before,
    "parent_hwm_kb": status("self", "VmHWM"), "tree_peak_kb": tree_peak[0],
    "children_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}))
"""


def _measure(bomb: Path, photo: Path, **limits: object) -> dict[str, object]:
    """Decode the bomb in a fresh process (nothing else in its tree), then a photo."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bomb), json.dumps(limits), str(photo)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_memory_limit_catches_the_bomb_and_the_tree_stays_under_it(
    bomb: Path, tmp_path: Path
) -> None:
    photo = make_jpeg(tmp_path / "next.jpg", 3, size=(640, 480))
    limit_mb = 400
    got = _measure(bomb, photo, max_pixels=200_000_000, memory_mb=limit_mb, processes=1)
    assert got["kind"] == "memory", got
    assert "over the decode memory limit of 400 MB (EVENTSVC_DECODE_MAX_MEMORY_MB)" in str(
        got["reason"]
    )
    assert got["next"] == [640, 480] and got["started"] == 2  # a new child took over
    # Every decoder process stayed under its limit (their peak RSS, reaped) ...
    assert 0 < int(got["children_maxrss_kb"]) < limit_mb * 1024  # type: ignore[call-overload]
    # ... and the worker itself did not grow by the image (507 MB decoded).
    grown = int(got["parent_hwm_kb"]) - int(got["parent_hwm_before_kb"])  # type: ignore[call-overload]
    assert grown < 50 * 1024, got
    assert int(got["tree_peak_kb"]) < int(got["parent_hwm_kb"]) + limit_mb * 1024  # type: ignore[call-overload]


def test_time_limit_kills_the_decoder_and_the_pool_recovers(bomb: Path, tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "next.jpg", 4, size=(640, 480))
    got = _measure(bomb, photo, max_pixels=200_000_000, memory_mb=2048, timeout=0.3, processes=1)
    assert got["kind"] == "timeout", got
    assert "still decoding after 0.3s (EVENTSVC_DECODE_TIMEOUT)" in str(got["reason"])
    assert float(got["seconds"]) < 15  # type: ignore[arg-type]
    assert got["killed"] == 1 and got["started"] == 2 and got["next"] == [640, 480]
    grown = int(got["parent_hwm_kb"]) - int(got["parent_hwm_before_kb"])  # type: ignore[call-overload]
    assert grown < 50 * 1024, got


def test_within_the_limits_the_bomb_is_thumbnailed_small(bomb: Path, tmp_path: Path) -> None:
    """With the budget raised and 1 GB, the bomb decodes (box-reduced before any copy)."""
    photo = make_jpeg(tmp_path / "next.jpg", 5, size=(640, 480))
    got = _measure(bomb, photo, max_pixels=200_000_000, memory_mb=1024, processes=1)
    assert got["ok"] == [13000, 13000], got  # its full size; the decode was reduced:
    assert int(got["children_maxrss_kb"]) < 1024 * 1024  # type: ignore[call-overload]


# ------------------------------------------------------------------ lifetime


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_children_end_with_their_parent(sig: int) -> None:
    script = (
        "import sys, time\n"
        "from eventsvc.media.sandbox import DecodeSandbox\n"
        "box = DecodeSandbox()\nbox.ping()\n"
        "print(*box.pids(), flush=True)\ntime.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        [pid] = [int(v) for v in proc.stdout.readline().split()]
        assert _alive(pid)
        proc.send_signal(sig)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        proc.kill()
        proc.wait()


def test_closed_sandbox_ends_its_children() -> None:
    box = DecodeSandbox(DecodeLimits(processes=2))
    box.ping()
    [pid] = box.pids()
    box.close()
    assert not _alive(pid)


# ------------------------------------------------------------------ through the pipeline


async def _ingest(
    tmp_path: Path, event_log: EventLog, settings: Settings, bomb: Path, **limits: object
) -> tuple[list[DerivationFailed], set[str], set[str], str | None]:
    """A library of the bomb and photos through scanner, hasher, media and projector on
    one decoder process: (failures, thumbnailed hashes, photo hashes, the bomb's
    failure reason in the read model)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copyfile(bomb, lib / "bomb.png")
    photos = [make_jpeg(lib / f"p{i}.jpg", i, size=(300, 200)) for i in range(4)]
    libs, _ = load_libraries([str(lib)])
    cfg = settings.model_copy(update={"decode_processes": 1, **limits})
    async with running(Pipeline(event_log, cfg, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled(timeout=90)
        failed = [e for _, e in await p.events("DerivationFailed")]
        ready = {e.content_hash for _, e in await p.events("ThumbnailReady")}
        reason = await wait_until(lambda: _failure_reason(p, b3(lib / "bomb.png")))
    assert all(f.content_hash == b3(lib / "bomb.png") for f in failed)
    return failed, ready, {b3(f) for f in photos}, reason


def _failure_reason(p: Pipeline, content_hash: str) -> str | None:
    conn = p.db()
    try:
        row = conn.execute(
            "SELECT reason FROM failures WHERE content_hash = ?", (content_hash,)
        ).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


async def test_pipeline_refuses_the_bomb_by_its_header(
    tmp_path: Path, event_log: EventLog, settings: Settings, bomb: Path
) -> None:
    failed, ready, photos, reason = await _ingest(tmp_path, event_log, settings, bomb)
    [f] = failed
    assert f.permanent and (f.stage, f.operation) == ("media", "thumbnail")
    assert "image is 13000x13000 = 169 MP, over the 64 MP decode budget" in f.reason
    assert reason is not None and "decode budget" in reason
    assert ready == photos  # the photos around it are thumbnailed


async def test_pipeline_memory_limit_and_the_pool_recovers(
    tmp_path: Path, event_log: EventLog, settings: Settings, bomb: Path
) -> None:
    """Budget raised, 400 MB: the one decoder process runs out of memory on the bomb and
    is replaced; every photo is still thumbnailed."""
    failed, ready, photos, reason = await _ingest(
        tmp_path, event_log, settings, bomb,
        decode_max_pixels=200_000_000, decode_max_memory_mb=400,
    )  # fmt: skip
    [f] = failed
    assert f.permanent and "over the decode memory limit of 400 MB" in f.reason
    assert reason is not None and "memory limit" in reason
    assert ready == photos


# ------------------------------------------------------------------ videos and face crops


def test_video_poster_frames_are_decoded_in_the_sandbox_within_the_budget(
    tmp_path: Path,
) -> None:
    pytest.importorskip("av")
    video = make_video(tmp_path / "clip.mp4")
    with DecodeSandbox(DecodeLimits(processes=1)) as box:
        fd = _open(video)
        try:
            ts = box.thumbnails(fd, video=True)
        finally:
            os.close(fd)
        assert (ts.width, ts.height) == (160, 120) and set(ts.jpegs) == {"small", "large"}
    with DecodeSandbox(DecodeLimits(max_pixels=10_000, processes=1)) as box:
        fd = _open(video)
        try:
            with pytest.raises(DecodeFailed, match=r"video frames are 160x120 = 0.0 MP, over"):
                box.thumbnails(fd, video=True)
        finally:
            os.close(fd)


def test_face_crops_come_from_our_thumbnail_else_a_bounded_decode(
    tmp_path: Path, bomb: Path
) -> None:
    from litestar.exceptions import NotFoundException

    from eventsvc.components import SandboxDecoder
    from eventsvc.core.roots import LibraryRoots
    from eventsvc.core.settings import Library
    from eventsvc.media.thumbs import thumb_path, write_atomic
    from projections.api.crops import make_crop

    lib, thumbs_dir = tmp_path / "lib", tmp_path / "thumbs"
    lib.mkdir()
    shutil.copyfile(bomb, lib / "bomb.png")
    photo = make_jpeg(lib / "photo.jpg", 7, size=(800, 600))

    def src(path: Path, sizes: dict[str, str]) -> dict[str, object]:
        st = path.stat()
        loc = {"library_id": "lib", "root": str(lib), "rel": path.name.encode(),
               "path": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}  # fmt: skip
        return {"box": [0.4, 0.4, 0.6, 0.6], "sizes": sizes, "locations": [loc]}

    roots = LibraryRoots([Library(id="lib", name="lib", root=lib)])
    with DecodeSandbox(DecodeLimits(processes=1)) as box:
        # No thumbnail yet: the original (opened under its root), decoded in the sandbox.
        decode = SandboxDecoder(sandbox=box)
        crop = make_crop(thumbs_dir, "a" * 64 + "-000000-0", src(photo, {}), roots, decode)
        with Image.open(crop) as im:
            assert max(im.size) <= 256
        # The bomb is refused by its header: a 404 saying why, no decode in this process.
        with pytest.raises(NotFoundException, match="over the 64 MP decode budget"):
            make_crop(thumbs_dir, "b" * 64 + "-000000-0", src(lib / "bomb.png", {}), roots, decode)
        # With our large thumbnail, the original is not touched at all (even a bomb's).
        large = thumb_path(thumbs_dir, "c" * 64, "large")
        buf = io.BytesIO()
        Image.new("RGB", (1440, 1080), (9, 99, 199)).save(buf, "JPEG")
        write_atomic(large, buf.getvalue())
        rel = str(large.relative_to(thumbs_dir))
        crop = make_crop(thumbs_dir, "c" * 64 + "-000000-0", src(lib / "bomb.png", {"large": rel}))
        with Image.open(crop) as im:
            assert im.size == (256, 256)


def test_a_decoder_that_dies_is_reported_and_replaced(bomb: Path, tmp_path: Path) -> None:
    """A decoder killed mid-decode (as the kernel would, or a crash in a codec): the job
    fails with the signal named, the next one gets a new process."""
    import threading

    photo = make_jpeg(tmp_path / "next.jpg", 6, size=(320, 240))
    limits = DecodeLimits(max_pixels=200_000_000, memory_mb=2048, timeout=60, processes=1)
    with DecodeSandbox(limits) as box:
        box.ping()
        [pid] = box.pids()
        killer = threading.Timer(0.2, os.kill, (pid, signal.SIGSEGV))
        killer.start()
        fd = _open(bomb)
        try:
            with pytest.raises(DecodeFailed, match=r"died \(SIGSEGV\), possibly at the memory"):
                box.thumbnails(fd)
        finally:
            killer.join()
            os.close(fd)
        fd = _open(photo)
        try:
            assert box.thumbnails(fd).width == 320
        finally:
            os.close(fd)
        assert box.killed == 1 and box.started == 2 and box.pids() != [pid]


def test_a_memory_limit_no_decoder_fits_in_is_a_config_error(tmp_path: Path) -> None:
    from eventsvc.core.errors import ConfigError
    from eventsvc.media.sandbox import shared_sandbox

    with pytest.raises(ConfigError, match="decode_max_memory_mb=100 is too small"):
        shared_sandbox(Settings(data_dir=tmp_path, decode_max_memory_mb=100))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_full_size_formats_are_box_reduced_and_still_upright(tmp_path: Path, fmt: str) -> None:
    """No DCT scaling outside JPEG: the decode is reduced by an integer factor at once
    (to >= 2 x the edge needed), and the EXIF orientation still applies."""
    from eventsvc.media.thumbs import decode_for_thumbs

    img = Image.new("RGB", (4000, 3000), (220, 20, 20))
    img.paste((20, 20, 220), (2000, 0, 4000, 3000))
    exif = Image.Exif()
    exif[0x0112] = 6  # 90 degrees clockwise: the red left half ends up on top
    path = tmp_path / f"big.{fmt.lower()}"
    img.save(path, fmt, exif=exif)
    out = decode_for_thumbs(path, max_edge=256)
    assert out.size == (429, 572)  # 3000 // 7, 4000 // 7: reduce(7) >= 512
    top, bottom = out.getpixel((214, 5)), out.getpixel((214, 566))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]


def test_exif_is_read_in_the_sandbox_with_the_same_facts(tmp_path: Path, bomb: Path) -> None:
    from eventsvc.media import exif

    photo = make_jpeg(tmp_path / "exif.jpg", 2, size=(320, 240), exif=True)
    with DecodeSandbox(DecodeLimits(processes=1)) as box:
        fd = _open(photo)
        try:
            facts = box.exif(fd)
        finally:
            os.close(fd)
        assert facts == exif.extract_image(photo)
        assert facts.make == "TestCam" and facts.date_original == "2023-01-02T12:34:56"
        fd = _open(bomb)  # headers only: no pixel is decoded, whatever the size
        try:
            facts = box.exif(fd)
        finally:
            os.close(fd)
        assert (facts.width, facts.height) == (BOMB_EDGE, BOMB_EDGE)
        assert box.ping()["vm_hwm_kb"] < 200 * 1024


def test_an_idle_decoder_killed_from_outside_costs_no_file_a_failure(tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "p.jpg", 8, size=(200, 100))
    with DecodeSandbox(DecodeLimits(processes=1)) as box:
        box.ping()
        [pid] = box.pids()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        fd = _open(photo)
        try:
            assert box.thumbnails(fd).width == 200
        finally:
            os.close(fd)
        assert box.started == 2 and box.pids() != [pid]


def test_an_idle_decoder_exits_and_the_next_decode_starts_one(tmp_path: Path) -> None:
    """Issue 18: decoder processes do not sit in memory while nothing changes."""
    photo = make_jpeg(tmp_path / "p.jpg", 9, size=(200, 100))
    with DecodeSandbox(DecodeLimits(processes=1, idle_seconds=0.5)) as box:
        box.ping()
        [pid] = box.pids()
        deadline = time.monotonic() + 10
        while box.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.pids() == [] and box.retired == 1
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
        fd = _open(photo)
        try:
            assert box.thumbnails(fd).width == 200  # a fresh child does the work
        finally:
            os.close(fd)
        assert box.started == 2 and box.pids() not in ([], [pid])


def test_decoders_stay_while_used_and_with_idle_seconds_zero(tmp_path: Path) -> None:
    with DecodeSandbox(DecodeLimits(processes=1, idle_seconds=0)) as box:
        box.ping()
        [pid] = box.pids()
        time.sleep(0.3)
        assert box.pids() == [pid] and box.retired == 0
    with DecodeSandbox(DecodeLimits(processes=1, idle_seconds=1.0)) as box:
        box.ping()
        [pid] = box.pids()
        for _ in range(6):  # used every 0.3 s: never idle for 1 s
            time.sleep(0.3)
            box.ping()
        assert box.pids() == [pid] and box.retired == 0
