"""GET /photos (filtered, sorted, keyset-paged), GET /photos/{content_hash}, and the
content's bytes: /photos/{content_hash}/thumbnail and /photos/{content_hash}/original."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi.spec import Example
from litestar.params import Parameter

from eventsvc.core.roots import LibraryRoots
from eventsvc.core.thumb_layout import MEDIA_TYPE as THUMB_MEDIA_TYPE
from eventsvc.core.thumb_layout import parse_thumb_rel
from projections.api import db
from projections.api.context import ApiContext, Ctx
from projections.api.errors import error_responses
from projections.api.filters import Filters, filter_dependencies
from projections.api.params import CURSOR_PATTERN, HASH_PATTERN, binary_operation
from projections.api.photo_queries import (
    Sort,
    after_cursor,
    check_hash,
    is_known,
    photo_detail,
    photo_page,
)
from projections.api.redact import redacted
from projections.api.schemas import PhotoDetail, PhotoPage
from projections.api.sendfile import (
    BYTES_RESPONSES,
    content_disposition,
    guess_media_type,
    open_location,
    rel_bytes,
    send_file,
)

__all__ = ["PhotosController", "check_hash"]

_IMMUTABLE = "max-age=31536000, immutable"


def _cache_control(ctx: ApiContext) -> str:
    # Content-addressed bytes never change; behind a token, shared caches keep out.
    return ("private, " if ctx.settings.api_has_tokens else "public, ") + _IMMUTABLE


def _thumbnail_lookup(conn: sqlite3.Connection, content_hash: str, size: str) -> str:
    """The thumbnail's path under the thumbnail root; NotFoundException saying why not."""
    row = conn.execute(
        "SELECT sizes FROM thumbnails WHERE content_hash = ?", (content_hash,)
    ).fetchone()
    if row is not None:
        try:
            sizes = json.loads(row["sizes"])
        except ValueError:
            sizes = {}
        rel = sizes.get(size) if isinstance(sizes, dict) else None
        if not isinstance(rel, str) or not rel:
            have = ", ".join(sorted(sizes)) if isinstance(sizes, dict) else ""
            raise NotFoundException(
                detail=f"no {size!r} thumbnail for {content_hash} (has: {have or 'none'})"
            )
        return rel
    if not is_known(conn, content_hash):
        raise NotFoundException(detail=f"unknown content_hash {content_hash}")
    failure = conn.execute(
        "SELECT reason FROM failures"
        " WHERE stage = 'media' AND operation = 'thumbnail' AND content_hash = ?"
        " ORDER BY seq DESC LIMIT 1",
        (content_hash,),
    ).fetchone()
    if failure is not None:
        raise NotFoundException(detail=f"thumbnail for {content_hash} failed: {failure['reason']}")
    raise NotFoundException(detail=f"thumbnail for {content_hash} is pending (not made yet)")


def _open_thumbnail(root: Path, rel: str, content_hash: str) -> tuple[BinaryIO, os.stat_result]:
    """Open ``root / rel`` only if ``rel`` has one of the exact shapes the deriver writes
    for ``content_hash`` (:mod:`eventsvc.core.thumb_layout`) and resolves inside ``root``."""
    parsed = parse_thumb_rel(rel)
    if parsed is None or parsed[0] != content_hash:
        raise NotFoundException(
            detail="thumbnail path is not a thumbnail of this content (outside the thumbnail "
            "store's shapes); refused"
        )
    base = root.resolve()
    try:
        target = (base / rel).resolve()
    except (OSError, ValueError) as exc:  # a NUL byte, a symlink loop
        raise NotFoundException(detail=f"thumbnail path unusable: {exc}") from exc
    if target == base or not target.is_relative_to(base):
        raise NotFoundException(detail="thumbnail path is outside the thumbnail store; refused")
    try:
        f = open(target, "rb", buffering=0)  # closed by the response
    except (OSError, ValueError) as exc:
        raise NotFoundException(detail=f"thumbnail file missing from the store: {rel}") from exc
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise NotFoundException(detail=f"thumbnail is not a file: {rel}")
    return f, st


@dataclass
class _Live:
    file: BinaryIO
    size: int
    name: str


def _open_location(row: sqlite3.Row, roots: LibraryRoots | None) -> BinaryIO | str:
    """The opened file of a location, or why it cannot be served (its configured root
    only: see ``sendfile.open_location``)."""
    try:
        rel = rel_bytes(row)
    except ValueError as exc:  # undecodable base64
        return f"its path is unusable ({exc})"
    return open_location(roots, row["library_id"], rel, row["size"], row["mtime_ns"])


def _find_live(
    found: list[sqlite3.Row], content_hash: str, roots: LibraryRoots | None = None
) -> _Live:
    reasons = []
    for row in found:
        opened = _open_location(row, roots)
        if not isinstance(opened, str):
            return _Live(opened, row["size"], str(row["path"]).rsplit("/", 1)[-1])
        reasons.append(f"{row['library_id']}:{row['path']}: {opened}")
    detail = f"no live location for {content_hash}"
    if reasons:
        more = f"; and {len(reasons) - 5} more" if len(reasons) > 5 else ""
        detail += f" ({'; '.join(reasons[:5])}{more})"
    raise NotFoundException(detail=detail)


def _original_rows(conn: sqlite3.Connection, content_hash: str) -> list[sqlite3.Row] | None:
    found = conn.execute(
        "SELECT f.library_id, f.path, f.raw_path, f.size, f.mtime_ns, l.root"
        " FROM files AS f LEFT JOIN libraries AS l USING (library_id)"
        " WHERE f.content_hash = ? ORDER BY f.library_id, f.path, f.file_id",
        (content_hash,),
    ).fetchall()
    if not found and not is_known(conn, content_hash):
        return None
    return found


