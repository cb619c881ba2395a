"""Test videos made by the ffmpeg of imageio-ffmpeg (testsrc + sine), tiny and fast."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import imageio_ffmpeg

from eventsvc.media.exif import frame_rotation

__all__ = ["FFMPEG", "decode_all", "displayed_size", "make"]

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def make(
    path: Path,
    *,
    seconds: float = 3.0,
    size: str = "160x120",
    rate: int = 10,
    vcodec: str = "libx264",
    audio: str | None = "aac",
    gop: int | None = 10,
    rotate: int | None = None,
    extra: tuple[str, ...] = (),
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi"]
    args += ["-i", f"testsrc=duration={seconds}:size={size}:rate={rate}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    args += ["-pix_fmt", "yuv420p", "-c:v", vcodec]
    if vcodec == "libx264":
        args += ["-preset", "ultrafast"]
    if gop is not None:
        args += ["-g", str(gop)]
    if audio:
        args += ["-c:a", audio, "-shortest"]
    args += [*extra, str(path)]
    subprocess.run(args, check=True, timeout=60)
    if rotate is not None:
        tmp = path.with_name("unrotated-" + path.name)
        path.rename(tmp)
        subprocess.run(
            [FFMPEG, "-loglevel", "error", "-y", "-display_rotation:v:0", str(rotate),
             "-i", str(tmp), "-c", "copy", str(path)],
            check=True, timeout=60,
        )  # fmt: skip
        tmp.unlink()
    return path


def decode_all(playlist: Path) -> tuple[int, float]:
    """(frames, seconds of the last frame's end) decoding the whole HLS playlist."""
    frames, end = 0, 0.0
    with av.open(str(playlist)) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            frames += 1
            if f.time is not None:
                end = max(end, f.time + (1 / float(s.average_rate or 10)))
    return frames, end


def displayed_size(path: Path) -> tuple[int, int]:
    """(width, height) as a player shows it (display matrix applied)."""
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        w, h = f.width, f.height
        return (h, w) if frame_rotation(f) in (90, 270) else (w, h)
