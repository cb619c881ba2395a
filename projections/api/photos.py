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

from eventsvc.core.ids import HASH_RE
from eventsvc.core.roots import LibraryRoots
from projections.api import db, geo, rows
from projections.api.context import ApiContext, Ctx
from projections.api.errors import bad_parameter, error_responses
from projections.api.filters import Filters, Query, filter_dependencies
from projections.api.paging import decode_cursor, encode_cursor
from projections.api.params import CURSOR_PATTERN, HASH_PATTERN, binary_operation
from projections.api.redact import redacted
from projections.api.schemas import PhotoDetail, PhotoPage, PhotoPerson
from projections.api.sendfile import (
    BYTES_RESPONSES,
    content_disposition,
    guess_media_type,
    open_location,
    rel_bytes,
    send_file,
)

__all__ = ["PhotosController", "check_hash"]

Sort = Literal["path", "-path", "mtime", "-mtime", "taken", "-taken"]
_COLUMN = {"path": "path", "mtime": "mtime_ns", "taken": "date_taken"}
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "path": (str,), "mtime": (int,), "taken": (str, type(None)),
}  # fmt: skip
_IMMUTABLE = "max-age=31536000, immutable"


def check_hash(content_hash: str, name: str = "content_hash") -> str:
    if not HASH_RE.fullmatch(content_hash):
        raise bad_parameter(name, "must be 64 lowercase hex characters")
    return content_hash


def _after(cursor: str, sort: Sort) -> tuple[Any, str]:
    data = decode_cursor(cursor)
    key, file_id = data.get("k"), data.get("id")
    if data.get("s") != sort:
        raise bad_parameter("cursor", f"it was made for sort={data.get('s')!r}, not {sort!r}")
    if type(key) not in _KEY_TYPES[sort.lstrip("-")] or not isinstance(file_id, str):
        raise bad_parameter("cursor", "not a cursor handed out by this API")
    return key, file_id


def _select(q: Query, extra: list[str], extra_params: list[Any], order: str,
            limit: int) -> tuple[str, list[Any]]:  # fmt: skip
    where = q.where + extra
    sql = (
        f"SELECT {rows.PHOTO_COLUMNS} FROM files AS f{rows.PHOTO_JOINS}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {order} LIMIT ?"
    )
    return sql, [*q.params, *extra_params, limit]


def list_rows(
    conn: sqlite3.Connection, q: Query, sort: Sort, after: tuple[Any, str] | None, limit: int
) -> list[sqlite3.Row]:
    """Up to ``limit`` rows in ``sort`` order after the cursor position ``after``."""
    if q.near is not None:
        conn.create_function("haversine_km", 4, geo.haversine_km, deterministic=True)
    desc = sort.startswith("-")
    direction, cmp = ("DESC", "<") if desc else ("ASC", ">")
    col = "f." + _COLUMN[sort.lstrip("-")]
    if sort.lstrip("-") != "taken":
        extra, extra_params = [], []
        if after is not None:
            extra, extra_params = [f"({col}, f.file_id) {cmp} (?, ?)"], list(after)
        sql, params = _select(
            q, extra, extra_params, f"{col} {direction}, f.file_id {direction}", limit
        )
        return conn.execute(sql, params).fetchall()
    # By date taken, rows without one last: two index-ordered passes over files_by_taken.
    found: list[sqlite3.Row] = []
    if after is None or after[0] is not None:
        extra = ["f.date_taken IS NOT NULL"]
        extra_params: list[Any] = []
        if after is not None:
            extra.append(f"(f.date_taken, f.file_id) {cmp} (?, ?)")
            extra_params = list(after)
        sql, params = _select(
            q, extra, extra_params, f"f.date_taken {direction}, f.file_id {direction}", limit
        )
        found = conn.execute(sql, params).fetchall()
    if len(found) < limit:
        extra = ["f.date_taken IS NULL"]
        extra_params = []
        if after is not None and after[0] is None:
            extra.append(f"f.file_id {cmp} ?")
            extra_params = [after[1]]
        sql, params = _select(q, extra, extra_params, f"f.file_id {direction}", limit - len(found))
        found += conn.execute(sql, params).fetchall()
    return found


# ------------------------------------------------------------------ one content


