"""Where playlists live: ``<video_root>/<2-hex shard>/<64-hex blake3>/``, and the exact
shapes (final and temporary directories, file names) anything may delete or serve."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

__all__ = [
    "HASH_DIR_RE",
    "PLAYLIST",
    "POSTER",
    "PREVIEW",
    "SERVABLE_RE",
    "SHARD_RE",
    "TMP_RE",
    "is_hash_dir",
    "is_shard",
    "is_tmp_dir",
    "playlist_dir",
    "shard_of",
    "tmp_dir",
]

PLAYLIST = "index.m3u8"
POSTER = "poster.jpg"
PREVIEW = "preview.mp4"
SHARD_RE = re.compile(r"^[0-9a-f]{2}$")
HASH_DIR_RE = re.compile(r"^[0-9a-f]{64}$")
TMP_RE = re.compile(r"^\.tmp-([0-9a-f]{64})-[0-9a-f]{12}$")
"""A job's work directory, next to the target in the same shard (same file system)."""
SERVABLE_RE = re.compile(
    r"^(?:index\.m3u8|init\.mp4|seg_[0-9]{5}\.(?:m4s|ts)|poster\.jpg|preview\.mp4)$"
)
"""Every file name a playlist directory holds; nothing else is ever served."""


def shard_of(content_hash: str) -> str:
    return content_hash[:2]


def playlist_dir(root: Path, content_hash: str) -> Path:
    if not HASH_DIR_RE.fullmatch(content_hash):
        raise ValueError(f"not a content hash: {content_hash!r}")
    return Path(root) / shard_of(content_hash) / content_hash


def tmp_dir(root: Path, content_hash: str) -> Path:
    """A fresh (not yet created) work directory for one job on ``content_hash``."""
    return playlist_dir(root, content_hash).parent / f".tmp-{content_hash}-{secrets.token_hex(6)}"


def is_shard(name: str) -> bool:
    return SHARD_RE.fullmatch(name) is not None


def is_hash_dir(shard: str, name: str) -> bool:
    """A final playlist directory's name inside ``shard`` (the hash must start with it)."""
    return is_shard(shard) and HASH_DIR_RE.fullmatch(name) is not None and name[:2] == shard


def is_tmp_dir(shard: str, name: str) -> bool:
    m = TMP_RE.fullmatch(name)
    return is_shard(shard) and m is not None and m.group(1)[:2] == shard
