"""GET /photos (filtered, sorted, keyset-paged) and GET /photos/{content_hash}."""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any, Literal

from litestar import Controller, get
from litestar.exceptions import NotFoundException
from litestar.openapi.spec import Example
from litestar.params import Parameter

from eventsvc.ids import HASH_RE
from projections.api import db, rows
from projections.api.context import Ctx
from projections.api.errors import bad_parameter, error_responses
from projections.api.paging import decode_cursor, encode_cursor
from projections.api.schemas import PhotoDetail, PhotoPage

__all__ = ["PhotosController", "check_hash"]

Sort = Literal["path", "-path", "mtime", "-mtime"]
_COLUMN = {"path": "path", "mtime": "mtime_ns"}


def check_hash(content_hash: str) -> str:
    if not HASH_RE.fullmatch(content_hash):
        raise bad_parameter("content_hash", "must be 64 lowercase hex characters")
    return content_hash


def _prefix_upper(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1 if not 0xD800 <= last + 1 <= 0xDFFF else 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


def _after(cursor: str, sort: Sort) -> tuple[Any, str]:
    data = decode_cursor(cursor)
    key, file_id = data.get("k"), data.get("id")
    want = str if sort.lstrip("-") == "path" else int
    if data.get("s") != sort:
        raise bad_parameter("cursor", f"it was made for sort={data.get('s')!r}, not {sort!r}")
    if type(key) is not want or not isinstance(file_id, str):
        raise bad_parameter("cursor", "not a cursor handed out by this API")
    return key, file_id


def _list_sql(
    library: str | None, media_kind: str | None, path_prefix: str | None,
    hashed: bool | None, sort: Sort, after: tuple[Any, str] | None, limit: int,
) -> tuple[str, list[Any]]:  # fmt: skip
    where: list[str] = []
    params: list[Any] = []
    if library is not None:
        where.append("library_id = ?")
        params.append(library)
    if media_kind is not None:
        where.append("media_kind = ?")
        params.append(media_kind)
    if path_prefix:
        where.append("path >= ?")
        params.append(path_prefix)
        upper = _prefix_upper(path_prefix)
        if upper is not None:
            where.append("path < ?")
            params.append(upper)
    if hashed is not None:
        where.append(f"content_hash IS {'NOT ' if hashed else ''}NULL")
    col = _COLUMN[sort.lstrip("-")]
    desc = sort.startswith("-")
    if after is not None:
        where.append(f"({col}, file_id) {'<' if desc else '>'} (?, ?)")
        params.extend(after)
    direction = "DESC" if desc else "ASC"
    sql = (
        f"SELECT {rows.LOCATION_COLUMNS} FROM files"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {col} {direction}, file_id {direction} LIMIT ?"
    )
    params.append(limit)
    return sql, params


def _detail(content_hash: str, conn: sqlite3.Connection) -> PhotoDetail | None:
    content = conn.execute(
        "SELECT size, media_kind, phash, dhash, width, height, decode_error"
        " FROM content WHERE content_hash = ?",
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
    return PhotoDetail(
        content_hash=content_hash, **meta, locations=[rows.location(r) for r in locs]
    )


class PhotosController(Controller):
    path = "/photos"
    tags = ("photos",)

    @get(
        "/",
        summary="File locations",
        description="Live files, filtered and sorted, paged with an opaque keyset cursor.",
        responses=error_responses(400),
    )
    async def list_photos(
        self,
        ctx: Ctx,
        library: Annotated[str | None, Parameter(description="Only this library id.")] = None,
        media_kind: Annotated[
            Literal["image", "video"] | None, Parameter(description="Only images or videos.")
        ] = None,
        path_prefix: Annotated[
            str | None, Parameter(description="Only paths starting with this string.")
        ] = None,
        hashed: Annotated[
            bool | None, Parameter(description="Only files whose hash is (not) known.")
        ] = None,
        sort: Annotated[
            Sort, Parameter(description="Order: path or mtime, '-' for descending.")
        ] = "path",
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size.")] = 100,
        cursor: Annotated[
            str | None, Parameter(description="The `next` of the previous page.")
        ] = None,
    ) -> PhotoPage:
        after = _after(cursor, sort) if cursor is not None else None
        sql, params = _list_sql(library, media_kind, path_prefix, hashed, sort, after, limit + 1)
        found = await db.read(
            ctx.settings.readmodel_dir, lambda c: c.execute(sql, params).fetchall(), []
        )
        items = [rows.photo(r) for r in found[:limit]]
        nxt = None
        if len(found) > limit:
            last = found[limit - 1]
            key = last[_COLUMN[sort.lstrip("-")]]
            nxt = encode_cursor({"s": sort, "k": key, "id": last["file_id"]})
        return PhotoPage(items=items, next=nxt)

    @get(
        "/{content_hash:str}",
        summary="One content",
        description="A content's metadata and every live location holding it.",
        responses=error_responses(400, 404),
    )
    async def get_photo(
        self,
        ctx: Ctx,
        content_hash: Annotated[
            str,
            Parameter(
                description="BLAKE3 hex of the content.",
                examples=[Example(value="0" * 64)],
            ),
        ],
    ) -> PhotoDetail:
        check_hash(content_hash)
        found = await db.read(ctx.settings.readmodel_dir, lambda c: _detail(content_hash, c), None)
        if found is None:
            raise NotFoundException(detail=f"unknown content_hash {content_hash}")
        return found
