"""The media deriver: HashComputed -> ExifExtracted + ThumbnailReady, once per content.

One decode serves the thumbnails and the perceptual hashes; EXIF is read without
decoding pixels. A file that cannot be decoded still gets its EXIF facts (and its
content hash, from the hasher): the thumbnail failure is recorded as DerivationFailed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path

import imagehash
from PIL import Image

from eventsvc.derive.roots import LibraryRoots
from eventsvc.events import DerivationFailed, Event, ExifExtracted, HashComputed, ThumbnailReady
from eventsvc.ids import RAW_EXTENSIONS
from eventsvc.log import EventLog
from eventsvc.media import exif as exif_mod
from eventsvc.media import thumbs
from eventsvc.media.dates import resolve_date_taken
from eventsvc.safe_open import fd_path

__all__ = ["MediaDeriver", "analyse_image"]

log = logging.getLogger(__name__)


def _image(path: str, max_edge: int, name: str | None = None) -> Image.Image:
    if os.path.splitext(name or path)[1].lower() in RAW_EXTENSIONS:
        preview = thumbs.embedded_preview(path)
        if preview is not None:
            return preview
    return thumbs.decode_for_thumbs(path, max_edge=max_edge)


def analyse_image(
    path: str, thumb_root: Path, content_hash: str, name: str | None = None
) -> tuple[dict[str, str], tuple[int, int], str, str]:
    """Thumbnails written atomically, upright size, pHash and dHash, from one decode
    (``name``: the file's name, for its extension, when ``path`` is a /proc/self/fd one)."""
    img = _image(path, max(thumbs.SIZES.values()), name)
    return _store(img, thumb_root, content_hash)


def _store(
    img: Image.Image, thumb_root: Path, content_hash: str
) -> tuple[dict[str, str], tuple[int, int], str, str]:
    size = img.size
    rendered = thumbs.render_thumbnails(img)
    rel: dict[str, str] = {}
    for name, data in rendered.items():
        target = thumbs.thumb_path(thumb_root, content_hash, name)
        thumbs.write_atomic(target, data)
        rel[name] = str(target.relative_to(thumb_root))
    gray = img.convert("L")
    return rel, size, str(imagehash.phash(gray)), str(imagehash.dhash(gray))


class MediaDeriver:
    """The handler of the ``media`` worker."""

    def __init__(self, roots: LibraryRoots, thumb_root: Path, event_log: EventLog) -> None:
        self.roots = roots
        self.thumb_root = Path(thumb_root)
        self.log = event_log

    async def __call__(self, event: Event, seq: int) -> list[Event]:
        if not isinstance(event, HashComputed):
            return []
        p, h = self.log.prefix, event.content_hash
        need_exif = not await self.log.has_subject(f"{p}.content.{h}.ExifExtracted")
        need_thumb = not await self.log.has_subject(f"{p}.content.{h}.ThumbnailReady")
        if not (need_exif or need_thumb):
            return []  # this content was derived from another location
        self.roots.root(event.library_id)  # not configured here: fail before a thread hop
        return await asyncio.to_thread(self.derive, event, seq, need_exif, need_thumb)

    def derive(
        self, event: HashComputed, seq: int, need_exif: bool, need_thumb: bool
    ) -> list[Event]:
        # Opened under the configured root; the decoders read the opened file (fd_path).
        fd = self.roots.open_hashed(event, "analysis")
        try:
            return self._derive(event, fd_path(fd), seq, need_exif, need_thumb)
        finally:
            os.close(fd)

    def _derive(
        self, event: HashComputed, path: str, seq: int, need_exif: bool, need_thumb: bool
    ) -> list[Event]:
        out: list[Event] = []
        video = event.media_kind == "video"
        if need_exif:
            try:
                facts = exif_mod.extract_video(path) if video else exif_mod.extract_image(path)
            except exif_mod.MediaError as exc:
                out.append(self._failed(event, seq, "exif", str(exc)))
            else:
                fields = {
                    k: v
                    for k, v in dataclasses.asdict(facts).items()
                    if k != "warnings" and v is not None
                }
                date, source = resolve_date_taken(
                    exif_original=facts.date_original,
                    exif_digitized=facts.date_digitized,
                    container_created=facts.creation_time,
                    file_name=None,
                    fs_times=None,
                )
                out.append(
                    ExifExtracted(
                        content_hash=event.content_hash,
                        media_kind=event.media_kind,
                        fields=fields,
                        date_taken=date,
                        date_source=source,
                        warnings=list(facts.warnings)[:20],
                        causation=seq,
                    )
                )
        if need_thumb:
            try:
                if video:
                    img = thumbs.video_frame(path, 0.1)
                    sizes, (w, h), ph, dh = _store(img, self.thumb_root, event.content_hash)
                else:
                    sizes, (w, h), ph, dh = analyse_image(
                        path, self.thumb_root, event.content_hash, event.path
                    )
            except Exception as exc:  # undecodable: recorded, never retried forever
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

    def _failed(self, event: HashComputed, seq: int, stage: str, reason: str) -> DerivationFailed:
        log.warning("%s failed for %s: %s", stage, event.content_hash[:12], reason)
        return DerivationFailed(
            stage=stage,
            reason=reason,
            permanent=True,
            input_subject=event.subject(self.log.prefix),
            causation=seq,
            content_hash=event.content_hash,
            file_id=event.file_id,
            library_id=event.library_id,
        )
