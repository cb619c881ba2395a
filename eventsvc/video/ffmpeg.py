"""ffmpeg (from imageio-ffmpeg): the HLS plan (remux or transcode), argument building,
and running with a timeout that kills the whole process group.

Remux vs transcode: HLS cuts segments at key frames only, so ``-c copy`` of a file whose
key frames are 10 s apart gives 10 s segments. The video is copied only when it is
browser-playable (H.264, 8-bit 4:2:0, a common profile) AND its key frames are at most
``keyframe_factor x segment_seconds`` apart; otherwise it is re-encoded with forced key
frames every ``segment_seconds``, scaled down to ``max_height``. The key-frame spacing is
not probed up front (that is a scan of the whole file): a browser-playable source is
remuxed and the remux's own segment durations decide (``too_sparse``); a long-GOP source
is then transcoded, having cost one remux. Audio is copied when it is AAC and re-encoded
to AAC otherwise. ``mode`` is "remux" only when nothing was re-encoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from eventsvc.core.errors import PermanentError, TransientError
from eventsvc.core.layout import PLAYLIST
from eventsvc.media.probe import Probe

__all__ = [
    "FfmpegTimeout",
    "HlsOptions",
    "Plan",
    "ffmpeg_exe",
    "hls_args",
    "plan",
    "preview_args",
    "run_ffmpeg",
    "too_sparse",
]


class FfmpegTimeout(TransientError):
    """The job ran past its time limit; ffmpeg's process group was killed."""


def ffmpeg_exe() -> str:
    """The ffmpeg binary of imageio-ffmpeg (its own, or ``IMAGEIO_FFMPEG_EXE``). ImportError
    when the package is missing, RuntimeError when there is no runnable binary."""
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    if not os.path.isfile(exe) or not os.access(exe, os.X_OK):
        raise RuntimeError(f"ffmpeg {exe!r} is not an executable file")
    return exe


@dataclass(frozen=True, slots=True)
class HlsOptions:
    segment_seconds: float = 2.0
    max_height: int = 720
    preset: str = "veryfast"
    crf: int = 23
    audio_bitrate: str = "128k"
    keyframe_factor: float = 2.0
    """Copy the video only if its key frames are at most this many segments apart."""


@dataclass(frozen=True, slots=True)
class Plan:
    copy_video: bool
    audio: str  # "copy" | "encode" | "none"
    reason: str

    @property
    def mode(self) -> str:
        return "remux" if self.copy_video and self.audio != "encode" else "transcode"


def plan(p: Probe, opts: HlsOptions) -> Plan:
    audio = "none" if p.audio_codec is None else ("copy" if p.browser_audio else "encode")
    if not p.browser_video:
        why = f"video {p.video_codec}/{p.profile or '?'} is not browser-playable"
        return Plan(False, audio, why)
    if audio == "encode":
        return Plan(True, audio, f"audio {p.audio_codec} is not browser-playable")
    return Plan(True, audio, "H.264 with close key frames" + (", AAC" if audio == "copy" else ""))


def too_sparse(pl: Plan, longest_segment: float, opts: HlsOptions) -> Plan | None:
    """The transcode plan when a remux came out with segments too long (sparse key
    frames); None when the remux stands."""
    limit = opts.keyframe_factor * opts.segment_seconds
    if not pl.copy_video or longest_segment <= limit + 1e-3:
        return None
    why = f"key frames up to {longest_segment:.1f} s apart (> {limit:g} s)"
    return Plan(False, pl.audio, why)


def hls_args(ffmpeg: str, src: str, out_dir: Path, pl: Plan, opts: HlsOptions) -> list[str]:
    """The full command line writing ``out_dir/index.m3u8`` + fMP4 segments (init.mp4
    keeps the display matrix, so a remuxed rotated phone video stays upright)."""
    seg = f"{opts.segment_seconds:g}"
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", src]
    args += ["-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn", "-map_metadata", "-1"]
    if pl.copy_video:
        args += ["-c:v", "copy"]
    else:
        args += [
            "-c:v", "libx264", "-preset", opts.preset, "-crf", str(opts.crf),
            "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-vf", f"scale=-2:'min({opts.max_height},ih)':flags=bicubic",
            "-force_key_frames", f"expr:gte(t,n_forced*{seg})", "-sc_threshold", "0",
        ]  # fmt: skip
    if pl.audio == "copy":
        args += ["-c:a", "copy"]
    elif pl.audio == "encode":
        args += ["-c:a", "aac", "-b:a", opts.audio_bitrate, "-ac", "2"]
    args += [
        "-f", "hls", "-hls_time", seg, "-hls_playlist_type", "vod", "-hls_list_size", "0",
        "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_filename", str(out_dir / "seg_%05d.m4s"), str(out_dir / PLAYLIST),
    ]  # fmt: skip
    return args


def preview_args(
    ffmpeg: str, src: str, out: Path, seconds: float, height: int, start: float = 0.0
) -> list[str]:
    """A short, muted, small H.264 MP4 (faststart) for hover previews."""
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-ss", f"{max(start, 0.0):.3f}", "-i", src, "-t", f"{seconds:g}",
        "-map", "0:v:0", "-an", "-sn", "-dn", "-map_metadata", "-1",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "30", "-pix_fmt", "yuv420p",
        "-vf", f"scale=-2:'min({height},ih)'", "-movflags", "+faststart", "-f", "mp4", str(out),
    ]  # fmt: skip


def _run(
    args: list[str], timeout: float, started: list[subprocess.Popen[bytes]],
    pass_fds: tuple[int, ...] = (),
) -> int:  # fmt: skip
    """Blocking: start ffmpeg in its own session, wait; killpg on timeout."""
    try:
        proc = subprocess.Popen(
            args,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise TransientError(f"cannot start ffmpeg: {exc}") from exc
    started.append(proc)
    try:
        _, err = proc.communicate(timeout=max(timeout, 0.0))
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        raise FfmpegTimeout(f"ffmpeg ran past the {timeout:g} s job limit and was killed") from None
    if proc.returncode == 0:
        return 0
    tail = err.decode("utf-8", "replace").strip()[-600:]
    if proc.returncode < 0:
        raise TransientError(f"ffmpeg killed by signal {-proc.returncode}: {tail}")
    if "No space left" in tail or "Cannot allocate memory" in tail:
        raise TransientError(f"ffmpeg failed (exit {proc.returncode}): {tail}")
    raise PermanentError(f"ffmpeg failed (exit {proc.returncode}): {tail or 'no message'}")


async def run_ffmpeg(args: list[str], timeout: float, pass_fds: tuple[int, ...] = ()) -> None:
    """Run to completion; FfmpegTimeout after ``timeout`` s (the process group is killed),
    PermanentError when ffmpeg rejects the input, TransientError for resource trouble.
    Cancellation kills the process group too. (A thread waits on a plain Popen: cheaper
    than asyncio's subprocess transport, which the benchmark notices on short remuxes.)
    ``pass_fds``: descriptors ffmpeg inherits (an input given as ``/proc/self/fd/N``)."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        await asyncio.to_thread(_run, args, timeout, started, pass_fds)
    except asyncio.CancelledError:
        for proc in started:
            _kill(proc)
        raise


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
