"""Is a file whole? Cheap structural checks that catch cut-short media whose decoders
do not complain (libheif decodes a truncated HEIC as a flat picture; FFmpeg plays the
frames it has).

ISO-BMFF files (HEIF/HEIC/AVIF, MP4/MOV/3GP) are a chain of top-level boxes, each with
its length: a file cut anywhere inside a box leaves that box longer than what is left.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

__all__ = ["bmff_truncation", "bmff_truncation_at", "is_bmff"]

_MAX_BOXES = 100_000


def bmff_truncation(fh: BinaryIO) -> str | None:
    """Why the ISO-BMFF file ``fh`` (seekable, read from its start) is cut short, or None
    when every top-level box it declares is there. Trailing zero padding is tolerated."""
    size = fh.seek(0, io.SEEK_END)
    pos = 0
    for _ in range(_MAX_BOXES):
        if pos >= size:
            return None
        fh.seek(pos)
        head = fh.read(16)
        if len(head) < 8:
            return None if not head.strip(b"\x00") else f"{size - pos} stray bytes at the end"
        box = int.from_bytes(head[:4], "big")
        kind = head[4:8].decode("latin-1")
        if box == 1:
            if len(head) < 16:
                return f"box header of '{kind}' cut at byte {size}"
            box = int.from_bytes(head[8:16], "big")
        elif box == 0:
            return None  # "to the end of the file"
        if box < 8:
            if not head.strip(b"\x00"):
                return None  # zero padding
            return f"invalid box size {box} at byte {pos}"
        if pos + box > size:
            return f"'{kind}' box at byte {pos} needs {box} bytes, only {size - pos} are there"
        pos += box
    return None


def is_bmff(head: bytes) -> bool:
    """True if ``head`` (the file's first bytes) starts like an ISO-BMFF file."""
    return len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def bmff_truncation_at(path: str | os.PathLike[str]) -> str | None:
    """:func:`bmff_truncation` of the file at ``path`` when it is ISO-BMFF, else None."""
    with open(path, "rb") as fh:
        if not is_bmff(fh.read(16)):
            return None
        return bmff_truncation(fh)
