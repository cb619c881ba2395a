"""Playlist generation on real generated videos: remux and transcode paths, no audio,
rotation, very short, corrupt input, a job killed by its timeout."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from eventsvc.core.errors import PermanentError
from eventsvc.core.layout import PLAYLIST, playlist_dir
from eventsvc.derive.playlist import generate
from eventsvc.media.probe import probe
from eventsvc.video import ffmpeg as ff
from eventsvc.video import hls
from tests.harness import b3, wait_until
from tests.video.media import FFMPEG, decode_all, displayed_size, make

OPTS = ff.HlsOptions(segment_seconds=1.0, max_height=96, preset="ultrafast")


async def _gen(src: Path, root: Path, **kw: object):  # type: ignore[no-untyped-def]
    return await generate(
        str(src),
        root,
        b3(src),
        opts=OPTS,
        timeout=60,
        ffmpeg=FFMPEG,
        **kw,  # type: ignore[arg-type]
    )


def _check_valid(directory: Path, src: Path) -> hls.MediaPlaylist:
    """Complete playlist, every segment present and decodable, durations add up."""
    pl = hls.validate(directory)
    assert pl.playlist_type == "VOD" and pl.init == "init.mp4"
    src_duration = probe(src).duration
    assert abs(pl.duration - src_duration) < 0.35, (pl.duration, src_duration)
    frames, end = decode_all(directory / PLAYLIST)
    assert frames >= int(src_duration * 10) - 2  # 10 fps sources
    assert abs(end - src_duration) < 0.35
    assert sorted(p.name for p in directory.iterdir() if p.suffix == ".m4s") == sorted(
        s for s, _ in pl.segments
    )
    return pl


async def test_h264_aac_is_remuxed_into_short_segments(tmp_path: Path) -> None:
    src = make(tmp_path / "in" / "a.mp4", seconds=3, gop=10)  # key frame every 1 s
    g = await _gen(src, tmp_path / "videos")
    assert g.mode == "remux" and g.directory == playlist_dir(tmp_path / "videos", b3(src))
    assert g.codecs.startswith("avc1.") and g.codecs.endswith(",mp4a.40.2")
    assert (g.width, g.height) == (160, 120)  # copied, not scaled
    # The codecs said from the source's headers are those of the output's init segment.
    assert hls.codecs_of(g.directory / "init.mp4") == (g.codecs, 160, 120)
    pl = _check_valid(g.directory, src)
    assert g.segments == len(pl.segments) == 3
    assert g.poster and g.preview
    poster = g.directory / "poster.jpg"
    assert poster.read_bytes()[:2] == b"\xff\xd8"
    with __import__("av").open(str(g.directory / "preview.mp4")) as c:
        assert not c.streams.audio and c.streams.video[0].codec_context.height <= 120
    # Nothing else is left next to it (the temp dir was renamed, not copied).
    assert os.listdir(g.directory.parent) == [g.directory.name]


async def test_long_gop_h264_is_transcoded_with_forced_key_frames(tmp_path: Path) -> None:
    src = make(tmp_path / "a.mp4", seconds=5, gop=250)  # one key frame: x264's default
    g = await _gen(src, tmp_path / "videos")
    assert g.mode == "transcode" and "key frames" in g.reason
    pl = _check_valid(g.directory, src)
    assert len(pl.segments) >= 4 and max(d for _, d in pl.segments) <= 1.5
    assert g.height == 96  # scaled down to max_height


async def test_mpeg4_and_vp9_are_transcoded(tmp_path: Path) -> None:
    for codec, ext, audio in (("mpeg4", "avi", "mp3"), ("libvpx-vp9", "webm", "libopus")):
        src = make(
            tmp_path / f"a.{ext}", seconds=2, vcodec=codec, audio=audio,
            extra=("-deadline", "realtime", "-cpu-used", "8") if "vp9" in codec else (),
        )  # fmt: skip
        g = await _gen(src, tmp_path / "videos")
        assert g.mode == "transcode" and "not browser-playable" in g.reason
        assert g.codecs.startswith("avc1.") and g.codecs.endswith("mp4a.40.2")
        _check_valid(g.directory, src)


async def test_no_audio_and_very_short(tmp_path: Path) -> None:
    silent = make(tmp_path / "silent.mp4", seconds=2, audio=None)
    g = await _gen(silent, tmp_path / "videos")
    assert g.mode == "remux" and "," not in g.codecs and g.codecs.startswith("avc1.")
    _check_valid(g.directory, silent)
    short = make(tmp_path / "short.mp4", seconds=0.5)
    g = await _gen(short, tmp_path / "videos")
    pl = _check_valid(g.directory, short)
    assert len(pl.segments) == 1 and 0.3 < pl.duration < 0.8


async def test_rotated_video_stays_upright(tmp_path: Path) -> None:
    # Remuxed: fMP4 keeps the display matrix in init.mp4.
    src = make(tmp_path / "rot.mp4", seconds=2, rotate=90)
    assert displayed_size(src) == (120, 160)
    g = await _gen(src, tmp_path / "videos")
    assert g.mode == "remux"
    assert displayed_size(g.directory / PLAYLIST) == (120, 160)
    # Transcoded: ffmpeg rotates the pixels when decoding; no matrix left to apply.
    src2 = make(tmp_path / "rot4.mp4", seconds=2, vcodec="mpeg4", audio=None, rotate=90)
    g2 = await _gen(src2, tmp_path / "videos")
    assert g2.mode == "transcode"
    assert (g2.width, g2.height) == (72, 96)  # upright pixels, scaled to max_height
    assert displayed_size(g2.directory / PLAYLIST) == (72, 96)


async def test_corrupt_input_is_permanent_and_leaves_nothing(tmp_path: Path) -> None:
    good = make(tmp_path / "a.mp4", seconds=3)
    data = good.read_bytes()
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(data[: len(data) // 2])  # moov at the end: gone
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    root = tmp_path / "videos"
    for src in (bad, junk):
        with pytest.raises(PermanentError):
            await _gen(src, root)
    assert not root.exists() or all(not any(d.iterdir()) for d in root.iterdir())


async def test_timeout_kills_ffmpeg_and_leaves_no_playlist(tmp_path: Path) -> None:
    src = make(tmp_path / "big.avi", seconds=20, size="640x480", rate=25, vcodec="mpeg4",
               audio=None)  # fmt: skip
    root = tmp_path / "videos"
    slow = ff.HlsOptions(segment_seconds=1.0, max_height=480, preset="veryslow")
    with pytest.raises(ff.FfmpegTimeout):
        await generate(str(src), root, b3(src), opts=slow, timeout=0.5, ffmpeg=FFMPEG)
    shard = playlist_dir(root, b3(src)).parent
    assert list(shard.iterdir()) == []  # neither a playlist nor a temp dir
    assert not _running_with(str(src))  # the ffmpeg process group is gone


def _running_with(arg: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in cmd:
            found.append(pid)
    return found


async def test_a_playlist_already_in_place_is_reused_not_redone(tmp_path: Path) -> None:
    # A job that crashed after the rename but before publishing: the next one finds it.
    src = make(tmp_path / "a.mp4", seconds=5, gop=250)
    first = await _gen(src, tmp_path / "videos")
    mtime = (first.directory / "index.m3u8").stat().st_mtime_ns
    again = await _gen(src, tmp_path / "videos")
    assert again.reused and not first.reused
    assert (again.mode, again.reason, again.segments, again.codecs) == (
        first.mode, first.reason, first.segments, first.codecs,
    )  # fmt: skip
    assert (first.directory / "index.m3u8").stat().st_mtime_ns == mtime


async def test_a_cancelled_job_kills_ffmpeg_and_leaves_no_playlist(tmp_path: Path) -> None:
    src = make(tmp_path / "big.avi", seconds=20, size="640x480", rate=25, vcodec="mpeg4",
               audio=None)  # fmt: skip
    root = tmp_path / "videos"
    slow = ff.HlsOptions(segment_seconds=1.0, max_height=480, preset="veryslow")
    job = asyncio.create_task(
        generate(str(src), root, b3(src), opts=slow, timeout=600, ffmpeg=FFMPEG)
    )
    await wait_until(lambda: _running_with(str(src)), 10, 0.02)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await wait_until(lambda: not _running_with(str(src)), 5, 0.05)
    assert list(playlist_dir(root, b3(src)).parent.iterdir()) == []
