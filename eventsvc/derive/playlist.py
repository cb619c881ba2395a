"""The playlist deriver: HashComputed (videos) -> PlaylistReady, once per content (and
once more after each clean-up that removed it, see ``eventsvc.video.reaper``).

A job probes the file (PyAV), plans remux or transcode (see ``eventsvc.video.ffmpeg``),
runs ffmpeg into a temp directory next to the target, checks the playlist (it plays: a
positive duration, every segment present and non-empty), adds a poster (required: a
video with no decodable frame is a failure) and a short muted preview, and only then renames the
directory into ``<video_root>/<shard>/<hash>/``: a crash leaves a ``.tmp-…`` directory
(the clean-up removes old ones), never a half playlist that looks done.

Failures: undecodable input -> DerivationFailed(permanent) at once; a job past
``playlist_timeout`` -> ffmpeg's process group killed, DerivationFailed(permanent=False)
at once (a job that hit the ceiling would hit it again; raise the limit and re-derive);
other trouble (ffmpeg killed, disk full) -> retried by the runtime up to max_deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsvc.core.errors import PermanentError, TransientError
from eventsvc.core.events import DerivationFailed, Event, HashComputed, PlaylistReady
from eventsvc.core.layout import PLAYLIST, POSTER, PREVIEW, playlist_dir, tmp_dir
from eventsvc.core.log import ConsumerSpec, EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.safe_open import fd_path
from eventsvc.core.settings import Settings
from eventsvc.derive.versions import PLAYLIST_VERSION
from eventsvc.derive.worker import WithBackground, Worker, WorkerStats
from eventsvc.media.probe import Probe, probe
from eventsvc.media.sandbox import DecodeFailed, DecodeSandbox
from eventsvc.video import ffmpeg as ff
from eventsvc.video import hls

__all__ = ["Generated", "PlaylistDeriver", "PlaylistStats", "PlaylistWorker", "generate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Generated:
    directory: Path
    duration: float
    segments: int
    codecs: str
    mode: str
    reason: str
    width: int | None
    height: int | None
    poster: bool
    preview: bool
    reused: bool = False


@dataclass
class PlaylistStats(WorkerStats):
    disabled: str | None = None
    remuxed: int = 0
    transcoded: int = 0
    cleanup: dict[str, Any] = field(default_factory=dict)


JOB = "job.json"
"""How the playlist was made (mode, reason), for a job that finds it already in place."""


def _existing(target: Path, mode: str, reason: str) -> Generated | None:
    try:
        pl = hls.validate(target)
    except hls.PlaylistError:
        return None
    with contextlib.suppress(OSError, ValueError, TypeError):
        job = json.loads((target / JOB).read_text())
        if job.get("mode") in ("remux", "transcode"):
            mode, reason = job["mode"], str(job.get("reason", ""))
    codecs, w, h = hls.codecs_of(target / (pl.init or "init.mp4"))
    return Generated(
        target, round(pl.duration, 3), len(pl.segments), codecs, mode, reason, w, h,
        (target / POSTER).is_file(), (target / PREVIEW).is_file(), reused=True,
    )  # fmt: skip


def _prepare(
    src: str, target: Path, video_root: Path, opts: ff.HlsOptions
) -> tuple[Probe, ff.Plan, Generated | None, Path | None]:
    """Probe and plan; the playlist already in place, or a fresh work directory."""
    p = probe(src)
    pl = ff.plan(p, opts)
    found = _existing(target, pl.mode, pl.reason)
    if found is not None:
        return p, pl, found, None
    work = tmp_dir(video_root, target.name)
    try:
        work.parent.mkdir(parents=True, exist_ok=True)
        work.mkdir()
    except OSError as exc:
        raise TransientError(f"cannot create {work}: {exc}") from exc
    return p, pl, None, work


def _check(
    work: Path, pl: ff.Plan, opts: ff.HlsOptions, p: Probe
) -> tuple[hls.MediaPlaylist, ff.Plan | None, tuple[str, int | None, int | None]]:
    """The playlist ffmpeg wrote; the transcode plan if a remux came out too sparse, else
    the output's codecs and size."""
    try:
        parsed = hls.validate(work)
    except hls.PlaylistError as exc:
        raise PermanentError(f"ffmpeg wrote no usable playlist: {exc}") from exc
    declared = p.duration
    if declared > 0 and parsed.duration < declared - max(2.0, 0.1 * declared):
        # The container says longer than what its streams hold: a cut-short file
        # (Matroska, MPEG-TS...: MP4/MOV are caught by the probe's box check).
        raise PermanentError(
            f"truncated video: it plays {parsed.duration:.1f} s of the "
            f"{declared:.1f} s its container declares"
        )
    again = ff.too_sparse(pl, parsed.longest, opts)
    if again is not None:
        return parsed, again, ("", None, None)
    return parsed, None, _describe(work, parsed, pl, p)


