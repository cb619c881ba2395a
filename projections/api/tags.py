"""Tags and favourites (issue 16): GET /tags, GET /photos/{hash}/tags, and the decisions
POST /photos/{hash}/tags, DELETE /photos/{hash}/tags/{tag}, PUT and DELETE
/photos/{hash}/favorite.

A content's tags are its people's names (source ``person``: a face, not rejected, of a
named person who is not hidden) and the user's tags (source ``user``: TagAdded /
TagRemoved). Decisions are published as events (the API never writes the read model);
the projector applies them (:mod:`projections.tags`), on replay too.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.exceptions import NotFoundException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import Parameter
from msgspec import Meta

from eventsvc.core.events import (
    MAX_TAG_LENGTH,
    Favorited,
    TagAdded,
    TagRemoved,
    Unfavorited,
    has_control,
    tag_key,
    tag_name,
)
from projections.api import db
from projections.api.context import ApiContext, Ctx
from projections.api.decisions import DECISION_RESPONSES, publish_decisions
from projections.api.errors import bad_parameter, error_responses
from projections.api.idempotency import IdempotencyKey
from projections.api.params import HASH_PATTERN, NOT_BLANK, decode_body
from projections.api.photos import check_hash

__all__ = [
    "TAG_PATTERN",
    "ContentTags",
    "TagAccepted",
    "TagCount",
    "TagItem",
    "TagsController",
    "content_exists",
    "content_tags",
]

Source = Literal["person", "user"]

_CONTROL = "\\u0000-\\u001f\\u007f-\\u009f"
TAG_PATTERN = f"^[^{_CONTROL}/]*{NOT_BLANK[:-1]}{_CONTROL}/][^{_CONTROL}/]*$"
"""A tag the API takes: not blank, no control character, no "/" (a tag is a path
segment of DELETE /photos/{hash}/tags/{tag})."""
TAG_RE = re.compile(TAG_PATTERN)
ContentHash = Annotated[str, Parameter(description="A content hash.", pattern=HASH_PATTERN)]


class TagItem(msgspec.Struct):
    name: Annotated[str, Meta(description="The tag.")]
    sources: Annotated[
        list[Source],
        Meta(description="Where it comes from: 'person' (a person's name), 'user', or both."),
    ]


class ContentTags(msgspec.Struct):
    content_hash: Annotated[str, Meta(description="The content (BLAKE3 hex).")]
    tags: Annotated[list[TagItem], Meta(description="Sorted case-insensitively, each once.")]
    favorite: Annotated[bool, Meta(description="A favourite of the user.")]


class TagCount(msgspec.Struct):
    name: Annotated[str, Meta(description="The tag (a person's spelling wins).")]
    count: Annotated[int, Meta(description="Contents with a live file carrying the tag.")]
    sources: Annotated[
        list[Source], Meta(description="'person' (a person's name), 'user', or both.")
    ]


class TagList(msgspec.Struct):
    items: Annotated[list[TagCount], Meta(description="Sorted case-insensitively.")]


class TagAccepted(msgspec.Struct):
    """Decisions are events: they take effect once the projector applied them (seqs)."""

    seqs: Annotated[list[int], Meta(description="Stream sequences of the published events.")]
    duplicate: Annotated[bool, Meta(description="Every event was a duplicate publish.")]
    content_hash: Annotated[str, Meta(description="The content decided on.")]
    tag: Annotated[str | None, Meta(description="The tag decided on (normalised).")] = None
    favorite: Annotated[bool | None, Meta(description="The favourite decided on.")] = None


class TagBody(msgspec.Struct, forbid_unknown_fields=True):
    tag: str


def _sort(names: dict[str, tuple[str, set[str]]]) -> list[tuple[str, list[str]]]:
    items = sorted(names.values(), key=lambda x: (x[0].casefold(), x[0]))
    return [(n, sorted(s)) for n, s in items]


def content_tags(conn: sqlite3.Connection, content_hash: str) -> ContentTags:
    """The tags of one content with their sources, and whether it is a favourite."""
    found: dict[str, tuple[str, set[str]]] = {}
    for name, source in conn.execute(
        "SELECT DISTINCT p.name, 'person' FROM faces AS fc JOIN people AS p"
        " ON p.person_id = fc.person_id WHERE fc.content_hash = ? AND fc.rejected = 0"
        " AND p.hidden = 0 AND p.name IS NOT NULL"
        " UNION ALL SELECT name, 'user' FROM user_tags WHERE content_hash = ?"
        " ORDER BY 2",  # person first: its spelling wins
        (content_hash, content_hash),
    ):
        found.setdefault(tag_key(name), (name, set()))[1].add(source)
    fav = conn.execute("SELECT 1 FROM favorites WHERE content_hash = ?", (content_hash,))
    return ContentTags(
        content_hash=content_hash,
        tags=[TagItem(name=n, sources=s) for n, s in _sort(found)],  # type: ignore[arg-type]
        favorite=fav.fetchone() is not None,
    )


def tag_counts(conn: sqlite3.Connection) -> list[TagCount]:
    """Every tag on a content with a live file, with its number of contents."""
    hashes: dict[str, set[str]] = {}
    names: dict[str, tuple[str, set[str]]] = {}
    for content_hash, name, source in conn.execute(
        "SELECT DISTINCT fc.content_hash, p.name, 'person' FROM faces AS fc JOIN people AS p"
        " ON p.person_id = fc.person_id WHERE fc.rejected = 0 AND p.hidden = 0"
        " AND p.name IS NOT NULL"
        " UNION ALL SELECT content_hash, name, 'user' FROM user_tags ORDER BY 3",
    ):
        key = tag_key(name)
        names.setdefault(key, (name, set()))[1].add(source)
        hashes.setdefault(key, set()).add(content_hash)
    live = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT content_hash FROM files WHERE content_hash IS NOT NULL"
        )
    }
    out = []
    for name, sources in _sort(names):
        count = len(hashes[tag_key(name)] & live)
        if count:
            out.append(TagCount(name=name, count=count, sources=sources))  # type: ignore[arg-type]
    return out


def content_exists(conn: sqlite3.Connection, content_hash: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM content WHERE content_hash = ?", (content_hash,)).fetchone()
        is not None
    )


async def _require_content(ctx: ApiContext, content_hash: str) -> str:
    check_hash(content_hash)
    if not await db.read(
        ctx.settings.readmodel_dir, lambda c: content_exists(c, content_hash), False
    ):
        raise NotFoundException(detail=f"unknown content {content_hash}")
    return content_hash


def _check_tag(raw: str, name: str = "tag") -> str:
    tag = tag_name(raw)
    if tag is None:
        raise bad_parameter(name, "must be a name (not blank)")
    if len(tag) > MAX_TAG_LENGTH:
        raise bad_parameter(name, f"at most {MAX_TAG_LENGTH} characters")
    if has_control(tag):
        raise bad_parameter(name, "no control characters (line breaks, tabs, ...)")
    if not TAG_RE.fullmatch(tag):
        raise bad_parameter(name, "no '/' (a tag is a path segment of its DELETE)")
    return tag


@dataclass
class _TagBodyOperation(Operation):
    def __post_init__(self) -> None:
        schema = Schema(
            type=OpenAPIType.OBJECT,
            properties={
                "tag": Schema(
                    type=OpenAPIType.STRING,
                    min_length=1,
                    max_length=MAX_TAG_LENGTH,
                    pattern=TAG_PATTERN,
                    description="The tag (white space around it dropped; compared "
                    "case-insensitively).",
                )
            },
            required=["tag"],
            additional_properties=False,
        )
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=schema)}, required=True
        )


class TagsController(Controller):
    path = "/"
    tags = ("tags",)

    @get(
        "/tags",
        summary="Tags with counts",
        description="Every tag on a content with a live file: a person's name (source "
        "'person') or a user's tag ('user'), with the number of such contents. Sorted "
        "case-insensitively.",
    )
    async def list_tags(self, ctx: Ctx) -> TagList:
        found = await db.read(ctx.settings.readmodel_dir, tag_counts, [])
        return TagList(items=found)

    @get(
        "/photos/{content_hash:str}/tags",
        summary="A content's tags and favourite",
        responses=error_responses(400, 404),
    )
    async def get_tags(self, ctx: Ctx, content_hash: ContentHash) -> ContentTags:
        await _require_content(ctx, content_hash)
        return await db.read(
            ctx.settings.readmodel_dir,
            lambda c: content_tags(c, content_hash),
            ContentTags(content_hash=content_hash, tags=[], favorite=False),
        )

    @post(
        "/photos/{content_hash:str}/tags",
        status_code=202,
        summary="Tag a content",
        description="Publishes TagAdded. A tag the content has already (in any case) takes "
        "this spelling.",
        responses=DECISION_RESPONSES,
        operation_class=_TagBodyOperation,
    )
    async def add_tag(
        self,
        ctx: Ctx,
        content_hash: ContentHash,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
    ) -> TagAccepted:
        data = await decode_body(request, TagBody)
        tag = _check_tag(data.tag)
        await _require_content(ctx, content_hash)
        seqs, dup = await publish_decisions(
            ctx, [TagAdded(content_hash=content_hash, tag=tag)], idempotency_key
        )
        return TagAccepted(seqs=seqs, duplicate=dup, content_hash=content_hash, tag=tag)

    @delete(
        "/photos/{content_hash:str}/tags/{tag:str}",
        status_code=202,
        summary="Take a user's tag off a content",
        description="Publishes TagRemoved (case-insensitive). 404 when the content has no "
        "such user tag; a person's name is no user tag (rename the person or reject the "
        "face instead).",
        responses=DECISION_RESPONSES,
    )
    async def remove_tag(
        self,
        ctx: Ctx,
        content_hash: ContentHash,
        tag: Annotated[
            str,
            Parameter(
                description="The tag (URL-encoded).",
                pattern=TAG_PATTERN,
                max_length=MAX_TAG_LENGTH,
            ),
        ],
        idempotency_key: IdempotencyKey = None,
    ) -> TagAccepted:
        name = _check_tag(tag)
        await _require_content(ctx, content_hash)
        key = tag_key(name)
        have = await db.read(
            ctx.settings.readmodel_dir,
            lambda c: (
                c.execute(
                    "SELECT 1 FROM user_tags WHERE content_hash = ? AND tag_key = ?",
                    (content_hash, key),
                ).fetchone()
                is not None
            ),
            False,
        )
        if not have and idempotency_key is None:
            raise NotFoundException(detail=f"{content_hash} has no user tag {name!r}")
        event = TagRemoved(content_hash=content_hash, tag=name)
        seqs, dup = await publish_decisions(ctx, [event], idempotency_key)
        return TagAccepted(seqs=seqs, duplicate=dup, content_hash=content_hash, tag=name)

    @put(
        "/photos/{content_hash:str}/favorite",
        status_code=202,
        summary="Make a content a favourite",
        description="Publishes Favorited (no body).",
        responses=DECISION_RESPONSES,
    )
    async def favorite(
        self, ctx: Ctx, content_hash: ContentHash, idempotency_key: IdempotencyKey = None
    ) -> TagAccepted:
        await _require_content(ctx, content_hash)
        seqs, dup = await publish_decisions(
            ctx, [Favorited(content_hash=content_hash)], idempotency_key
        )
        return TagAccepted(seqs=seqs, duplicate=dup, content_hash=content_hash, favorite=True)

    @delete(
        "/photos/{content_hash:str}/favorite",
        status_code=202,
        summary="No longer a favourite",
        description="Publishes Unfavorited.",
        responses=DECISION_RESPONSES,
    )
    async def unfavorite(
        self, ctx: Ctx, content_hash: ContentHash, idempotency_key: IdempotencyKey = None
    ) -> TagAccepted:
        await _require_content(ctx, content_hash)
        seqs, dup = await publish_decisions(
            ctx, [Unfavorited(content_hash=content_hash)], idempotency_key
        )
        return TagAccepted(seqs=seqs, duplicate=dup, content_hash=content_hash, favorite=False)
