"""The pipeline's status, one way for `eventsvc status` and ``GET /pipeline``: the NATS
connection, the stream, its durable consumers and the read model's lag behind it.

Only reads: nothing here creates or changes the stream or a consumer (a stream whose
configuration differs from this version's is reported in ``StreamState.differs``; an
admin updates it with `eventsvc setup`). NATS trouble is reported in the state, never
raised, and every call to the server is bounded in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from eventsvc.core.errors import LogError, ReadModelError
from eventsvc.core.log import ConsumerStats, EventLog, StreamState
from eventsvc.core.stream import ClusterState
from projections import readmodel

__all__ = [
    "TIMEOUT",
    "PipelineState",
    "ProjectorPosition",
    "QuorumWatch",
    "pipeline_state",
    "read_position",
    "since_text",
]

TIMEOUT = 2.0
"""Seconds any one question to NATS may take before it is reported as timed out."""

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(slots=True)
class QuorumWatch:
    """What one process saw of its stream's quorum over time (issue 17 item 4): since
    when it is lost, and when it came back."""

    clustered: bool = False
    last: ClusterState | None = None
    """The cluster as last seen."""
    lost_since: float | None = None
    recovered_at: float | None = None

    def saw(self, stream: StreamState | None, error: str | None, now: float) -> None:
        cluster = stream.cluster if stream is not None else None
        if cluster is not None:
            self.clustered, self.last = True, cluster
        lost = (cluster is not None and not cluster.quorum) or (
            self.clustered and stream is None and error is not None
        )
        if lost and self.lost_since is None:
            since = cluster.lost_since if cluster is not None else None
            self.lost_since = since if since is not None else now
            log.warning(
                "stream: %s", cluster.problem if cluster is not None else error
            )  # fmt: skip
        elif not lost and self.lost_since is not None and stream is not None:
            log.warning(
                "stream: quorum is back after %.0f s (leader %s)",
                now - self.lost_since, cluster.leader if cluster else "-",
            )  # fmt: skip
            self.lost_since, self.recovered_at = None, now

    def cluster(self, stream: StreamState | None) -> ClusterState | None:
        """The stream's cluster state; while the stream cannot be read after it was seen
        clustered, what is known: no quorum, since when."""
        if stream is not None:
            return stream.cluster
        if self.lost_since is None or self.last is None:
            return None
        return ClusterState(
            replicas=self.last.replicas, online=0, leader=None, quorum=False,
            lost_since=self.lost_since,
        )  # fmt: skip


_watches: dict[int, tuple[object, QuorumWatch]] = {}


def _watch(event_log: EventLog) -> QuorumWatch:
    held = _watches.get(id(event_log))
    if held is None or held[0] is not event_log:
        held = (event_log, QuorumWatch())
        _watches[id(event_log)] = held
    return held[1]


@dataclass(frozen=True, slots=True)
class ProjectorPosition:
    """The read model's position in the log."""

    generation: str | None
    """The current generation's file name; None before the first projection."""
    checkpoint: int
    """The last stream sequence applied to it."""
    lag: int | None = None
    """Stream last sequence - checkpoint, never below 0; None without a stream."""


