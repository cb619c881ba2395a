"""A cut-short video is a failure, never a playlist that does not play (issue 13, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventsvc.core.errors import PermanentError
from eventsvc.derive.playlist import generate
from eventsvc.media import exif
from eventsvc.media.exif import MediaError
from eventsvc.media.thumbs import video_frame
from eventsvc.video import ffmpeg as ff
from eventsvc.video import hls
from tests.harness import b3
from tests.video.media import FFMPEG, make

OPTS = ff.HlsOptions(segment_seconds=1.0, max_height=96, preset="ultrafast")
FRACTIONS = (0.05, 0.3, 0.6, 0.95)


@pytest.fixture(scope="module")
def faststart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MP4 with its index (moov) first, as phones and web exports write them: cut
    anywhere after the index, FFmpeg still opens it and remuxes the frames that are there."""
    return make(tmp_path_factory.mktemp("v") / "fast.mp4", seconds=4,
                extra=("-movflags", "+faststart"))  # fmt: skip


def _cut(src: Path, fraction: float, tmp_path: Path) -> Path:
    data = src.read_bytes()
    out = tmp_path / f"cut{int(fraction * 100)}.mp4"
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


async def test_truncated_mp4_makes_no_playlist(faststart: Path, tmp_path: Path) -> None:
    root = tmp_path / "videos"
    whole = await generate(str(faststart), root, b3(faststart), opts=OPTS, timeout=60,
                           ffmpeg=FFMPEG)  # fmt: skip
    assert whole.duration > 3 and whole.poster
    for fraction in FRACTIONS:
        cut = _cut(faststart, fraction, tmp_path)
        with pytest.raises(PermanentError, match="truncated"):
            await generate(str(cut), root, b3(cut), opts=OPTS, timeout=60, ffmpeg=FFMPEG)
    assert sorted(p.name for p in root.rglob("index.m3u8")) == ["index.m3u8"]  # the whole one


def test_truncated_mp4_has_no_poster_and_no_facts(faststart: Path, tmp_path: Path) -> None:
    assert video_frame(faststart).size == (160, 120)
    assert exif.extract_video(faststart).duration
    for fraction in FRACTIONS:
        cut = _cut(faststart, fraction, tmp_path)
        with pytest.raises(MediaError, match="truncated"):
            video_frame(cut)
        with pytest.raises(MediaError, match="truncated"):
            exif.extract_video(cut)


def test_a_playlist_that_does_not_play_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "init.mp4").write_bytes(b"\0" * 24)
    (tmp_path / "seg_00000.m4s").write_bytes(b"\0" * 24)
    text = (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{t}\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:{d},\nseg_00000.m4s\n#EXT-X-ENDLIST\n'
    )
    (tmp_path / "index.m3u8").write_text(text.format(t=0, d="0.000000"))
    with pytest.raises(hls.PlaylistError, match="plays for 0"):
        hls.validate(tmp_path)
    (tmp_path / "index.m3u8").write_text(text.format(t=1, d="1.000000"))
    assert hls.validate(tmp_path).duration == 1.0


async def test_truncated_matroska_makes_no_playlist(tmp_path: Path) -> None:
    """Not ISO-BMFF: the container declares 8 s, its streams hold less."""
    src = make(tmp_path / "whole.mkv", seconds=8, audio=None)
    root = tmp_path / "videos"
    g = await generate(str(src), root, b3(src), opts=OPTS, timeout=60, ffmpeg=FFMPEG)
    assert g.duration > 7
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(PermanentError, match="truncated video: it plays"):
        await generate(str(cut), root, b3(cut), opts=OPTS, timeout=60, ffmpeg=FFMPEG)
