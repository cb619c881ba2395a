"""What a data dir and its log know about libraries (ids, names, roots), and the
names ``eventsvc events`` accepts: a library given without an id keeps the id this data
dir or its log already has for its root; ``--library`` and ``--type`` take names."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from eventsvc.core.errors import EventsvcError
from eventsvc.core.ids import library_ids_named
from eventsvc.core.settings import Library

if TYPE_CHECKING:  # imported when used: the CLI starts without them
    from eventsvc.core.log import EventLog

__all__ = [
    "event_types",
    "library_filter",
    "log_libraries",
    "log_library_ids",
]

log = logging.getLogger("eventsvc")


async def log_libraries(event_log: EventLog) -> list[tuple[str, str, str]]:
    """(id, name, root) of every library the log has a LibraryOnline/LibraryStale/LibraryAdded of
    (the latest of each), in stream order."""
    from eventsvc.core.events import LibraryAdded, LibraryOnline, LibraryStale, decode

    found: dict[str, tuple[int, str, str]] = {}
    async for batch in event_log.read(
        [
            f"{event_log.prefix}.library.*.LibraryOnline",
            f"{event_log.prefix}.library.*.LibraryStale",
            f"{event_log.prefix}.library.*.LibraryAdded",
        ],
        last_per_subject=True,
    ):
        for raw in batch:
            try:
                e = decode(raw.data, raw.headers)
            except EventsvcError:
                continue
            if isinstance(e, LibraryOnline | LibraryStale | LibraryAdded):
                if e.library_id not in found or found[e.library_id][0] < raw.seq:
                    found[e.library_id] = (raw.seq, e.name, e.root)
    ordered = sorted(found.items(), key=lambda kv: kv[1][0])
    return [(lib_id, name, root) for lib_id, (_, name, root) in ordered]


async def log_library_ids(event_log: EventLog) -> dict[str, str]:
    """root -> library id from the log (the latest library for a root wins)."""
    try:
        return {root: lib_id for lib_id, _, root in await log_libraries(event_log)}
    except EventsvcError as exc:
        log.warning("cannot read the libraries of the log: %s", exc)
        return {}


def event_types(given: list[str]) -> list[str] | str:
    """The event types named (exact, else case-insensitive), or why one is unknown."""
    from eventsvc.core.events import EVENT_TYPES

    out = []
    for t in given:
        match = (
            t
            if t in EVENT_TYPES
            else next((k for k in EVENT_TYPES if k.casefold() == t.casefold()), None)
        )
        if match is None:
            return f"unknown event type {t!r}; known: {', '.join(sorted(EVENT_TYPES))}"
        out.append(match)
    return out


async def library_filter(
    tokens: list[str], configured: list[Library], event_log: EventLog
) -> set[str] | str:
    """The library ids ``tokens`` name (ids or names of the ``configured`` libraries and
    of those in the log), or why one is unknown."""
    known = {lib_id: name for lib_id, name, _ in await log_libraries(event_log)}
    known.update({lib.id: lib.name for lib in configured})
    wanted: set[str] = set()
    for token in tokens:
        ids = library_ids_named(token, known)
        if not ids:
            names = ", ".join(f"{i} ({n})" for i, n in sorted(known.items())) or "none"
            return f"unknown library {token!r} (an id or a name); known: {names}"
        wanted.update(ids)
    return wanted
