"""The Jinja environment of the pages: autoescaping, and the few filters they use."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape

__all__ = ["environment", "human_bytes", "month_label", "with_query"]

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def month_label(month: str | None) -> str:
    """``2023-06`` -> ``June 2023``; no month: ``Undated``."""
    if not month or len(month) < 7:
        return "Undated"
    try:
        return f"{_MONTHS[int(month[5:7]) - 1]} {month[:4]}"
    except (ValueError, IndexError):
        return month


def with_query(path: str, params: dict[str, object]) -> str:
    """``path?a=1&b=2`` with empty values left out."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def environment(directory: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(directory),
        auto_reload=False,  # templates ship with the package: no stat() per render
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["bytes"] = human_bytes
    env.filters["month_label"] = month_label
    env.globals["with_query"] = with_query
    from projections.web.tiles import tile_html, tiles_html  # it uses month_label

    env.globals["tiles"] = tiles_html
    env.globals["tile"] = tile_html
    return env