def _describe(
    work: Path, parsed: hls.MediaPlaylist, pl: ff.Plan, p: Probe
) -> tuple[str, int | None, int | None]:
    """Codecs and coded size: a remux has the source's (read by the probe), a transcode
    is read back from its init segment."""
    if pl.copy_video and pl.audio != "encode" and p.codecs is not None:
        return p.codecs, p.width, p.height
    return hls.codecs_of(work / (parsed.init or "init.mp4"))


def _clear(directory: Path) -> None:
    for entry in os.scandir(directory):
        os.unlink(entry.path)


def sandboxed_poster(sandbox: DecodeSandbox, fd: int) -> Callable[[Path], bool]:
    """A poster maker that decodes the frame in the decode sandbox (pixel, memory and time
    limits) and writes its large thumbnail: the worker process never decodes video."""

    def make(out: Path) -> bool:
        try:
            ts = sandbox.thumbnails(fd, video=True)
        except DecodeFailed as exc:  # no decodable frame: the caller records the failure
            log.warning("poster failed: %s", exc)
            return False
        data = ts.jpegs.get("large") or next(iter(ts.jpegs.values()), None)
        if not data:
            return False
        out.write_bytes(data)
        return True

    return make


def _poster(src: str, out: Path, max_height: int) -> bool:
    from eventsvc.media import thumbs

    try:
        img = thumbs.video_frame(src, 0.1)
        img.thumbnail((max_height * 16, max_height))
        img.save(out, "JPEG", quality=85)
        return True
    except Exception as exc:  # no frame: the caller records the video as undecodable
        log.warning("poster for %s failed: %s", src, exc)
        return False


