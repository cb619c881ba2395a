"""``/search``: words (CLIP) with the timeline's filters, scores shown.

With words, the hits come from the same ranking as ``GET /photos/search`` (its index,
encoders and cursors); more pages are fragments (``/web/search/page``). Without words
the filters alone list matching photos like the timeline does. When no CLIP model can
encode the words, a banner says how to install one and the filters keep working.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.exceptions import ClientException
from litestar.params import Parameter
from litestar.response import Template

from eventsvc.core.errors import InferenceError, ReadModelError
from eventsvc.core.settings import Settings
from projections.api import db
from projections.api.context import Ctx
from projections.api.filters import Query
from projections.api.search import (
    ClipSearch,
    SearchHit,
    clip_search,
    pick_model,
    query_matrix,
    search_hits,
    window_out,
)
from projections.web.common import PAGE_HEADERS, page
from projections.web.filters import SORTS, Form, parse_form
from projections.web.render import with_query
from projections.web.timeline import FIRST_SCREEN, PhotoPage, photo_page

__all__ = ["INSTALL_HINT", "SEARCH_PAGE", "SearchPages", "Tile", "has_embedding"]

SEARCH_PAGE = 48
THRESHOLD = 0.2
"""The API's default lowest score."""
INSTALL_HINT = (
    'pip install "eventsvc[clip]"',
    "With internet access the default model (immich-app/ViT-B-32__openai) is then "
    "downloaded into <data dir>/models/ on first use. Offline, copy a model in the layout "
    "Immich publishes (config.json, visual/model.onnx, textual/model.onnx, "
    "textual/tokenizer.json, ...) to a directory and set EVENTSVC_CLIP_MODEL_DIR to it; "
    "or run `eventsvc inference` on a GPU host and set EVENTSVC_INFERENCE_URL. The clip "
    "worker then encodes the photos (see Libraries & pipeline).",
)


@dataclass
class Tile:
    """A search hit in the shape the tile macro takes."""

    content_hash: str
    file_id: str
    path: str
    thumbnail: str | None
    score: float
    tags: list[str] = field(default_factory=list)
    media_kind: str = "image"
    width: int = 1
    height: int = 1


def _tile(hit: SearchHit) -> Tile:
    return Tile(
        content_hash=hit.content_hash, file_id=hit.file_id, path=hit.path,
        thumbnail=hit.thumbnails.get("small") or next(iter(hit.thumbnails.values()), None),
        score=hit.score, tags=hit.tags,
    )  # fmt: skip


@dataclass
class Outcome:
    tiles: list[Tile] = field(default_factory=list)
    next: str | None = None
    model: str | None = None
    unavailable: str | None = None
    """Why no model can encode the words (the install banner shows)."""
    no_vectors: bool = False


async def run_search(
    search: ClipSearch, settings: Settings, form: Form, text: str, cursor: str | None
) -> Outcome:
    """One page of hits, as ``GET /photos/search`` ranks them."""
    q: Query = await db.read(settings.readmodel_dir, form.query, Query())
    m, w = await query_matrix(search, None, cursor, "search")
    try:
        if m is None or w is None:
            await search.encoders.get(None)  # nothing encoded: still say if there is no model
            return Outcome(no_vectors=True)
        vec = await search.text_vector(m.version, text)
    except InferenceError as exc:
        return Outcome(unavailable=str(exc))
    hits, nxt = await search_hits(search, q, m, vec, SEARCH_PAGE, THRESHOLD, w)
    return Outcome([_tile(h) for h in hits], window_out("search", w, nxt), m.version)


def has_embedding(search: ClipSearch, content_hash: str) -> bool:
    """Whether "similar" can rank this content (it has a vector in the model search uses)."""
    try:
        m, _ = pick_model(search, None)
    except (ReadModelError, ClientException):
        return False
    return m is not None and content_hash in m.rows


def _next_url(form: Form, text: str, nxt: str | None) -> str | None:
    if nxt is None:
        return None
    return with_query("/web/search/page", form.params(q=text, cursor=nxt))


class SearchPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/search", name="web-search")
    async def search(
        self, request: Request[Any, Any, Any], ctx: Ctx, state: State,
        q: Annotated[str | None, Parameter(description="The words.")] = None,
    ) -> Template:  # fmt: skip
        form = parse_form(request)
        text = (q or "").strip()[:1000]
        settings = ctx.settings
        error = None
        outcome = Outcome()
        listing = PhotoPage([], None)
        try:
            if text:
                outcome = await run_search(clip_search(state, settings), settings, form, text, None)
            else:
                listing = await db.read(
                    settings.readmodel_dir,
                    lambda c: photo_page(c, form.query(c), form.sort, None, FIRST_SCREEN),
                    PhotoPage([], None),
                )
        except ClientException as exc:
            error = exc.detail
        list_next = None
        if listing.next is not None:
            list_next = with_query("/web/timeline/page", form.params(cursor=listing.next))
        return page(
            request, "search.html", "search", status_code=400 if error else 200, form=form,
            sorts=SORTS, words=text, error=error, outcome=outcome, listing=listing.items,
            list_next=list_next, next_url=_next_url(form, text, outcome.next),
            install=INSTALL_HINT,
        )  # fmt: skip

    @get("/web/search/page", name="web-search-page")
    async def more(
        self, request: Request[Any, Any, Any], ctx: Ctx, state: State,
        q: Annotated[str, Parameter(description="The words.")],
        cursor: Annotated[str, Parameter(description="The previous page's next.")],
    ) -> Template:  # fmt: skip
        form = parse_form(request)
        text = q.strip()[:1000]
        search = clip_search(state, ctx.settings)
        outcome = await run_search(search, ctx.settings, form, text, cursor)
        return Template(
            template_name="search_items.html",
            context={"outcome": outcome, "form": form, "words": text,
                     "next_url": _next_url(form, text, outcome.next)},
            headers=PAGE_HEADERS,
        )  # fmt: skip


async def embedding_known(state: State, settings: Settings, content_hash: str) -> bool:
    return await asyncio.to_thread(has_embedding, clip_search(state, settings), content_hash)
