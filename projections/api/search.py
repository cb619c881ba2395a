"""GET /photos/search (CLIP text search) and GET /photos/{content_hash}/similar.

The metadata filters of ``/photos`` (:mod:`projections.api.filters`) select candidate
contents BEFORE ranking; ranking is a dot product over the in-memory index
(:mod:`projections.vectors`): exact (argpartition top-k) for small models, IVF with 8-bit
codes and an exact re-rank for large ones. Query embeddings are cached.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import numpy as np
from litestar import Controller, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ServiceUnavailableException
from litestar.params import Parameter
from msgspec import Meta

from eventsvc.core.errors import BackendUnavailable, InferenceError, ModelUnavailable
from eventsvc.core.inference import ClipBackend, ClipBackends, ModelInfo
from eventsvc.core.settings import Settings
from projections import readmodel
from projections.api import db, rows
from projections.api.context import Ctx
from projections.api.errors import bad_parameter, error_responses
from projections.api.filters import Filters, Query, filter_dependencies
from projections.api.paging import decode_cursor, encode_cursor
from projections.api.params import CURSOR_PATTERN, HASH_PATTERN, NOT_BLANK
from projections.api.photos import check_hash
from projections.api.schemas import TAGS
from projections.vectors import ModelMatrix, VectorIndex

__all__ = [
    "ClipEncoders",
    "ClipSearch",
    "SearchController",
    "SearchHit",
    "SearchPage",
    "Window",
    "pick_model",
    "query_matrix",
    "search_hits",
    "window_in",
    "window_out",
]

log = logging.getLogger(__name__)


class SearchHit(msgspec.Struct):
    content_hash: Annotated[str, Meta(description="BLAKE3 of the content.")]
    score: Annotated[float, Meta(description="Cosine similarity to the query, -1..1.")]
    library_id: Annotated[str, Meta(description="Library of the location shown.")]
    path: Annotated[str, Meta(description="A live location of the content (first by path).")]
    file_id: Annotated[str, Meta(description="File id of that location.")]
    thumbnails: Annotated[dict[str, str], Meta(description="Size name -> thumbnail URL path.")]
    tags: Annotated[list[str], Meta(description=TAGS)]


class SearchPage(msgspec.Struct):
    items: Annotated[list[SearchHit], Meta(description="Best first.")]
    next: Annotated[str | None, Meta(description="Cursor of the next page; null on the last.")]
    model_version: Annotated[
        str | None, Meta(description="The CLIP model ranked with (null: none has vectors yet).")
    ]


class ClipEncoders:
    """Text encoders by model version, from the back-ends the composition gave
    (``clip``: the configured model, ``clip_extra_models`` and models noted by
    ``eventsvc reencode``; None: no text search). Failures are retried after ``retry`` s."""

    def __init__(self, clip: ClipBackends | None, retry: float = 30.0) -> None:
        self.clip = clip
        self.retry = retry
        self._ready: dict[str, tuple[ClipBackend, ModelInfo]] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self._lock = asyncio.Lock()

    async def get(self, version: str | None) -> tuple[ClipBackend, ModelInfo]:
        if self.clip is None:
            raise ModelUnavailable("cannot encode queries: this API was started without CLIP")
        async with self._lock:
            for key in self.clip.specs():
                got = self._ready.get(key)
                if got is None:
                    failed = self._failed.get(key)
                    if failed is not None and time.monotonic() - failed[0] < self.retry:
                        continue
                    backend = self.clip.open(key)
                    try:
                        info = await backend.info()
                    except (ModelUnavailable, BackendUnavailable) as exc:
                        self._failed[key] = (time.monotonic(), str(exc))
                        await backend.aclose()
                        continue
                    got = self._ready[key] = (backend, info)
                    self._failed.pop(key, None)
                if version is None or got[1].version == version:
                    return got
            reasons = "; ".join(r for _, r in self._failed.values()) or "no model configured"
            what = f"model {version}" if version else "the configured CLIP model"
            raise ModelUnavailable(f"cannot encode queries with {what}: {reasons}")

    async def aclose(self) -> None:
        for backend, _ in self._ready.values():
            await backend.aclose()
        self._ready.clear()


class ClipSearch:
    """Per-app search state: the vector index, the encoders, the query cache."""

    def __init__(self, settings: Settings, clip: ClipBackends | None) -> None:
        self.settings = settings
        self.index = VectorIndex(
            settings.readmodel_dir,
            ann_min=settings.vector_ann_min,
            nprobe=settings.vector_nprobe,
            rerank=settings.vector_rerank,
            persist=settings.vector_persist,
            persist_rows=settings.vector_persist_rows,
        )
        self.encoders = ClipEncoders(clip)
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.cache_hits = 0
        self._candidates: OrderedDict[tuple[Any, ...], tuple[ModelMatrix, np.ndarray]] = (
            OrderedDict()
        )
        self._candidates_lock = threading.Lock()
        self.candidate_hits = 0

    def candidates(
        self, conn: sqlite3.Connection, q: Query, m: ModelMatrix, rows: int
    ) -> np.ndarray:
        """Rows of ``m`` below ``rows`` whose content passes the filters.

        Cached per read-model checkpoint: paging, or the same filters with other words,
        does not run the filter SQL again until something new is projected.
        """
        key = (readmodel.checkpoint(conn), m.version, m.n, tuple(q.where), tuple(q.params))
        with self._candidates_lock:  # requests run this in worker threads
            got = self._candidates.get(key)
            if got is not None and got[0] is m:
                self._candidates.move_to_end(key)
                self.candidate_hits += 1
        if got is None or got[0] is not m:
            _prepare(conn, q)
            got = (m, m.positions(_candidates(conn, q)))
            with self._candidates_lock:
                self._candidates[key] = got
                while len(self._candidates) > 16:
                    self._candidates.popitem(last=False)
        positions = got[1]
        return positions[positions < rows]

    async def text_vector(self, version: str, text: str) -> np.ndarray:
        key = (version, text)
        vec = self._cache.get(key)
        if vec is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return vec
        backend, _ = await self.encoders.get(version)
        vec = (await backend.encode_texts([text]))[0]
        self._cache[key] = vec
        while len(self._cache) > max(1, self.settings.clip_text_cache):
            self._cache.popitem(last=False)
        return vec


def clip_search(state: State, settings: Settings) -> ClipSearch:
    found = state.get("clip_search")
    if found is None:
        found = ClipSearch(settings, state.get("clip"))
        state["clip_search"] = found
    return found  # type: ignore[no-any-return]


# ------------------------------------------------------------------ SQL around ranking


def _candidates(conn: sqlite3.Connection, q: Query) -> list[str]:
    sql = (
        "SELECT DISTINCT f.content_hash FROM files AS f"
        " LEFT JOIN media AS m ON m.content_hash = f.content_hash"
        " WHERE f.content_hash IS NOT NULL" + "".join(f" AND {w}" for w in q.where)
    )
    return [r[0] for r in conn.execute(sql, q.params)]


def _locations(conn: sqlite3.Connection, q: Query, hashes: list[str]) -> dict[str, sqlite3.Row]:
    """The first live location (by library, path) of each hash that matches the filters."""
    if not hashes:
        return {}
    marks = ",".join("?" for _ in hashes)
    sql = (
        "SELECT f.content_hash, f.library_id, f.path, f.file_id, t.sizes AS thumb_sizes"
        " FROM files AS f LEFT JOIN media AS m ON m.content_hash = f.content_hash"
        " LEFT JOIN thumbnails AS t ON t.content_hash = f.content_hash"
        f" WHERE f.content_hash IN ({marks})"
        + "".join(f" AND {w}" for w in q.where)
        + " ORDER BY f.library_id, f.path, f.file_id"
    )
    out: dict[str, sqlite3.Row] = {}
    for r in conn.execute(sql, [*hashes, *q.params]):
        out.setdefault(r["content_hash"], r)
    return out


def _prepare(conn: sqlite3.Connection, q: Query) -> None:
    if q.near is not None:
        from projections.api import geo

        conn.create_function("haversine_km", 4, geo.haversine_km, deterministic=True)


@dataclass(frozen=True)
class Window:
    """Where a page starts: a rank position among the first ``rows`` rows of a model.

    Pinning ``rows`` keeps pages consistent while vectors are being added (rows are only
    ever appended); ``start`` counts ranked contents, found or not, so a page never
    re-reads what an earlier page skipped for want of a live location.
    """

    version: str
    rows: int
    start: int = 0


def window_in(cursor: str, endpoint: str) -> Window:
    data = decode_cursor(cursor)
    version, n, start = data.get("m"), data.get("n"), data.get("r")
    if data.get("e") != endpoint:
        raise bad_parameter("cursor", f"it was not made by {endpoint}")
    if not (isinstance(version, str) and type(n) is int and type(start) is int):
        raise bad_parameter("cursor", "not a cursor handed out by this API")
    if n < 0 or start < 0:
        raise bad_parameter("cursor", "not a cursor handed out by this API")
    return Window(version, n, start)


def window_out(endpoint: str, w: Window, start: int | None) -> str | None:
    if start is None:
        return None
    return encode_cursor({"e": endpoint, "m": w.version, "n": w.rows, "r": start})


async def search_hits(
    search: ClipSearch, q: Query, m: ModelMatrix, vec: np.ndarray, limit: int,
    threshold: float | None, w: Window, exclude: str | None = None,
) -> tuple[list[SearchHit], int | None]:  # fmt: skip
    """One page of hits from ``w.start`` on, and where the next page starts (None: last)."""
    readmodel_dir = search.settings.readmodel_dir
    n = min(w.rows, m.n)
    candidates = None
    if q.where:
        empty = np.zeros(0, np.int64)
        candidates = await db.read(readmodel_dir, lambda c: search.candidates(c, q, m, n), empty)
    total = n if candidates is None else len(candidates)
    if total == 0:
        return [], None
    k = min(total, w.start + limit + 1 + (1 if exclude else 0))
    while True:
        ranked = await asyncio.to_thread(VectorIndex.rank, m, vec, k, threshold, candidates, n)
        tail = [(i, h, s) for i, (h, s) in enumerate(ranked) if i >= w.start and h != exclude]
        wanted = [h for _, h, _ in tail]

        def locate(
            c: sqlite3.Connection, wanted: list[str] = wanted
        ) -> tuple[dict[str, sqlite3.Row], dict[str, list[str]]]:
            _prepare(c, q)
            found = _locations(c, q, wanted)
            return found, rows.person_tags(c, found)

        locs, tags = await db.read(readmodel_dir, locate, ({}, {}))
        found = [(i, h, s) for i, h, s in tail if h in locs]
        # One found beyond the page says there is a next page. Contents without a live
        # location drop out: look further down the ranking when that cost hits.
        exhausted = len(ranked) < k or k >= total
        if len(found) > limit or exhausted:
            break
        k = min(total, k * 4)
    nxt = found[limit - 1][0] + 1 if len(found) > limit else None
    hits = [
        SearchHit(
            content_hash=h,
            score=round(s, 6),
            library_id=locs[h]["library_id"],
            path=locs[h]["path"],
            file_id=locs[h]["file_id"],
            thumbnails=rows.thumbnail_urls(h, locs[h]["thumb_sizes"]),
            tags=tags.get(h, []),
        )
        for _, h, s in found[:limit]
    ]
    return hits, nxt


def _unavailable(exc: InferenceError) -> ServiceUnavailableException:
    return ServiceUnavailableException(detail=f"semantic search unavailable: {exc}")


def pick_model(search: ClipSearch, model_version: str | None) -> tuple[ModelMatrix | None, Any]:
    state = search.index.sync()
    m = search.index.choose(state, model_version)
    if model_version is not None and m is None:
        known = ", ".join(sorted(state.models)) if state else ""
        raise bad_parameter("model_version", f"no vectors for it (known: {known or 'none'})")
    return m, state


async def query_matrix(
    search: ClipSearch, model_version: str | None, cursor: str | None, endpoint: str
) -> tuple[ModelMatrix | None, Window | None]:
    """The model to rank with and the page window: from the cursor when there is one."""
    if cursor is None:
        m, _ = await asyncio.to_thread(pick_model, search, model_version)
        return m, (Window(m.version, m.n) if m is not None else None)
    w = window_in(cursor, endpoint)
    if model_version is not None and model_version != w.version:
        raise bad_parameter("cursor", f"it was made for model_version {w.version}")
    m, _ = await asyncio.to_thread(pick_model, search, w.version)
    return m, w


_PAGED = (
    " Paged: `next` is a cursor for the following page, which ranks the same vectors"
    " (those added since the first page wait for a new search)."
)
_CURSOR = "The `next` of the previous page (the other parameters must be the same)."


class SearchController(Controller):
    path = "/photos"
    tags = ("search",)

    @get(
        "/search",
        summary="Search photos by words (CLIP)",
        description="Contents ranked by cosine similarity between the query's CLIP text "
        "embedding and their image embedding, best first, at or above `threshold`. The "
        "metadata filters of /photos select candidates before ranking. Uses the newest "
        "model whose vectors cover every image unless `model_version` is given. 503 when "
        "no CLIP model can encode the query (the detail says why)." + _PAGED,
        responses=error_responses(400),
        dependencies=filter_dependencies(),
    )
    async def search(
        self,
        ctx: Ctx,
        state: State,
        filters: Filters,
        q: Annotated[
            str,
            Parameter(
                min_length=1,
                max_length=1000,
                pattern=NOT_BLANK,
                description="The words (not only white space).",
            ),
        ],
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size.")] = 50,
        threshold: Annotated[
            float, Parameter(ge=-1.0, le=1.0, description="Lowest cosine score returned.")
        ] = 0.2,
        model_version: Annotated[
            str | None,
            Parameter(description="Rank with this model's vectors (400 if it has none)."),
        ] = None,
        cursor: Annotated[
            str | None, Parameter(description=_CURSOR, pattern=CURSOR_PATTERN)
        ] = None,
    ) -> SearchPage:
        text = q.strip()
        if not text:
            raise bad_parameter("q", "must contain words")
        search = clip_search(state, ctx.settings)
        m, w = await query_matrix(search, model_version, cursor, "search")
        try:
            if m is None or w is None:  # nothing encoded yet: still say why if no model
                await search.encoders.get(None)
                return SearchPage(items=[], next=None, model_version=None)
            vec = await search.text_vector(m.version, text)
        except InferenceError as exc:
            raise _unavailable(exc) from exc
        hits, nxt = await search_hits(search, filters, m, vec, limit, threshold, w)
        return SearchPage(items=hits, next=window_out("search", w, nxt), model_version=m.version)

    @get(
        "/{content_hash:str}/similar",
        summary="Photos that look like this one (CLIP)",
        description="Contents ranked by cosine similarity of their image embeddings to this "
        "content's, best first, the content itself left out. The metadata filters of "
        "/photos select candidates before ranking." + _PAGED,
        responses=error_responses(400, 404),
        dependencies=filter_dependencies(),
    )
    async def similar(
        self,
        ctx: Ctx,
        state: State,
        filters: Filters,
        content_hash: Annotated[
            str, Parameter(description="BLAKE3 hex of the content.", pattern=HASH_PATTERN)
        ],
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size.")] = 50,
        threshold: Annotated[
            float | None,
            Parameter(ge=-1.0, le=1.0, description="Lowest cosine score returned (none: all)."),
        ] = None,
        model_version: Annotated[
            str | None,
            Parameter(description="Rank with this model's vectors (400 if it has none)."),
        ] = None,
        cursor: Annotated[
            str | None, Parameter(description=_CURSOR, pattern=CURSOR_PATTERN)
        ] = None,
    ) -> SearchPage:
        check_hash(content_hash)
        search = clip_search(state, ctx.settings)
        m, w = await query_matrix(search, model_version, cursor, "similar")
        row = m.rows.get(content_hash) if m is not None else None
        if m is None or w is None or row is None:
            where = f" under model {m.version}" if m is not None else ""
            raise NotFoundException(detail=f"no CLIP embedding for {content_hash}{where} (yet)")
        vec = await asyncio.to_thread(m.vector, row)
        hits, nxt = await search_hits(
            search, filters, m, vec, limit, threshold, w, exclude=content_hash
        )
        return SearchPage(items=hits, next=window_out("similar", w, nxt), model_version=m.version)


async def search_text(
    settings: Settings, text: str, *, clip: ClipBackends, limit: int = 20,
    threshold: float | None = 0.2, model_version: str | None = None,
) -> SearchPage:  # fmt: skip
    """The search of ``GET /photos/search`` without the HTTP (``eventsvc search``)."""
    from eventsvc.core.errors import ReadModelError

    search = ClipSearch(settings, clip)
    try:
        m, _ = await asyncio.to_thread(pick_model, search, model_version)
        if m is None:
            await search.encoders.get(None)
            return SearchPage(items=[], next=None, model_version=None)
        vec = await search.text_vector(m.version, text)
        w = Window(m.version, m.n)
        hits, _ = await search_hits(search, Query(), m, vec, limit, threshold, w)
    except Exception as exc:
        if isinstance(exc, (InferenceError, ReadModelError)):
            raise
        detail = getattr(exc, "detail", None)
        if detail:
            raise ReadModelError(str(detail)) from exc
        raise
    finally:
        await search.encoders.aclose()
    return SearchPage(items=hits, next=None, model_version=m.version)
