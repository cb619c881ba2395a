"""The one video probe: how a media file is opened with PyAV (:func:`open_container`), its
first streams and duration (:func:`first_streams`, :func:`duration_of`) for everyone (the
EXIF/container facts of :mod:`eventsvc.media.exif` build on them), and :func:`probe`, what
a video holds for the playlist worker.

:func:`probe` is cheap: the container header only (no frame decoded,
no packet scan), so the remux path pays ~1 ms here. Key-frame spacing is not probed: the
remux output's segment durations tell it (see ``eventsvc.derive.playlist.generate``).

H.264 browser-playability comes from the avcC record's profile_idc (Baseline, Main,
Extended, High: 8-bit 4:2:0), read without decoding; when the container holds no avcC
(MPEG-TS, AVI) the file is opened again with FFmpeg's usual stream analysis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from eventsvc.core.errors import PermanentError
from eventsvc.media.integrity import bmff_truncation_at

__all__ = [
    "BROWSER_AUDIO",
    "BROWSER_H264_PROFILES",
    "ContainerUnreadable",
    "Probe",
    "duration_of",
    "first_streams",
    "open_container",
    "probe",
]

BROWSER_AUDIO = frozenset({"aac"})
BROWSER_H264_PROFILES = {66: "Baseline", 77: "Main", 88: "Extended", 100: "High"}
"""profile_idc -> name of the H.264 profiles every browser decodes (8-bit 4:2:0)."""
_BROWSER_PROFILE_NAMES = frozenset({*BROWSER_H264_PROFILES.values(), "Constrained Baseline"})
_FAST = {"probesize": "32", "analyzeduration": "0"}


class ContainerUnreadable(PermanentError):
    """PyAV cannot open the file as a media container (the PyAV error is the cause)."""


def open_container(name: str, *, fast: bool = False) -> Any:
    """The file opened with PyAV for reading (metadata that does not decode is ignored);
    ``fast``: the header only, no stream analysis. Close it (it is a context manager)."""
    import av

    try:
        return av.open(name, mode="r", metadata_errors="ignore", options=_FAST if fast else {})
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise ContainerUnreadable(f"{type(exc).__name__}: {exc}") from exc


def first_streams(container: Any) -> tuple[Any | None, Any | None]:
    """The container's first video and first audio stream (None where it has none)."""
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    return video, audio


def duration_of(container: Any, stream: Any | None) -> float | None:
    """Seconds: the container's duration, else the stream's (None: neither says)."""
    if container.duration and container.duration > 0:
        return container.duration / 1_000_000
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


@dataclass(frozen=True, slots=True)
class Probe:
    video_codec: str
    profile: str | None
    pix_fmt: str | None
    width: int
    height: int
    audio_codec: str | None
    duration: float
    codecs: str | None = None
    """RFC 6381 codecs of the streams as they are (``avc1.64001f,mp4a.40.2``) when the
    headers say them exactly (H.264 avcC, AAC AudioSpecificConfig), else None."""

    @property
    def browser_video(self) -> bool:
        return (
            self.video_codec == "h264"
            and self.profile in _BROWSER_PROFILE_NAMES
            and self.pix_fmt in (None, "yuv420p", "yuvj420p")
        )

    @property
    def browser_audio(self) -> bool:
        return self.audio_codec is None or self.audio_codec in BROWSER_AUDIO


def _codecs(video: bytes, audio_codec: str | None, audio: bytes) -> str | None:
    if len(video) < 4 or video[0] != 1:
        return None
    parts = [f"avc1.{video[1]:02x}{video[2]:02x}{video[3]:02x}"]
    if audio_codec is not None:
        if audio_codec != "aac" or not audio:
            return None
        aot = audio[0] >> 3  # AudioSpecificConfig: 5 bits of audio object type
        if aot in (0, 31):
            return None
        parts.append(f"mp4a.40.{aot}")
    return ",".join(parts)


def _avcc_profile(extradata: bytes) -> str | None:
    if len(extradata) >= 4 and extradata[0] == 1:
        return BROWSER_H264_PROFILES.get(extradata[1], f"profile_idc {extradata[1]}")
    return None


def _read(name: str, fast: bool) -> Probe | None:
    try:
        container = open_container(name, fast=fast)
    except ContainerUnreadable as exc:
        raise PermanentError(f"cannot open as a video: {exc}") from exc.__cause__
    with container:
        v, a = first_streams(container)
        if v is None:
            raise PermanentError("no video stream")
        cc = v.codec_context
        if cc is None or not cc.width or not cc.height:
            if fast:
                return None
            raise PermanentError("video stream without a decoder or dimensions")
        profile: str | None = None
        pix_fmt = cc.format.name if cc.format is not None else None
        if cc.name == "h264":
            profile = _avcc_profile(bytes(cc.extradata or b""))
            if profile is None:
                if fast:
                    return None  # Annex B (TS, AVI): let FFmpeg analyse the stream
                profile = cc.profile
            else:
                pix_fmt = None  # implied by the profile; the fast open may not know it
        duration = duration_of(container, v) or 0.0
        acc = a.codec_context if a is not None else None
        codecs = None
        if cc.name == "h264":
            codecs = _codecs(
                bytes(cc.extradata or b""),
                acc.name if acc is not None else None,
                bytes(acc.extradata or b"") if acc is not None else b"",
            )
        return Probe(
            codecs=codecs,
            video_codec=cc.name,
            profile=profile,
            pix_fmt=pix_fmt,
            width=cc.width,
            height=cc.height,
            audio_codec=a.codec_context.name if a is not None and a.codec_context else None,
            duration=max(duration, 0.0),
        )


def probe(path: str | os.PathLike[str]) -> Probe:
    """Raises PermanentError when the file is no video PyAV can open, or an ISO-BMFF
    (MP4/MOV) file cut short."""
    name = os.fspath(path)
    try:
        cut = bmff_truncation_at(name)
    except OSError as exc:
        raise PermanentError(f"cannot read the video: {exc}") from exc
    if cut is not None:  # FFmpeg would remux what is there into a playlist that won't play
        raise PermanentError(f"truncated video file: {cut}")
    found = _read(name, fast=True)
    if found is None:
        found = _read(name, fast=False)
    assert found is not None
    return found
