"""Library health: one fold of the log that every component reads the same way.

A library's health is its last ``LibraryOnline`` / ``LibraryStale`` event (the highest
stream sequence on its ``<prefix>.library.<id>.*`` subjects), whoever published it: the
scanner in ``eventsvc up``, a CLI ``eventsvc scan`` (with or without ``--accept-missing``,
which publishes ``LibraryOnline`` and the FileMissing it accepted), or another host. The
scanner, workers' roots, the video reaper and the read model all fold the same events, so
they cannot disagree; a long-running scanner follows the subjects (:class:`HealthFollower`)
so that what another process published counts at its next decision.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from eventsvc.core.events import Event, LibraryOnline, LibraryStale, decode
from eventsvc.core.follow import follow_folding
from eventsvc.core.log import EventLog, RawEvent

__all__ = ["Health", "HealthFollower", "fold", "health_subjects", "load_health"]

log = logging.getLogger(__name__)


@dataclass
class Health:
    state: str = "unknown"  # 'online' | 'stale' | 'unknown'
    seq: int = 0
    """Stream sequence of the event this state comes from (0: none)."""
    reason: str | None = None
    root: str | None = None
    """The root the event names (informative only: roots come from configuration)."""


def health_subjects(event_log: EventLog) -> list[str]:
    p = event_log.prefix
    return [f"{p}.library.*.LibraryStale", f"{p}.library.*.LibraryOnline"]


def fold(states: dict[str, Health], seq: int, event: Event) -> bool:
    """Apply one event at stream sequence ``seq``; True when it changed ``states``
    (an older event than the one already folded is ignored)."""
    if not isinstance(event, (LibraryOnline, LibraryStale)):
        return False
    cur = states.get(event.library_id)
    if cur is not None and cur.seq >= seq:
        return False
    if isinstance(event, LibraryStale):
        states[event.library_id] = Health("stale", seq, event.reason, event.root)
    else:
        states[event.library_id] = Health("online", seq, None, event.root)
    return True


def _fold_raw(states: dict[str, Health], raw: RawEvent) -> bool:
    try:
        ev = decode(raw.data, raw.headers)
    except Exception as exc:  # one bad message must not blind every reader
        log.warning("library health: event %d does not decode: %s", raw.seq, exc)
        return False
    return fold(states, raw.seq, ev)


async def load_health(event_log: EventLog) -> dict[str, Health]:
    """Library id -> its health, from the last health event per library subject."""
    states: dict[str, Health] = {}
    async for batch in event_log.read(health_subjects(event_log), last_per_subject=True):
        for raw in batch:
            _fold_raw(states, raw)
    return states


class HealthFollower:
    """Keeps :attr:`states` folded from the log as events arrive (any publisher)."""

    def __init__(self, event_log: EventLog) -> None:
        self.event_log = event_log
        self.states: dict[str, Health] = {}
        self.changed = asyncio.Event()
        """Set whenever :attr:`states` changed (the reader clears it)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the health subjects until ``stop`` (re-subscribing after a reconnect)."""
        await follow_folding(
            self.event_log,
            health_subjects(self.event_log),
            lambda raw: _fold_raw(self.states, raw),
            self.changed,
            stop,
            what="library health",
            log=log,
            last_per_subject=True,
        )
