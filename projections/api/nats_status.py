"""What the API asks NATS: scan reports (KV), stream state, durable consumers.

Every call is bounded in time and turns NATS trouble into "unknown", never a 500.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
import nats.errors
import nats.js.errors

from eventsvc.core.log import EventLog
from projections.api.schemas import ConsumerStatus, LastScan, StreamStatus

__all__ = ["TIMEOUT", "consumer_statuses", "describe", "last_scan", "stream_status"]

log = logging.getLogger(__name__)

TIMEOUT = 2.0
_NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)


def describe(exc: BaseException) -> str:
    """A short reason for a NATS failure (nats-py's reprs are often empty)."""
    if isinstance(exc, nats.js.errors.NotFoundError):
        return "not found"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, nats.js.errors.APIError) and exc.description:
        return str(exc.description)
    return str(exc) or type(exc).__name__


async def last_scan(event_log: EventLog | None, library_id: str) -> LastScan | None:
    """Key ``scan.<library_id>`` of the status bucket; None without NATS, bucket or key."""
    if event_log is None:
        return None
    try:
        value = await asyncio.wait_for(event_log.get_status(f"scan.{library_id}"), TIMEOUT)
    except (*_NATS_ERRORS, ValueError) as exc:
        log.debug("no scan status for %s: %r", library_id, exc)
        return None
    if value is None:
        return None
    try:
        return msgspec.convert(value, LastScan, strict=False)
    except msgspec.ValidationError as exc:
        log.warning("scan status for %s does not parse: %s", library_id, exc)
        return None


async def stream_status(event_log: EventLog | None, stream: str, why: str | None) -> StreamStatus:
    if event_log is None:
        return StreamStatus(name=stream, error=why or "no NATS connection")
    try:
        info = await asyncio.wait_for(event_log.js.stream_info(stream), TIMEOUT)
    except _NATS_ERRORS as exc:
        return StreamStatus(name=stream, error=f"cannot read stream {stream}: {describe(exc)}")
    st = info.state
    return StreamStatus(name=stream, last_seq=st.last_seq, messages=st.messages, bytes=st.bytes)


async def consumer_statuses(event_log: EventLog | None, stream: str) -> list[ConsumerStatus]:
    """Durable consumers only (ordered/ephemeral ones have no durable name)."""
    if event_log is None:
        return []
    try:
        infos = await asyncio.wait_for(event_log.js.consumers_info(stream), TIMEOUT)
    except _NATS_ERRORS as exc:
        log.debug("cannot list consumers of %s: %s", stream, describe(exc))
        return []
    out = [
        ConsumerStatus(
            name=ci.name,
            pending=ci.num_pending or 0,
            ack_pending=ci.num_ack_pending or 0,
            redelivered=ci.num_redelivered or 0,
            last_delivered=(ci.delivered.stream_seq or 0) if ci.delivered else 0,
        )
        for ci in infos
        if ci.config is not None and ci.config.durable_name
    ]
    return sorted(out, key=lambda c: c.name)