@dataclass(frozen=True, slots=True)
class PipelineState:
    connected: bool
    """Whether this process holds a NATS connection now."""
    connected_since: float | None
    """Since when (``time.time()``) it is up; None while it is not."""
    nats_error: str | None
    """Why there is no connection (None while connected)."""
    stream: StreamState | None
    """The stream (``exists`` False: not created yet); None when it cannot be read."""
    stream_error: str | None
    consumers: tuple[ConsumerStats, ...]
    """Durable consumers on the stream, by name."""
    consumers_error: str | None
    """Why the consumers could not be listed (then ``consumers`` is empty)."""
    projector: ProjectorPosition
    cluster: ClusterState | None = None
    """The stream's replicas (None: a single server, or never read)."""
    quorum_lost_since: float | None = None
    """A clustered stream without quorum (or unreadable after it was seen clustered):
    since when (``time.time()``); None while it has quorum."""
    quorum_recovered_at: float | None = None
    """When this process last saw the quorum come back (None: never lost)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def problems(self) -> list[str]:
        """Everything that keeps the pipeline from working, one line each ([]: healthy)."""
        out = []
        if not self.connected:
            out.append(f"NATS: {self.nats_error or 'not connected'}")
        cluster = self.cluster
        if cluster is not None and cluster.problem:
            since = since_text(self.quorum_lost_since or cluster.lost_since)
            out.append(f"stream: {cluster.problem} (since {since})")
        if self.stream_error and (self.stream is None or self.stream.exists):
            out.append(self.stream_error)
        if self.consumers_error and self.connected:
            out.append(self.consumers_error)
        return out

    @property
    def health(self) -> str:
        """ "ok", or "degraded" while there are :attr:`problems`."""
        return "degraded" if self.problems else "ok"


async def _bounded(call: Awaitable[T], timeout: float) -> T:
    try:
        return await asyncio.wait_for(call, timeout)
    except TimeoutError as exc:
        raise LogError("timed out") from exc


def _position(directory: Path) -> tuple[str | None, int]:
    path = readmodel.current_path(directory)
    if path is None or not path.exists():
        return None, 0
    conn = readmodel.open_reader(path)
    try:
        return path.name, readmodel.checkpoint(conn)
    except Exception as exc:  # sqlite3.Error: a generation being replaced, or broken
        raise ReadModelError(f"cannot read {path.name}: {exc}") from exc
    finally:
        conn.close()


async def read_position(directory: Path) -> tuple[str | None, int]:
    """(generation, checkpoint) of the read model in ``directory``; (None, 0) if none."""
    return await asyncio.to_thread(_position, directory)


async def pipeline_state(
    event_log: EventLog | None,
    position: tuple[str | None, int],
    *,
    why: str | None = None,
    timeout: float = TIMEOUT,
) -> PipelineState:
    """The pipeline's state. ``position`` is the read model's (generation, checkpoint)
    read *before* this call: the stream only grows, so the lag computed from a later
    stream state is never negative (it is clamped at 0 besides, for a stream that was
    deleted and made again). ``why``: the reason when ``event_log`` is None."""
    generation, checkpoint = position
    if event_log is None:
        why = why or "no NATS connection"
        return PipelineState(
            connected=False, connected_since=None, nats_error=why,
            stream=None, stream_error=why, consumers=(), consumers_error=why,
            projector=ProjectorPosition(generation, checkpoint),
        )  # fmt: skip
    stream_call = _bounded(event_log.stream_state(), timeout)
    consumers_call = _bounded(event_log.consumers(), timeout)
    got_stream, got_consumers = await asyncio.gather(
        stream_call, consumers_call, return_exceptions=True
    )
    stream: StreamState | None = None
    stream_error = consumers_error = None
    if isinstance(got_stream, LogError):
        stream_error = f"cannot read stream {event_log.stream}: {got_stream}"
    elif isinstance(got_stream, BaseException):
        raise got_stream
    else:
        stream = got_stream
        if not stream.exists:
            stream_error = (
                f"stream {stream.name} not found: it does not exist yet (`eventsvc up` or "
                "`eventsvc setup` creates it)"
            )
    consumers: tuple[ConsumerStats, ...] = ()
    if isinstance(got_consumers, LogError):
        consumers_error = f"cannot list the consumers of {event_log.stream}: {got_consumers}"
    elif isinstance(got_consumers, BaseException):
        raise got_consumers
    else:
        consumers = tuple(c for c in got_consumers if c.durable)
    lag = max(stream.last_seq - checkpoint, 0) if stream is not None and stream.exists else None
    connected = event_log.connected
    watch = _watch(event_log)
    watch.saw(stream, stream_error, time.time())
    cluster = watch.cluster(stream)
    if cluster is not None and cluster.problem:
        # a stale leader still answers: a consumer listing it returns is not the truth
        consumers_error = consumers_error or (
            f"consumers of {event_log.stream} unknown: {cluster.problem}"
        )
    return PipelineState(
        connected=connected,
        connected_since=event_log.connected_since,
        nats_error=None if connected else (why or "NATS connection lost"),
        stream=stream,
        stream_error=stream_error,
        consumers=consumers,
        consumers_error=consumers_error,
        projector=ProjectorPosition(generation, checkpoint, lag),
        cluster=cluster,
        quorum_lost_since=watch.lost_since,
        quorum_recovered_at=watch.recovered_at,
    )


def since_text(at: float | None) -> str | None:
    """``at`` (``time.time()``) as ISO 8601 in UTC."""
    if at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