async def generate(
    src: str,
    video_root: Path,
    content_hash: str,
    *,
    opts: ff.HlsOptions,
    timeout: float,
    ffmpeg: str,
    extras: bool = True,
    preview_seconds: float = 3.0,
    preview_height: int = 240,
    pass_fds: tuple[int, ...] = (),
    poster_maker: Callable[[Path], bool] | None = None,
) -> Generated:
    """Probe, plan, run ffmpeg into a temp dir, validate, add poster + preview, rename.

    ``extras=False`` skips the poster and preview (the benchmark times the playlist alone).
    ``pass_fds``: descriptors ffmpeg inherits (``src`` may be ``/proc/self/fd/N``).
    ``poster_maker(path)`` writes the poster JPEG (the worker's decodes it in the decode
    sandbox); by default the frame is decoded here.
    """
    deadline = time.monotonic() + timeout
    target = playlist_dir(video_root, content_hash)
    # Few thread hops: each costs the short remux jobs measurably (see bench/playlist.py).
    p, pl, found, work = await asyncio.to_thread(_prepare, src, target, video_root, opts)
    if found is not None:
        return found
    assert work is not None
    try:
        while True:
            args = ff.hls_args(ffmpeg, src, work, pl, opts)
            await ff.run_ffmpeg(args, deadline - time.monotonic(), pass_fds=pass_fds)
            parsed, again, (codecs, w, h) = await asyncio.to_thread(_check, work, pl, opts, p)
            if again is None:
                break
            log.info("%s: %s; transcoding", content_hash[:12], again.reason)
            pl = again
            await asyncio.to_thread(_clear, work)
        poster = preview = False
        if extras:
            if poster_maker is None:
                poster = await asyncio.to_thread(_poster, src, work / POSTER, opts.max_height)
            else:
                poster = await asyncio.to_thread(poster_maker, work / POSTER)
            if not poster:  # no frame to show: the playlist would not play either
                raise PermanentError("no poster frame could be decoded from the video")
            start = p.duration * 0.1 if p.duration > 2 * preview_seconds else 0.0
            args = ff.preview_args(
                ffmpeg, src, work / PREVIEW, preview_seconds, preview_height, start
            )
            try:
                await ff.run_ffmpeg(args, deadline - time.monotonic(), pass_fds=pass_fds)
                preview = (work / PREVIEW).is_file() and (work / PREVIEW).stat().st_size > 0
            except ff.FfmpegTimeout:
                raise
            except (PermanentError, TransientError) as exc:
                log.warning("preview for %s failed: %s", content_hash[:12], exc)
                with contextlib.suppress(OSError):
                    (work / PREVIEW).unlink()
        (work / JOB).write_text(json.dumps({"mode": pl.mode, "reason": pl.reason}))
        try:
            os.rename(work, target)
        except OSError:
            # Someone else finished first (another worker on the same content): keep theirs.
            found = await asyncio.to_thread(_existing, target, pl.mode, pl.reason)
            if found is None:
                raise
            return found
        return Generated(
            target, round(parsed.duration, 3), len(parsed.segments), codecs, pl.mode,
            pl.reason, w, h, poster, preview,
        )  # fmt: skip
    finally:
        if work.exists():
            await asyncio.to_thread(shutil.rmtree, work, True)