class PhotosController(Controller):
    path = "/photos"
    tags = ("photos",)

    @get(
        "/",
        summary="File locations",
        description="Live files, filtered and sorted, paged with an opaque keyset cursor. "
        "Filters combine with AND. Camera and GPS filters use the metadata extracted from "
        "the file's content, so they match only files already hashed and analysed.",
        responses=error_responses(400),
        dependencies=filter_dependencies(),
    )
    async def list_photos(
        self,
        ctx: Ctx,
        filters: Filters,
        hashed: Annotated[
            bool | None, Parameter(description="Only files whose hash is (not) known.")
        ] = None,
        sort: Annotated[
            Sort,
            Parameter(
                description="Order: path, mtime or taken (date_taken; files without one "
                "last), '-' for descending."
            ),
        ] = "path",
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size.")] = 100,
        cursor: Annotated[
            str | None,
            Parameter(description="The `next` of the previous page.", pattern=CURSOR_PATTERN),
        ] = None,
    ) -> PhotoPage:
        q = filters
        if hashed is not None:
            q.add(f"f.content_hash IS {'NOT ' if hashed else ''}NULL")
        after = after_cursor(cursor, sort) if cursor is not None else None

        items, nxt = await db.read(
            ctx.settings.readmodel_dir, lambda c: photo_page(c, q, sort, after, limit), ([], None)
        )
        return PhotoPage(items=items, next=nxt)

    @get(
        "/{content_hash:str}",
        summary="One content",
        description="A content's metadata, every live location holding it (each with its "
        "date taken), what was read from its bytes and its thumbnails.",
        responses=error_responses(400, 404),
    )
    async def get_photo(
        self,
        ctx: Ctx,
        content_hash: Annotated[
            str,
            Parameter(
                description="BLAKE3 hex of the content.",
                pattern=HASH_PATTERN,
                examples=[Example(value="0" * 64)],
            ),
        ],
    ) -> PhotoDetail:
        check_hash(content_hash)
        found = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: redacted(ctx.settings, c, photo_detail(content_hash, c), "decode_error"),
            None,
        )
        if found is None:
            raise NotFoundException(detail=f"unknown content_hash {content_hash}")
        return found

    @get(
        "/{content_hash:str}/thumbnail",
        summary="A thumbnail",
        description="The content's JPEG thumbnail, with an ETag and year-long cache headers "
        "(thumbnails are content-addressed). An image no larger than the small size has one "
        "file, served for both sizes; one smaller than the large size is 'large' at its own "
        "size. 404 says whether the content is unknown or the thumbnail is pending or "
        "failed. Byte ranges are honoured.",
        media_type="image/jpeg",
        response_description="The thumbnail (image/jpeg).",
        responses={**error_responses(400, 404), **BYTES_RESPONSES},
        operation_class=binary_operation(["image/jpeg"]),
    )
    async def get_thumbnail(
        self,
        ctx: Ctx,
        request: Request[Any, Any, Any],
        content_hash: Annotated[
            str, Parameter(description="BLAKE3 hex of the content.", pattern=HASH_PATTERN)
        ],
        size: Annotated[
            Literal["small", "large"],
            Parameter(description="'small' (256 px edge) or 'large' (1440 px edge)."),
        ] = "small",
    ) -> Response[Any]:
        check_hash(content_hash)
        rel = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: _thumbnail_lookup(c, content_hash, size),
            None,
        )
        if rel is None:  # no read model yet
            raise NotFoundException(detail=f"unknown content_hash {content_hash}")
        f, st = await asyncio.to_thread(_open_thumbnail, ctx.settings.thumbs_dir, rel, content_hash)
        etag = f'"{content_hash[:32]}-{size}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        return send_file(
            request, f, size=st.st_size, media_type=THUMB_MEDIA_TYPE, etag=etag,
            headers={"Cache-Control": _cache_control(ctx)},
        )  # fmt: skip

    @get(
        "/{content_hash:str}/original",
        summary="The original file",
        description="Streams the content's bytes from its first live location (the file "
        "exists inside its library root, symlinks resolved, with the size and mtime it "
        "was hashed at). Supports single byte ranges (206, 416), If-None-Match and "
        "If-Range; the ETag is the content hash.",
        response_description="The file, with a content type guessed from its name "
        "(image/..., video/..., else application/octet-stream).",
        responses={**error_responses(400, 404), **BYTES_RESPONSES},
        operation_class=binary_operation(["image/*", "video/*", "application/octet-stream"]),
    )
    async def get_original(
        self,
        ctx: Ctx,
        request: Request[Any, Any, Any],
        content_hash: Annotated[
            str, Parameter(description="BLAKE3 hex of the content.", pattern=HASH_PATTERN)
        ],
    ) -> Response[Any]:
        check_hash(content_hash)
        found = await db.read(
            ctx.settings.readmodel_dir, lambda c: _original_rows(c, content_hash), None
        )
        if found is None:
            raise NotFoundException(detail=f"unknown content_hash {content_hash}")
        live = await asyncio.to_thread(_find_live, found, content_hash, ctx.roots)
        return send_file(
            request, live.file, size=live.size, media_type=guess_media_type(live.name),
            etag=f'"{content_hash}"',
            headers={"Cache-Control": _cache_control(ctx),
                     "Content-Disposition": content_disposition(live.name)},
        )  # fmt: skip
