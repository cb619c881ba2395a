"""The media deriver: HashComputed -> ExifExtracted + ThumbnailReady, once per content.

One decode serves the thumbnails and the perceptual hashes; EXIF is read without
decoding pixels. A file that cannot be decoded still gets its EXIF facts (and its
content hash, from the hasher): the thumbnail failure is recorded as DerivationFailed.
The decode (image, RAW preview or video poster frame) runs in the decode sandbox
(:mod:`eventsvc.media.sandbox`): over the pixel budget, the memory or the time limit it
is such a failure too, with the limit named; the worker process never holds the pixels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path

from PIL import Image

from eventsvc.core.dates import resolve_date_taken
from eventsvc.core.errors import OutOfSpace, TransientError, UnsafePath, out_of_space
from eventsvc.core.events import (
    DerivationFailed,
    Event,
    ExifExtracted,
    HashComputed,
    MediaFacts,
    ThumbnailReady,
)
from eventsvc.core.log import EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.safe_open import fd_path, open_in_root
from eventsvc.derive.versions import MEDIA_VERSION
from eventsvc.media import decode, thumbs
from eventsvc.media import exif as exif_mod
from eventsvc.media.load import is_raw
from eventsvc.media.sandbox import DecodeFailed, DecodeSandbox

__all__ = ["MediaDeriver", "analyse_image", "write_thumbnails"]

log = logging.getLogger(__name__)

MAX_SIDECAR = 1 << 20
"""Bytes of an XMP sidecar read at most; a bigger one is ignored (with a warning)."""


def analyse_image(
    source: thumbs.Source,
    thumb_root: Path,
    content_hash: str,
    *,
    raw: bool = False,
    sandbox: DecodeSandbox | None = None,
) -> tuple[dict[str, str], tuple[int, int], str, str]:
    """Thumbnails written atomically, upright size, pHash and dHash, from one decode
    (in the sandbox's child process when given one: the pixels never come here)."""
    if sandbox is not None:
        ts = sandbox.thumbnails(source, raw=raw)
    else:
        ts = decode.thumbnail_set(decode.thumb_image(source, raw=raw, max_pixels=None))
    return write_thumbnails(ts, thumb_root, content_hash)


def write_thumbnails(
    ts: decode.ThumbSet, thumb_root: Path, content_hash: str
) -> tuple[dict[str, str], tuple[int, int], str, str]:
    """Write each distinct thumbnail once (``<hash[:2]>/<hash>-<size>.jpg``, named after
    the smallest size it serves) and map every size name to its file: an image no larger
    than the small edge has one file for both sizes."""
    rel: dict[str, str] = {}
    written: dict[bytes, str] = {}
    for name in sorted(ts.jpegs, key=_size_order):
        data = ts.jpegs[name]
        if data not in written:  # equal bytes (the sandbox sends each size's blob)
            target = thumbs.thumb_path(thumb_root, content_hash, name)
            thumbs.write_atomic(target, data)
            written[data] = target.relative_to(thumb_root).as_posix()
        rel[name] = written[data]
    return rel, (ts.width, ts.height), ts.phash, ts.dhash


def _size_order(name: str) -> int:
    return thumbs.SIZES.get(name, 1 << 30)


def _store(
    img: Image.Image, thumb_root: Path, content_hash: str
) -> tuple[dict[str, str], tuple[int, int], str, str]:
    return write_thumbnails(decode.thumbnail_set(img), thumb_root, content_hash)


class MediaDeriver:
    """The handler of the ``media`` worker."""

    def __init__(
        self,
        roots: LibraryRoots,
        thumb_root: Path,
        event_log: EventLog,
        sandbox: DecodeSandbox | None = None,
    ) -> None:
        self.roots = roots
        self.thumb_root = Path(thumb_root)
        self.event_log = event_log
        self.sandbox = sandbox
        """Where images are decoded (None: in this process, unbounded: tests only)."""
        self.version = MEDIA_VERSION
        """The deriver version its facts carry (:mod:`eventsvc.derive.versions`)."""

    async def __call__(self, event: Event, seq: int) -> list[Event]:
        if not isinstance(event, HashComputed):
            return []
        need_exif, need_thumb = await self.needs(event.content_hash)
        if not (need_exif or need_thumb):
            return []  # derived by this version already (maybe from another location)
        self.roots.root(event.library_id)  # not configured here: fail before a thread hop
        out = await asyncio.to_thread(self.derive, event, seq, need_exif, need_thumb)
        return [
            e.model_copy(update={"deriver_version": self.version})
            if isinstance(e, ExifExtracted | ThumbnailReady)
            else e
            for e in out
        ]

    async def needs(self, content_hash: str) -> tuple[bool, bool]:
        """(EXIF, thumbnails) still to derive: no fact yet, or one of an older version
        (the once-only key is (content, fact, deriver version))."""
        p = f"{self.event_log.prefix}.content.{content_hash}"
        _, exif_v = await self.event_log.last_fact(f"{p}.ExifExtracted")
        _, thumb_v = await self.event_log.last_fact(f"{p}.ThumbnailReady")
        return exif_v < self.version, thumb_v < self.version

    async def stale(self, event: HashComputed) -> bool:
        """Whether ``event``'s content has facts of an older version, or none
        (:mod:`eventsvc.derive.rederive`)."""
        return any(await self.needs(event.content_hash))

    def derive(
        self, event: HashComputed, seq: int, need_exif: bool, need_thumb: bool
    ) -> list[Event]:
        # Opened under the configured root, still the bytes that were hashed (fstat); the
        # decoder process reads this very descriptor.
        fd = self.roots.open_hashed(event, "analysis")
        try:
            return self._derive(event, fd, seq, need_exif, need_thumb)
        finally:
            os.close(fd)

    def _derive(
        self, event: HashComputed, fd: int, seq: int, need_exif: bool, need_thumb: bool
    ) -> list[Event]:
        out: list[Event] = []
        video = event.media_kind == "video"
        if need_exif:
            try:
                facts = self._facts(fd, video)
            except TransientError:
                raise  # no decoder process to be had right now: retried later
            except exif_mod.MediaError as exc:
                out.append(self._failed(event, seq, "exif", str(exc)))
            else:
                warnings = list(facts.warnings)
                sidecar = self._sidecar_date(event, warnings)
                fields = MediaFacts(
                    **{k: v for k, v in dataclasses.asdict(facts).items() if k != "warnings"},
                    xmp_sidecar_date=sidecar,
                )
                date, source = resolve_date_taken(
                    exif_original=facts.date_original,
                    exif_digitized=facts.date_digitized,
                    container_created=facts.creation_time,
                    file_name=None,
                    fs_times=None,
                    xmp=facts.xmp_date,
                    xmp_sidecar=sidecar,
                )
                out.append(
                    ExifExtracted(
                        content_hash=event.content_hash,
                        media_kind=event.media_kind,
                        fields=fields,
                        date_taken=date,
                        date_source=source,
                        warnings=warnings[:20],
                        causation=seq,
                    )
                )
        if need_thumb:
            try:
                raw = is_raw(event.path)
                if video and self.sandbox is None:
                    img = thumbs.video_frame(fd, 0.1)
                    sizes, (w, h), ph, dh = _store(img, self.thumb_root, event.content_hash)
                elif video:
                    ts = self.sandbox.thumbnails(fd, video=True)
                    sizes, (w, h), ph, dh = write_thumbnails(
                        ts, self.thumb_root, event.content_hash
                    )
                else:
                    sizes, (w, h), ph, dh = analyse_image(
                        fd, self.thumb_root, event.content_hash, raw=raw, sandbox=self.sandbox
                    )
            except TransientError:
                raise  # no decoder process to be had right now: retried later
            except DecodeFailed as exc:  # over a limit, or undecodable: recorded
                out.append(self._failed(event, seq, "thumbnail", f"cannot decode: {exc}"[:500]))
            except Exception as exc:  # undecodable: recorded, never retried forever
                if (full := out_of_space(exc)) is not None:  # a full disk: the stage waits
                    raise OutOfSpace(f"cannot write thumbnails: {full}") from exc
                reason = f"cannot decode for thumbnails: {type(exc).__name__}: {exc}"[:500]
                out.append(self._failed(event, seq, "thumbnail", reason))
            else:
                out.append(
                    ThumbnailReady(
                        content_hash=event.content_hash,
                        sizes=sizes,
                        width=w,
                        height=h,
                        phash=ph,
                        dhash=dh,
                        causation=seq,
                    )
                )
        return out

    def _sidecar_date(self, event: HashComputed, warnings: list[str]) -> str | None:
        """The date of the XMP sidecar next to the file (``<name>.xmp``, else
        ``<stem>.xmp``), opened under the same root as the file, at most
        :data:`MAX_SIDECAR` bytes, matched as text (never parsed as XML)."""
        try:
            rel = event.path_bytes()
        except ValueError:
            return None
        if rel is None:
            return None
        root = self.roots.root(event.library_id)
        stem, dot, _ = rel.rpartition(b".")
        names = [rel + b".xmp", rel + b".XMP"]
        if dot and b"/" not in rel[len(stem) :]:
            names += [stem + b".xmp", stem + b".XMP"]
        for name in names:
            try:
                fd = open_in_root(
                    root, name, library_id=event.library_id,
                    follow_symlinks=self.roots.follow_symlinks,
                )  # fmt: skip
            except FileNotFoundError:
                continue
            except (OSError, UnsafePath) as exc:
                warnings.append(f"xmp sidecar: {exc}"[:200])
                continue
            try:
                data = os.pread(fd, MAX_SIDECAR + 1, 0)
            except OSError as exc:
                warnings.append(f"xmp sidecar: {exc}"[:200])
                continue
            finally:
                os.close(fd)
            if len(data) > MAX_SIDECAR:
                warnings.append(f"xmp sidecar over {MAX_SIDECAR} bytes: ignored")
                continue
            date, _offset, problems = exif_mod.xmp_date(data.decode("utf-8", "replace"))
            warnings.extend(f"xmp sidecar: {p}" for p in problems)
            if date:
                return date
        return None

    def _facts(self, fd: int, video: bool) -> exif_mod.ExifFacts:
        if self.sandbox is None:  # tests only: parsed in this process
            path = fd_path(fd)
            return exif_mod.extract_video(path) if video else exif_mod.extract_image(path)
        return self.sandbox.exif(fd, video=video)

    def _failed(
        self, event: HashComputed, seq: int, operation: str, reason: str
    ) -> DerivationFailed:
        reason = f"{event.library_id}:{event.path or '?'}: {reason}"[:500]  # never a server path
        log.warning("%s failed for %s: %s", operation, event.content_hash[:12], reason)
        return DerivationFailed(
            stage="media",
            operation=operation,
            reason=reason,
            permanent=True,
            input_subject=event.subject(self.event_log.prefix),
            causation=seq,
            content_hash=event.content_hash,
            file_id=event.file_id,
            library_id=event.library_id,
        )
