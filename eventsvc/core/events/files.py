"""The scanner's facts: locations seen and missing, library health."""

from __future__ import annotations

import base64
from typing import ClassVar, Literal

from eventsvc.core.events.base import Event

__all__ = ["FileMissing", "FileSeen", "LibraryOnline", "LibraryStale"]


class FileSeen(Event):
    """A location (file id: library id + relative path) with its size and mtime."""

    key_fields: ClassVar[tuple[str, ...]] = ("file_id",)
    type: Literal["FileSeen"] = "FileSeen"
    v: Literal[1] = 1
    library_id: str
    file_id: str
    path: str
    """Relative path, '/'-separated; non-UTF-8 bytes shown as U+FFFD (see raw_path)."""
    raw_path: str | None = None
    """Base64 of the raw relative path bytes when they are not valid UTF-8."""
    size: int
    mtime_ns: int
    media_kind: Literal["image", "video"]

    def path_bytes(self) -> bytes:
        if self.raw_path is not None:
            return base64.b64decode(self.raw_path)
        return self.path.encode("utf-8")


class FileMissing(Event):
    key_fields: ClassVar[tuple[str, ...]] = ("file_id",)
    type: Literal["FileMissing"] = "FileMissing"
    v: Literal[1] = 1
    library_id: str
    file_id: str
    path: str


class LibraryStale(Event):
    aggregate: ClassVar[str] = "library"
    key_fields: ClassVar[tuple[str, ...]] = ("library_id",)
    type: Literal["LibraryStale"] = "LibraryStale"
    v: Literal[1] = 1
    library_id: str
    name: str
    root: str
    reason: str


class LibraryOnline(Event):
    aggregate: ClassVar[str] = "library"
    key_fields: ClassVar[tuple[str, ...]] = ("library_id",)
    type: Literal["LibraryOnline"] = "LibraryOnline"
    v: Literal[1] = 1
    library_id: str
    name: str
    root: str
