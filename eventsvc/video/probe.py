"""What a video holds, from PyAV without decoding: codecs, size, rotation, duration and
the key-frame spacing (packet-level demux of the first ``scan_seconds``)."""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass

from eventsvc.errors import PermanentError

__all__ = ["BROWSER_AUDIO", "BROWSER_PIX_FMTS", "BROWSER_VIDEO", "Probe", "probe"]

BROWSER_VIDEO = frozenset({"h264"})
BROWSER_AUDIO = frozenset({"aac"})
BROWSER_PIX_FMTS = frozenset({"yuv420p", "yuvj420p"})
BROWSER_PROFILES = frozenset({"Baseline", "Constrained Baseline", "Main", "High", "Extended", None})


@dataclass(frozen=True, slots=True)
class Probe:
    video_codec: str
    profile: str | None
    pix_fmt: str | None
    width: int
    height: int
    fps: float | None
    rotation: int
    """Clockwise degrees needed to display the video upright (display matrix)."""
    audio_codec: str | None
    duration: float
    max_keyframe_gap: float
    """Longest distance between key frames seen (or the scanned span when there is one)."""
    keyframes: int

    @property
    def browser_video(self) -> bool:
        return (
            self.video_codec in BROWSER_VIDEO
            and self.pix_fmt in BROWSER_PIX_FMTS
            and self.profile in BROWSER_PROFILES
        )

    @property
    def browser_audio(self) -> bool:
        return self.audio_codec is None or self.audio_codec in BROWSER_AUDIO


def _rotation(container: object, stream: object) -> int:
    """Clockwise degrees from the display matrix, read off the first decoded frame
    (PyAV exposes the matrix on frames only); 0 when nothing decodes."""
    from eventsvc.media.exif import frame_rotation

    try:
        container.seek(0, stream=stream)  # type: ignore[attr-defined]
        for frame in container.decode(stream):  # type: ignore[attr-defined]
            return frame_rotation(frame)
    except Exception:  # PyAV maps FFmpeg failures to many types; the rotation is optional
        return 0
    return 0


def probe(path: str | os.PathLike[str], scan_seconds: float = 120.0) -> Probe:
    """Raises PermanentError when the file is no video PyAV can demux."""
    import av

    name = os.fspath(path)
    try:
        container = av.open(name, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise PermanentError(f"cannot open as a video: {type(exc).__name__}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise PermanentError("no video stream")
        v = container.streams.video[0]
        a = container.streams.audio[0] if container.streams.audio else None
        cc = v.codec_context
        if cc is None or not cc.width or not cc.height:
            raise PermanentError("video stream without a decoder or dimensions")
        tb = v.time_base
        keys: list[float] = []
        last = first = None
        packets = 0
        try:
            for pkt in container.demux(v):
                if pkt.size == 0 or pkt.pts is None:
                    continue
                t = float(pkt.pts * tb) if tb is not None else 0.0
                first = t if first is None else min(first, t)
                last = t if last is None else max(last, t)
                packets += 1
                if pkt.is_keyframe:
                    keys.append(t)
                if first is not None and t - first > scan_seconds and len(keys) > 1:
                    break
        except av.FFmpegError as exc:
            if packets == 0:
                raise PermanentError(f"cannot demux the video stream: {exc}") from exc
        if packets == 0:
            raise PermanentError("the video stream holds no packets")
        if not keys:
            raise PermanentError("the video stream holds no key frame")
        span_end = last if last is not None else 0.0
        points = [*sorted(keys), span_end]
        gap = max((b - a_ for a_, b in itertools.pairwise(points)), default=0.0)
        duration = 0.0
        if container.duration:
            duration = container.duration / 1_000_000
        elif v.duration and tb is not None:
            duration = float(v.duration * tb)
        if not duration or not math.isfinite(duration):
            duration = max(span_end - (first or 0.0), 0.0)
        rate = v.average_rate or v.guessed_rate
        return Probe(
            video_codec=cc.name,
            profile=cc.profile,
            pix_fmt=cc.format.name if cc.format is not None else None,
            width=cc.width,
            height=cc.height,
            fps=float(rate) if rate else None,
            rotation=_rotation(container, v),
            audio_codec=a.codec_context.name if a is not None and a.codec_context else None,
            duration=duration,
            max_keyframe_gap=gap,
            keyframes=len(keys),
        )