def _detail(content_hash: str, conn: sqlite3.Connection) -> PhotoDetail | None:
    # Perceptual hashes and dimensions are the media deriver's (ThumbnailReady); while
    # there are none, its latest thumbnail failure says why.
    content = conn.execute(
        "SELECT c.size, c.media_kind, c.phash, c.dhash, c.width, c.height,"
        " CASE WHEN c.phash IS NULL THEN (SELECT f.reason FROM failures AS f"
        "  WHERE f.stage = 'thumbnail' AND f.content_hash = c.content_hash"
        "  ORDER BY f.seq DESC LIMIT 1) END AS decode_error"
        " FROM content AS c WHERE c.content_hash = ?",
        (content_hash,),
    ).fetchone()
    locs = conn.execute(
        f"SELECT {rows.LOCATION_COLUMNS} FROM files WHERE content_hash = ?"
        " ORDER BY library_id, path, file_id",
        (content_hash,),
    ).fetchall()
    if content is None and not locs:
        return None
    meta: dict[str, Any] = (
        dict(content)
        if content is not None
        else {"size": locs[0]["size"], "media_kind": locs[0]["media_kind"], "phash": None,
              "dhash": None, "width": None, "height": None, "decode_error": None}
    )  # fmt: skip
    media = conn.execute(
        f"SELECT {', '.join(rows.MEDIA_COLUMNS)} FROM media WHERE content_hash = ?",
        (content_hash,),
    ).fetchone()
    thumbs = conn.execute(
        "SELECT sizes FROM thumbnails WHERE content_hash = ?", (content_hash,)
    ).fetchone()
    people = conn.execute(
        "SELECT fc.person_id, p.name, fc.face_id FROM faces AS fc"
        " JOIN people AS p ON p.person_id = fc.person_id"
        " WHERE fc.content_hash = ? AND fc.rejected = 0 AND p.hidden = 0 ORDER BY fc.face_id",
        (content_hash,),
    ).fetchall()
    if media is not None:  # the same display size as /photos
        meta["width"], meta["height"] = rows.upright(
            (meta["width"], meta["height"]), (media["width"], media["height"]),
            media["orientation"],
        )  # fmt: skip
    return PhotoDetail(
        content_hash=content_hash,
        **meta,
        locations=[rows.location(r) for r in locs],
        exif=rows.exif(media),
        thumbnails=rows.thumbnail_urls(content_hash, thumbs["sizes"] if thumbs else None),
        tags=rows.person_tags(conn, [content_hash]).get(content_hash, []),
        people=[PhotoPerson(**dict(r)) for r in people],
    )


def _known(conn: sqlite3.Connection, content_hash: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM content WHERE content_hash = ?", (content_hash,)).fetchone()
        or conn.execute("SELECT 1 FROM files WHERE content_hash = ?", (content_hash,)).fetchone()
    ) is not None


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
    if not _known(conn, content_hash):
        raise NotFoundException(detail=f"unknown content_hash {content_hash}")
    failure = conn.execute(
        "SELECT reason FROM failures WHERE stage = 'thumbnail' AND content_hash = ?"
        " ORDER BY seq DESC LIMIT 1",
        (content_hash,),
    ).fetchone()
    if failure is not None:
        raise NotFoundException(detail=f"thumbnail for {content_hash} failed: {failure['reason']}")
    raise NotFoundException(detail=f"thumbnail for {content_hash} is pending (not made yet)")


def _open_thumbnail(root: Path, rel: str) -> tuple[BinaryIO, os.stat_result]:
    """Open ``root / rel`` only if it resolves inside ``root``."""
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
    if not found and not _known(conn, content_hash):
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
        after = _after(cursor, sort) if cursor is not None else None

        def page(c: sqlite3.Connection) -> tuple[list[sqlite3.Row], dict[str, list[str]]]:
            found = list_rows(c, q, sort, after, limit + 1)
            return found, rows.person_tags(c, (r["content_hash"] for r in found[:limit]))

        found, tags = await db.read(ctx.settings.readmodel_dir, page, ([], {}))
        items = [rows.photo(r, tags.get(r["content_hash"], [])) for r in found[:limit]]
        nxt = None
        if len(found) > limit:
            last = found[limit - 1]
            key = last[_COLUMN[sort.lstrip("-")]]
            nxt = encode_cursor({"s": sort, "k": key, "id": last["file_id"]})
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
            lambda c: redacted(ctx.settings, c, _detail(content_hash, c), "decode_error"),
            None,
        )
        if found is None:
            raise NotFoundException(detail=f"unknown content_hash {content_hash}")
        return found

    @get(
        "/{content_hash:str}/thumbnail",
        summary="A thumbnail",
        description="The content's JPEG thumbnail, with an ETag and year-long cache headers "
        "(thumbnails are content-addressed). 404 says whether the content is unknown or "
        "the thumbnail is pending or failed. Byte ranges are honoured.",
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
        f, st = await asyncio.to_thread(_open_thumbnail, ctx.settings.thumbs_dir, rel)
        etag = f'"{content_hash[:32]}-{size}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        return send_file(
            request, f, size=st.st_size, media_type="image/jpeg", etag=etag,
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
