"""Serving files with HTTP range requests, ETags and cache headers.

Litestar 2.25's ``File`` response sends whole files only (no ``Range`` handling), so
this is a small range-aware streaming response: one ``bytes=`` range (first-last,
first-, or -suffix) answers 206 with ``Content-Range``; an unsatisfiable one 416 with
``Content-Range: bytes */size``; several ranges, or a syntactically invalid header, are
ignored and the whole file is sent (RFC 9110 allows both). ``If-None-Match`` answers
304, ``If-Range`` with another ETag sends the whole file. The file is opened by
:func:`open_location` (under its *configured* library root only, through
:mod:`eventsvc.core.safe_open`) and read with ``os.pread`` in a worker thread, chunk by chunk.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import os
import re
from collections.abc import AsyncIterator
from typing import Any, BinaryIO
from urllib.parse import quote

from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Stream

from eventsvc.core.errors import ChangedSinceHashed, UnsafePath
from eventsvc.core.roots import LibraryRoots, open_unchanged
from projections.api.schemas import ErrorDetail

__all__ = [
    "BYTES_RESPONSES",
    "CHUNK",
    "content_disposition",
    "guess_media_type",
    "open_location",
    "parse_range",
    "rel_bytes",
    "send_file",
]

BYTES_RESPONSES = {
    206: ResponseSpec(None, description="The requested byte range (Content-Range says which)."),
    304: ResponseSpec(None, description="If-None-Match matched the ETag: nothing sent."),
    416: ResponseSpec(
        ErrorDetail, description="The range is beyond the end; Content-Range: bytes */size."
    ),
}
"""The answers of a file sent by :func:`send_file` besides 200 (for the OpenAPI)."""

CHUNK = 256 * 1024
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_EXTRA_TYPES = {
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
    ".webp": "image/webp",
    ".dng": "image/x-adobe-dng",
    ".cr2": "image/x-canon-cr2",
    ".cr3": "image/x-canon-cr3",
    ".nef": "image/x-nikon-nef",
    ".arw": "image/x-sony-arw",
    ".orf": "image/x-olympus-orf",
    ".rw2": "image/x-panasonic-rw2",
    ".raf": "image/x-fuji-raf",
    ".mts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".3gp": "video/3gpp",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
}


class Unsatisfiable(Exception):
    """A well-formed range that selects no byte of the file."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte positions, inclusive, for one ``bytes=`` range; None to send it all.

    Raises :class:`Unsatisfiable` for a valid range beyond the end (or any on an empty file).
    """
    if not header:
        return None
    m = _RANGE.match(header)
    if m is None:  # several ranges, other units, garbage: ignore, send the whole file
        return None
    first_s, last_s = m.groups()
    if not first_s and not last_s:
        return None
    if not first_s:  # suffix: the last N bytes
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if last_s and last < first:
        return None  # invalid: ignored
    if first >= size:
        raise Unsatisfiable
    return first, min(last, size - 1)


def guess_media_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    if ext in _EXTRA_TYPES:
        return _EXTRA_TYPES[ext]
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def content_disposition(filename: str, kind: str = "inline") -> str:
    """``inline; filename="..."`` with an ASCII fallback and RFC 5987 ``filename*``."""
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_" for ch in filename)
    value = f'{kind}; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def open_location(
    roots: LibraryRoots | None, library_id: str, rel: bytes, size: int, mtime_ns: int
) -> BinaryIO | str:
    """The opened file of a location (blocking I/O: call it in a thread), or why it cannot
    be served. Only the root *configured* for the library on this host is used, never the
    one the log names; the file must still have the size and mtime it was hashed at."""
    root = roots(library_id) if roots is not None else None
    if root is None:
        return f"library {library_id} is not configured on this host"
    try:
        fd = open_unchanged(
            root, rel, library_id=library_id, size=size, mtime_ns=mtime_ns,
            follow_symlinks=roots.follow_symlinks,
        )  # fmt: skip
    except UnsafePath as exc:
        if exc.kind in ("escape", "absolute"):
            return "it resolves outside its library root; refused"
        return exc.why
    except ChangedSinceHashed:
        return "it changed since it was hashed (size or mtime differ)"
    except (OSError, ValueError) as exc:  # a NUL byte, a vanished file, no permission
        return f"cannot open it ({getattr(exc, 'strerror', None) or type(exc).__name__})"
    return os.fdopen(fd, "rb", buffering=0)


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison (If-None-Match)."""
    if header.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in header.split(","))


async def _chunks(f: BinaryIO, start: int, length: int) -> AsyncIterator[bytes]:
    fd = f.fileno()
    try:
        offset, end = start, start + length
        while offset < end:
            data = await asyncio.to_thread(os.pread, fd, min(CHUNK, end - offset), offset)
            if not data:  # the file shrank under us: the client sees a short body
                return
            offset += len(data)
            yield data
    finally:
        f.close()


def send_file(
    request: Request[Any, Any, Any],
    f: BinaryIO,
    *,
    size: int,
    media_type: str,
    etag: str,
    headers: dict[str, str],
) -> Response[Any]:
    """The response for an open file of ``size`` bytes (it is closed when done)."""
    base = {**headers, "ETag": etag, "Accept-Ranges": "bytes"}
    inm = request.headers.get("if-none-match")
    if inm is not None and _etag_matches(inm, etag):
        f.close()
        return Response(content=b"", status_code=304, headers=base)
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header and if_range is not None and if_range.strip() != etag:
        range_header = None  # the client's partial copy is of other bytes: send it all
    try:
        span = parse_range(range_header, size)
    except Unsatisfiable:
        f.close()
        return Response(
            content={"detail": f"range {range_header!r} not satisfiable: size is {size}"},
            status_code=416,
            media_type="application/json",
            headers={**base, "Content-Range": f"bytes */{size}"},
        )
    if span is None:
        first, length, status = 0, size, 200
    else:
        first, length, status = span[0], span[1] - span[0] + 1, 206
        base["Content-Range"] = f"bytes {span[0]}-{span[1]}/{size}"
    base["Content-Length"] = str(length)
    return Stream(
        content=_chunks(f, first, length),
        status_code=status,
        media_type=media_type,
        headers=base,
    )


def rel_bytes(row: Any) -> bytes:
    """The path of a location row (``path``, ``raw_path``) under its root, as the bytes
    the file system has: ``raw_path`` (base64) when the name is not UTF-8."""
    if row["raw_path"]:
        return base64.b64decode(row["raw_path"])
    return str(row["path"]).encode("utf-8")
