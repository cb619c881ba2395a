"""The thumbnail tiles of the grids, rendered in Python: the one loop of the timeline that
runs per photo (a Jinja macro per tile cost more than the query; see ``bench web``)."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from markupsafe import Markup

from projections.web.render import month_label

__all__ = ["tile_html", "tiles_html"]


class _Tile(Protocol):
    content_hash: str | None
    file_id: str
    path: str
    media_kind: str
    width: int | None
    height: int | None
    thumbnail: str | None
    tags: list[str]


def _query(form: Any, extra: dict[str, str] | None = None) -> str:
    return urlencode({k: v for k, v in form.params(**(extra or {})).items() if v not in (None, "")})


def _tile(p: _Tile, base: str, score: float | None) -> str:
    name = escape(p.path.rsplit("/", 1)[-1])
    video = p.media_kind == "video"
    out = [f'<a class="tile{" video" if video else ""}"']
    if p.content_hash:
        q = f"{base}&f={quote(p.file_id)}" if base else f"f={quote(p.file_id)}"
        out.append(f' href="/photo/{p.content_hash}?{escape(q)}"')
    out.append(f' data-w="{p.width or 4}" data-h="{p.height or 3}" title="{escape(p.path)}">')
    if p.thumbnail:
        alt = name + (f" ({escape(', '.join(p.tags))})" if p.tags else "")
        out.append(f'<img src="{escape(p.thumbnail)}" alt="{alt}" loading="lazy" decoding="async">')
    else:
        out.append(f'<span class="nothumb">{name}</span>')
    if video:
        out.append('<span class="badge" aria-label="video">▶</span>')
    if score is not None:
        out.append(f'<span class="score">{score:.3f}</span>')
    out.append("</a>\n")
    return "".join(out)


def tile_html(p: _Tile, form: Any, score: float | None = None) -> Markup:
    return Markup(_tile(p, _query(form), score))


def tiles_html(
    items: Iterable[_Tile], by_date: bool, prev_month: str | None, form: Any,
    scores: bool = False, words: str | None = None,
) -> Markup:  # fmt: skip
    """Tiles, with a month heading (and a row filler before it) where the month changes
    when ``by_date``; ``prev_month`` is the month the previous page ended with. ``words``:
    search hits, whose photo view goes back to the search."""
    base = _query(form, {"q": words} if words else None)
    month = prev_month
    out = []
    for p in items:
        if by_date:
            m = p.date_taken[:7] if getattr(p, "date_taken", None) else ""  # type: ignore[attr-defined]
            if m != month:
                if month is not None:
                    out.append('<i class="fill" aria-hidden="true"></i>\n')
                out.append(
                    f'<h2 class="month" id="m-{escape(m or "undated")}" data-month="{escape(m)}">'
                    f"{escape(month_label(m))}</h2>\n"
                )
                month = m
        out.append(_tile(p, base, getattr(p, "score", None) if scores else None))
    return Markup("".join(out))
