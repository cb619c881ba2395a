"""A small parser and validator for the VOD media playlists we write, and the RFC 6381
codec string of what they hold."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from eventsvc.core.layout import SERVABLE_RE

__all__ = ["MediaPlaylist", "PlaylistError", "codecs_of", "parse", "validate"]

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^",]*)')


class PlaylistError(ValueError):
    """Not a complete, valid VOD media playlist (or a segment it names is missing)."""


@dataclass
class MediaPlaylist:
    version: int | None = None
    target_duration: float | None = None
    playlist_type: str | None = None
    init: str | None = None
    segments: list[tuple[str, float]] = field(default_factory=list)
    ended: bool = False

    @property
    def duration(self) -> float:
        return sum(d for _, d in self.segments)

    @property
    def longest(self) -> float:
        return max((d for _, d in self.segments), default=0.0)


def parse(text: str) -> MediaPlaylist:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("does not start with #EXTM3U")
    pl = MediaPlaylist()
    pending: float | None = None
    for ln in lines[1:]:
        if ln.startswith("#EXTINF:"):
            try:
                pending = float(ln[8:].split(",", 1)[0])
            except ValueError as exc:
                raise PlaylistError(f"bad EXTINF {ln!r}") from exc
            if pending < 0:
                raise PlaylistError(f"negative EXTINF {ln!r}")
        elif ln.startswith("#EXT-X-TARGETDURATION:"):
            pl.target_duration = float(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-VERSION:"):
            pl.version = int(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-PLAYLIST-TYPE:"):
            pl.playlist_type = ln.split(":", 1)[1]
        elif ln.startswith("#EXT-X-MAP:"):
            attrs = {k: v.strip('"') for k, v in _ATTR.findall(ln.split(":", 1)[1])}
            pl.init = attrs.get("URI")
        elif ln == "#EXT-X-ENDLIST":
            pl.ended = True
        elif ln.startswith("#"):
            continue
        else:
            if pending is None:
                raise PlaylistError(f"segment {ln!r} without #EXTINF")
            pl.segments.append((ln, pending))
            pending = None
    return pl


def validate(directory: Path, name: str = "index.m3u8") -> MediaPlaylist:
    """The parsed playlist if it is a complete VOD playlist that plays (a positive
    duration, every segment lasting and non-empty) whose every file exists here under a
    name we write; PlaylistError otherwise."""
    try:
        text = (Path(directory) / name).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaylistError(f"cannot read the playlist: {exc}") from exc
    pl = parse(text)
    if not pl.ended:
        raise PlaylistError("no #EXT-X-ENDLIST (incomplete)")
    if not pl.segments:
        raise PlaylistError("no segments")
    if pl.target_duration is None:
        raise PlaylistError("no #EXT-X-TARGETDURATION")
    names = [s for s, _ in pl.segments] + ([pl.init] if pl.init else [])
    for seg in names:
        if not SERVABLE_RE.fullmatch(seg):
            raise PlaylistError(f"unexpected segment name {seg!r}")
        p = Path(directory) / seg
        if not p.is_file() or os.path.getsize(p) == 0:
            raise PlaylistError(f"segment {seg} missing or empty")
    if pl.duration <= 0:  # (a clip under 0.5 s has #EXT-X-TARGETDURATION:0 and plays)
        raise PlaylistError(f"plays for {pl.duration:g} s")
    for seg, dur in pl.segments:
        if dur <= 0:
            raise PlaylistError(f"{seg} lasts {dur} s")
        if dur > pl.target_duration + 0.5:
            raise PlaylistError(f"{seg} lasts {dur} s > target duration {pl.target_duration}")
    return pl


def codecs_of(path: Path) -> tuple[str, int | None, int | None]:
    """RFC 6381 codecs (``avc1.64001f,mp4a.40.2``) and the coded video size of an fMP4
    init segment (header only: no frame is decoded)."""
    import av

    out: list[str] = []
    size: tuple[int | None, int | None] = (None, None)
    opts = {"probesize": "32", "analyzeduration": "0"}
    with av.open(os.fspath(path), metadata_errors="ignore", options=opts) as c:
        for s in c.streams:
            cc = s.codec_context
            if cc is None:
                continue
            if s.type == "video" and size == (None, None):
                size = (cc.width or None, cc.height or None)
            if s.type == "video" and cc.name == "h264":
                ex = bytes(cc.extradata or b"")
                if len(ex) >= 4 and ex[0] == 1:  # avcC: profile, constraints, level
                    out.append(f"avc1.{ex[1]:02x}{ex[2]:02x}{ex[3]:02x}")
                else:
                    out.append("avc1")
            elif s.type == "audio" and cc.name == "aac":
                out.append("mp4a.40.2")
            else:
                out.append(cc.name)
    return ",".join(out), size[0], size[1]
