"""Following subjects of the log and folding each event as it arrives: the one loop of
:class:`eventsvc.core.health.HealthFollower` and
:class:`eventsvc.core.library_config.CatalogFollower`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from eventsvc.core.log import EventLog, RawEvent

__all__ = ["follow_folding"]


async def follow_folding(
    event_log: EventLog,
    subjects: Sequence[str],
    fold: Callable[[RawEvent], bool],
    changed: asyncio.Event,
    stop: asyncio.Event,
    *,
    what: str,
    log: logging.Logger,
    last_per_subject: bool = False,
    start_seq: Callable[[], int] = lambda: 1,
) -> None:
    """Follow ``subjects`` until ``stop``, folding each raw event; set ``changed`` when a
    fold says it changed something. A failure (e.g. a reconnect) is logged on ``log`` as
    "following ``what`` failed" and the subjects are followed again after 1 s, from
    ``start_seq()`` (asked anew each time)."""
    while not stop.is_set():
        try:
            async for batch in event_log.read(
                subjects, start_seq=start_seq(), last_per_subject=last_per_subject,
                follow=True, idle=0.5,
            ):  # fmt: skip
                for raw in batch:
                    if fold(raw):
                        changed.set()
                if stop.is_set():
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("following %s failed (%r); following again", what, exc)
        if not stop.is_set():
            try:
                async with asyncio.timeout(1.0):
                    await stop.wait()
            except TimeoutError:
                pass
