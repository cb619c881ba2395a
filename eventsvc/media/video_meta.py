"""Container metadata of a video, probed with PyAV: duration, codecs, size, rotation,
creation time, make/model and GPS.

Bounded in time (a worker thread abandoned after ``timeout_s``); raises
:class:`~eventsvc.media.facts.MediaError` when the file cannot be read, opened, decoded or
is truncated. Problems short of that are reported in :attr:`ExifFacts.warnings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from eventsvc.media.bounded import Warnings, open_regular, run_bounded
from eventsvc.media.exif_values import as_num, as_text, parse_offset
from eventsvc.media.facts import ExifFacts, MediaError
from eventsvc.media.probe import ContainerUnreadable, duration_of, first_streams, open_container

__all__ = ["DEFAULT_VIDEO_TIMEOUT_S", "extract_video", "frame_rotation"]

DEFAULT_VIDEO_TIMEOUT_S = 15.0

_ISO6709 = re.compile(r"^\s*([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?")
_QT_DATE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?"
)


def frame_rotation(frame: Any) -> int:
    """Clockwise degrees (0/90/180/270) needed to show a decoded PyAV frame upright."""
    ccw = getattr(frame, "rotation", 0) or 0
    try:
        return round(-float(ccw) / 90.0) * 90 % 360
    except (TypeError, ValueError, OverflowError):
        return 0


def _tag_rotation(value: Any) -> int | None:
    number = as_num(value)
    if number is None:
        return None
    return round(number / 90.0) * 90 % 360


def _utc_iso(value: str | None, warnings: Warnings) -> str | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        warnings.add(f"creation_time: unparseable {value[:40]!r}")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    if parsed.year <= 1970 or parsed.year > 2100:  # unset QuickTime/Unix epoch stamps
        warnings.add(f"creation_time: implausible {value[:40]!r} ignored")
        return None
    text = parsed.strftime("%Y-%m-%dT%H:%M:%S")
    if parsed.microsecond:
        text += f".{parsed.microsecond // 1000:03d}"
    return text + "Z"


def _video_metadata(metas: Iterable[Mapping[str, str]], warnings: Warnings) -> dict[str, Any]:
    merged: dict[str, str] = {}
    for meta in metas:
        for key, value in meta.items():
            merged.setdefault(str(key).lower(), str(value))
    out: dict[str, Any] = {
        "creation_time": _utc_iso(merged.get("creation_time"), warnings),
        "make": as_text(merged.get("com.apple.quicktime.make") or merged.get("make")),
        "model": as_text(merged.get("com.apple.quicktime.model") or merged.get("model")),
    }
    local = _QT_DATE.match(merged.get("com.apple.quicktime.creationdate", ""))
    if local:
        frac = local[7]
        out["date_original"] = (
            f"{local[1]}-{local[2]}-{local[3]}T{local[4]}:{local[5]}:{local[6]}"
            + (f".{(frac + '000')[:3]}" if frac else "")
        )
        out["utc_offset"] = parse_offset(local[8]) if local[8] else None
    location = (
        merged.get("com.apple.quicktime.location.iso6709")
        or merged.get("location")
        or merged.get("location-eng")
    )
    match = _ISO6709.match(location or "")
    if match:
        lat, lon = float(match[1]), float(match[2])
        if -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0):
            out["gps_lat"], out["gps_lon"] = round(lat, 7), round(lon, 7)
            if match[3]:
                out["gps_alt"] = round(float(match[3]), 3)
        else:
            warnings.add(f"location: unusable {location[:40]!r}")
    rotate = _tag_rotation(merged.get("rotate"))
    if rotate is not None:
        out["rotation"] = rotate
    return out


def _probe_video(path: str, warnings: Warnings) -> dict[str, Any]:
    import av

    from eventsvc.media.integrity import bmff_truncation_at

    try:
        cut = bmff_truncation_at(path)
    except OSError as exc:
        raise MediaError(f"cannot read {path}: {exc}") from exc
    if cut is not None:
        raise MediaError(f"{path}: truncated: {cut}")
    try:
        container = open_container(path)  # the one video probe's open
    except ContainerUnreadable as exc:
        raise MediaError(f"cannot open {path} as a media container: {exc.__cause__}") from exc
    with container:
        video, audio = first_streams(container)
        if video is None and audio is None:
            raise MediaError(f"{path}: no audio or video stream")
        metas: list[Mapping[str, str]] = [container.metadata]
        if video is not None:
            metas.append(video.metadata)
        if audio is not None:
            metas.append(audio.metadata)
        out = _video_metadata(metas, warnings)
        out["duration"] = _duration(container, video or audio)
        out["audio_codec"] = _codec_name(audio, warnings)
        if video is None:
            return out
        ctx = video.codec_context
        out["video_codec"] = _codec_name(video, warnings)
        out["width"] = (ctx.width if ctx is not None else 0) or None
        out["height"] = (ctx.height if ctx is not None else 0) or None
        if ctx is None:
            return out
        if "rotation" not in out:
            try:
                frame = next(container.decode(video), None)
            except (av.FFmpegError, ValueError) as exc:
                raise MediaError(f"{path}: video stream does not decode: {exc}") from exc
            if frame is None:
                warnings.add("video: no frame decoded")
            else:
                out["rotation"] = frame_rotation(frame)
        _check_tail(container, video, out["duration"], path, warnings)
    return out


def _check_tail(
    container: Any, stream: Any, duration: float | None, path: str, warnings: Warnings
) -> None:
    """MP4/MOV: read one packet near the end; a cut-short file keeps its index, not its data."""
    import av

    names = str(getattr(container.format, "name", "")).split(",")
    if "mov" not in names or not duration or not stream.time_base:
        return
    target = int(duration * 0.98 / stream.time_base) + (stream.start_time or 0)
    try:
        container.seek(target, stream=stream, backward=True, any_frame=True)
    except (av.FFmpegError, ValueError) as exc:  # unseekable formats: nothing to conclude
        warnings.add(f"video: tail check skipped: {exc}")
        return
    try:
        packet = next(iter(container.demux(stream)), None)
    except (av.FFmpegError, ValueError) as exc:
        raise MediaError(f"{path}: video data near the end is unreadable: {exc}") from exc
    if packet is None or not packet.size:
        raise MediaError(f"{path}: truncated: no video data near the end of the stream")


def _codec_name(stream: Any, warnings: Warnings) -> str | None:
    if stream is None:
        return None
    ctx = stream.codec_context
    if ctx is None:  # no decoder for this codec in this FFmpeg build
        warnings.add(f"{stream.type}: no decoder available")
        return None
    return str(ctx.name)


def _duration(container: Any, stream: Any) -> float | None:
    seconds = duration_of(container, stream)
    return None if seconds is None else round(seconds, 3)


def extract_video(
    path: str | os.PathLike[str], *, timeout_s: float = DEFAULT_VIDEO_TIMEOUT_S
) -> ExifFacts:
    """Probe a video with PyAV: duration, codecs, size, rotation, creation time, GPS.

    Raises :class:`MediaError` when the file is unreadable, not a media container,
    corrupt/truncated so that it cannot be opened or decoded, or probing times out.
    """
    fh, _size = open_regular(path)
    fh.close()
    warnings = Warnings()
    name = os.fspath(path)
    finished, fields = run_bounded(lambda: _probe_video(name, warnings), timeout_s, "av-probe")
    if not finished or fields is None:
        raise MediaError(f"{name}: probing timed out after {timeout_s:g}s")
    return ExifFacts(**fields, warnings=warnings.snapshot())