class PlaylistDeriver:
    """The handler of the ``playlist`` worker."""

    def __init__(
        self,
        roots: LibraryRoots,
        event_log: EventLog,
        settings: Settings,
        ffmpeg: str,
        sandbox: DecodeSandbox | None = None,
    ) -> None:
        self.roots = roots
        self.sandbox = sandbox
        """Where poster frames are decoded (None: in this process, unbounded: tests only)."""
        self.event_log = event_log
        self.settings = settings
        self.ffmpeg = ffmpeg
        self.video_root = settings.videos_dir
        self.opts = ff.HlsOptions(
            segment_seconds=settings.video_segment_seconds,
            max_height=settings.video_max_height,
            preset=settings.video_preset,
            crf=settings.video_crf,
        )
        self.stats: PlaylistStats | None = None
        self.version = PLAYLIST_VERSION
        """The deriver version its facts carry (:mod:`eventsvc.derive.versions`)."""

    async def __call__(self, event: Event, seq: int) -> list[Event]:
        if not isinstance(event, HashComputed) or event.media_kind != "video":
            return []
        h = event.content_hash
        ready, done = await self._state(h)
        target = playlist_dir(self.video_root, h)
        if done and await asyncio.to_thread(_valid, target):
            return []  # derived before (maybe from another location)
        self.roots.root(event.library_id)  # not configured here: fail before a thread hop
        # Opened under the configured root; PyAV reads /proc/self/fd/N, ffmpeg inherits N.
        fd = await asyncio.to_thread(self.roots.open_hashed, event, "the playlist job")
        try:
            g = await generate(
                fd_path(fd), self.video_root, h, opts=self.opts,
                timeout=self.settings.playlist_timeout, ffmpeg=self.ffmpeg,
                preview_seconds=self.settings.preview_seconds,
                preview_height=self.settings.preview_height, pass_fds=(fd,),
                poster_maker=None if self.sandbox is None else sandboxed_poster(self.sandbox, fd),
            )  # fmt: skip
        except ff.FfmpegTimeout as exc:
            log.warning("playlist for %s: %s", h[:12], exc)
            return [
                DerivationFailed(
                    stage="playlist", operation="playlist", reason=str(exc),
                    permanent=False,
                    input_subject=event.subject(self.event_log.prefix), causation=seq,
                    content_hash=h, file_id=event.file_id, library_id=event.library_id,
                )
            ]  # fmt: skip
        finally:
            os.close(fd)
        if self.stats is not None and not g.reused:
            if g.mode == "remux":
                self.stats.remuxed += 1
            else:
                self.stats.transcoded += 1
        if done:
            return []  # files re-made after a clean-up; the recorded fact still holds
        rel_dir = g.directory.relative_to(self.video_root)
        made = [
            PlaylistReady(
                content_hash=h, playlist_path=str(rel_dir / PLAYLIST), duration=g.duration,
                segments=g.segments, codecs=g.codecs, mode=g.mode,  # type: ignore[arg-type]
                reason=g.reason, width=g.width, height=g.height,
                poster=str(rel_dir / POSTER) if g.poster else None,
                preview=str(rel_dir / PREVIEW) if g.preview else None, causation=seq,
                deriver_version=self.version,
            )
        ]  # fmt: skip
        if ready:  # again (clean-up, newer version): guarded by the one it replaces
            await self.event_log.publish(made[0], expected_last_subject_seq=ready)
            return []
        return made

    async def _state(self, content_hash: str) -> tuple[int, bool]:
        """(the last PlaylistReady's sequence or 0, whether it stands): not after a
        clean-up since, nor of an older deriver version (then it is made again)."""
        p = f"{self.event_log.prefix}.content.{content_hash}"
        ready, version = await self.event_log.last_fact(f"{p}.PlaylistReady")
        removed = await self.event_log.last_subject_seq(f"{p}.PlaylistRemoved")
        return ready, ready > removed and version >= self.version

    async def stale(self, event: HashComputed) -> bool:
        """Whether ``event`` is a video whose PlaylistReady is of an older version, or
        missing or cleaned up (:mod:`eventsvc.derive.rederive`)."""
        if event.media_kind != "video":
            return False
        return not (await self._state(event.content_hash))[1]


def _valid(target: Path) -> bool:
    try:
        hls.validate(target)
    except hls.PlaylistError:
        return False
    return True


class PlaylistWorker(WithBackground, Worker):
    """The runtime plus the guarded orphan clean-up loop; or, without ffmpeg/PyAV, a
    worker that says why once and does nothing."""

    def __init__(
        self,
        event_log: EventLog,
        spec: ConsumerSpec,
        deriver: PlaylistDeriver | None,
        settings: Settings,
        roots: LibraryRoots,
        *,
        disabled: str | None = None,
    ) -> None:
        async def idle(event: Event, seq: int) -> list[Event]:
            return []

        super().__init__(
            "playlist", event_log, spec, deriver or idle,
            concurrency=settings.playlist_concurrency,
            batch=max(settings.playlist_concurrency * 2, 2), accepts=(HashComputed,),
        )  # fmt: skip
        self.stats = PlaylistStats(disabled=disabled, last_error=disabled)
        if deriver is not None:
            deriver.stats = self.stats
        self.settings = settings
        self.roots = roots

    async def run(self, stop: asyncio.Event) -> None:
        if self.stats.disabled:
            log.warning("playlist worker disabled: %s", self.stats.disabled)
            await stop.wait()
            return
        from eventsvc.video.reaper import Reaper

        reaper = Reaper(
            self.settings.videos_dir, self.event_log,
            self.roots.configured, max_remove=self.settings.playlist_cleanup_max,
            tmp_max_age=self.settings.playlist_timeout + 600, stats=self.stats.cleanup,
        )  # fmt: skip
        loop = asyncio.create_task(reaper.run(stop, self.settings.playlist_cleanup_interval))
        try:
            await super().run(stop)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loop
