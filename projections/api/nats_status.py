"""What the API asks NATS besides ``/pipeline`` (:mod:`projections.status`): the scan
reports of the status bucket. Bounded in time; NATS trouble means "unknown", never a 500.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from eventsvc.core.errors import LogError
from eventsvc.core.log import EventLog
from projections.api.schemas import LastScan
from projections.status import TIMEOUT

__all__ = ["TIMEOUT", "last_scan"]

log = logging.getLogger(__name__)


async def last_scan(event_log: EventLog | None, library_id: str) -> LastScan | None:
    """Key ``scan.<library_id>`` of the status bucket; None without NATS, bucket or key."""
    if event_log is None:
        return None
    try:
        value = await asyncio.wait_for(event_log.get_status(f"scan.{library_id}"), TIMEOUT)
    except (TimeoutError, LogError, ValueError) as exc:
        log.debug("no scan status for %s: %r", library_id, exc)
        return None
    if value is None:
        return None
    try:
        return msgspec.convert(value, LastScan, strict=False)
    except msgspec.ValidationError as exc:
        log.warning("scan status for %s does not parse: %s", library_id, exc)
        return None
