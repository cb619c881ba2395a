"""The JetStream boundary: the only modules that use nats-py are this one (connection,
publish), :mod:`eventsvc.core.replay` (reading the stream back in order),
:mod:`eventsvc.core.stream` (the stream's configuration and state, direct reads, the
status bucket) and :mod:`eventsvc.core.consumers` (durable consumers, their deliveries
and state). nats-py errors never leave them: they become LogError,
LogUnavailable, LogClosed or PublishError (:mod:`eventsvc.core.errors`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from eventsvc.core import tracing
from eventsvc.core.acks import AckMux, Refused
from eventsvc.core.consumers import (
    NATS_ERRORS,
    Consumers,
    ConsumerSpec,
    ConsumerStats,
    Delivery,
    PullConsumer,
    bind_type,
    describe,
)
from eventsvc.core.errors import LogUnavailable, PublishError
from eventsvc.core.events import Event, encode, headers_for
from eventsvc.core.logs import Repeats
from eventsvc.core.natsauth import Credentials
from eventsvc.core.replay import RawEvent, Replay
from eventsvc.core.stream import Stream, StreamState, fact_version_of

__all__ = [
    "ConnectionState",
    "ConsumerSpec",
    "ConsumerStats",
    "Delivery",
    "EventLog",
    "Published",
    "PullConsumer",
    "RawEvent",
    "StreamState",
    "bind_type",
    "describe",
    "fact_version_of",
]

log = logging.getLogger(__name__)
_repeats = Repeats(log)  # reconnect attempts (all connections): each error once, then counted

WRONG_LAST_SEQUENCE = 10071


class _Moved(Exception):
    """The subject's last sequence was not the expected one (another writer)."""


@dataclass(slots=True)
class Published:
    seq: int
    duplicate: bool


@dataclass
class ConnectionState:
    """Whether the connection is up, and since when (``time.time()``): since it was
    made or came back while connected, since it was lost otherwise."""

    connected: bool = True
    since: float = field(default_factory=time.time)
    reconnects: int = 0
    last_error: str | None = None
    publish_failed: tuple[str, float] | None = None
    """(why, since) while publishes fail (not acknowledged, refused by JetStream);
    None once one succeeds. The embedded server's watchdog restarts it on this."""
    """The last asynchronous error nats-py reported (e.g. one raised inside its reply
    callback, which leaves a bulk publish's ack unanswered)."""


@dataclass
class EventLog(Stream, Consumers, Replay):
    nc: Client
    js: JetStreamContext
    stream: str = "PHOTOS"
    prefix: str = "photos"
    replicas: int = 1
    duplicate_window: float = 120.0
    """Seconds JetStream de-duplicates on Nats-Msg-Id (the once-only guards in
    ``publish`` hold beyond it; tests make it short to show that)."""
    state: ConnectionState = field(default_factory=ConnectionState)
    """Kept up to date by the connection's callbacks."""
    _mux: AckMux | None = field(default=None, init=False, repr=False)

    @property
    def reconnects(self) -> int:
        """How often the connection came back; readers resubscribe when it moves."""
        return self.state.reconnects

    @property
    def connected(self) -> bool:
        """Whether the connection is up now (publishing can work)."""
        return bool(self.nc.is_connected)

    @property
    def disconnected_since(self) -> float | None:
        """Since when (``time.time()``) the connection is down; None while it is up."""
        if self.connected:
            return None
        return self.state.since if not self.state.connected else time.time()

    @property
    def connected_since(self) -> float | None:
        """Since when (``time.time()``) the connection is up; None while it is not."""
        return self.state.since if self.connected else None

    # ------------------------------------------------------------ connection

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        stream: str = "PHOTOS",
        prefix: str = "photos",
        name: str = "eventsvc",
        connect_timeout: float = 5.0,
        credentials: Credentials | None = None,
        reconnect_wait: float = 0.5,
    ) -> EventLog:
        """Connect (with ``credentials``: as that user, replies on its own inbox prefix).
        Once connected it reconnects forever, every ``reconnect_wait`` seconds: a lost
        connection is never given up on (issue 17 item 1)."""
        errors: list[Exception] = []

        state = ConnectionState()

        async def _quiet(exc: Exception) -> None:
            errors.append(exc)
            del errors[:-20]
            state.last_error = str(exc) or type(exc).__name__
            _repeats.log(logging.WARNING, str(exc), "nats: %s", exc)

        async def _reconnected() -> None:
            state.reconnects += 1
            state.connected, state.since = True, time.time()
            _repeats.clear()
            log.warning("nats: reconnected to %s", url)

        async def _disconnected() -> None:
            if state.connected:
                state.connected, state.since = False, time.time()

        auth: dict[str, str] = {}
        if credentials is not None:
            auth = {
                "user": credentials.user,
                "password": credentials.password,
                "inbox_prefix": credentials.inbox_prefix,
            }
        try:
            # nats-py applies max_reconnect_attempts to the first connect too: a few tries
            # there (and a deadline), then reconnect forever once connected.
            nc = await asyncio.wait_for(
                nats.connect(
                    [u.strip() for u in url.split(",") if u.strip()],
                    **auth,  # type: ignore[arg-type]
                    name=name,
                    connect_timeout=connect_timeout,
                    max_reconnect_attempts=3,
                    reconnect_time_wait=reconnect_wait,
                    allow_reconnect=True,
                    error_cb=_quiet,
                    reconnected_cb=_reconnected,
                    disconnected_cb=_disconnected,
                    pending_size=64 * 1024 * 1024,
                ),
                timeout=connect_timeout * 2,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            who = f" as {credentials.user}" if credentials else " without credentials"
            denied = [e for e in (exc, *errors) if "authorization" in str(e).lower()]
            if denied:
                raise LogUnavailable(
                    f"NATS at {url} refused the connection{who}: {denied[0]}"
                ) from exc
            raise LogUnavailable(f"cannot connect to NATS at {url}{who}: {exc!r}") from exc
        nc.options["max_reconnect_attempts"] = -1
        js = nc.jetstream(timeout=10.0)
        try:
            await js.account_info()
        except (TimeoutError, nats.js.errors.Error, nats.errors.Error) as exc:
            info = getattr(nc, "_server_info", None) or {}
            await nc.close()
            if info.get("jetstream"):  # enabled, but not answering: a cluster without quorum
                raise LogUnavailable(
                    f"NATS at {url} has JetStream enabled but it does not answer "
                    f"({type(exc).__name__}): no JetStream quorum in cluster "
                    f"{info.get('cluster') or '?'} (too few nodes up?)"
                ) from exc
            raise LogUnavailable(f"NATS at {url} has no JetStream enabled: {exc!r}") from exc
        state.since = time.time()
        return cls(nc=nc, js=js, stream=stream, prefix=prefix, state=state)

    async def jetstream_trouble(self, timeout: float = 2.0) -> str | None:
        """Why JetStream does not answer on this connection (disabled after its store
        filled up, not ready, the connection down); None when it does."""
        if not self.connected:
            return "not connected"
        try:
            await asyncio.wait_for(self.js.account_info(), timeout)
        except (TimeoutError, nats.js.errors.Error, nats.errors.Error) as exc:
            return describe(exc)
        return None

    CLOSE_TIMEOUT = 2.0
    """Seconds closing may take (draining a connection to a server that is away waits
    for nothing): every wait here is bounded."""

    async def close(self) -> None:
        if self.nc.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), self.CLOSE_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.close(), self.CLOSE_TIMEOUT)

    # ------------------------------------------------------------ publish

    async def publish(
        self,
        event: Event,
        *,
        msg_id: str | None = None,
        expected_last_subject_seq: int | None = None,
        dedupe_after: int | None = None,
    ) -> Published:
        """Append ``event``. Once-only guarantees that hold for any delay, not only
        within the stream's duplicate window (``Nats-Msg-Id``):

        - a ``once`` fact is appended only while its subject holds no fact of its
          deriver's version or newer (``Nats-Expected-Last-Subject-Sequence`` of the fact
          it replaces: a concurrent writer makes one of the two retry and see the other);
        - any other event with a ``causation`` (or a ``dedupe_after`` sequence: 0 for a
          user's decision with a request id) is appended only when no message after that
          sequence on its subject carries the same ``Nats-Msg-Id``, again guarded by the
          subject's last sequence.

        ``expected_last_subject_seq`` overrides both (the caller guards itself)."""
        hdrs = headers_for(event, msg_id)
        tracing.inject(hdrs)  # the deriving span's context, while tracing is on
        subject = event.subject(self.prefix)
        if expected_last_subject_seq is not None:
            try:
                return await self._append(event, subject, hdrs, expected_last_subject_seq)
            except _Moved as exc:
                if event.once:
                    return Published(seq=0, duplicate=True)  # derived before: once is enough
                raise PublishError(f"publish of {subject} failed: {exc.__cause__}") from exc
        if event.once:
            return await self._publish_once(event, subject, hdrs)
        after = dedupe_after if dedupe_after is not None else event.causation
        if after is not None:
            return await self._publish_unique(event, subject, hdrs, after)
        return await self._append(event, subject, hdrs, None)

    GUARD_TRIES = 50
    """Appends retried when other writers keep moving a subject's last sequence."""

    def _publish_trouble(self, why: str | None) -> None:
        if why is None:
            self.state.publish_failed = None
        elif self.state.publish_failed is None:
            self.state.publish_failed = (why, time.time())
        else:
            self.state.publish_failed = (why, self.state.publish_failed[1])

    async def _append(
        self, event: Event, subject: str, hdrs: dict[str, str], expected: int | None
    ) -> Published:
        if expected is not None:
            hdrs = {**hdrs, "Nats-Expected-Last-Subject-Sequence": str(expected)}
        try:
            ack = await self.js.publish(subject, encode(event), stream=self.stream, headers=hdrs)
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE and expected is not None:
                raise _Moved from exc
            self._publish_trouble(str(exc))
            raise PublishError(f"publish of {subject} failed: {exc}") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            self._publish_trouble(describe(exc))
            raise PublishError(f"publish of {subject} failed: {exc!r}") from exc
        self._publish_trouble(None)
        return Published(seq=ack.seq, duplicate=bool(ack.duplicate))

    async def _publish_once(self, event: Event, subject: str, hdrs: dict[str, str]) -> Published:
        expected = 0  # the common case first: nothing derived yet, one round trip
        for _ in range(self.GUARD_TRIES):
            try:
                return await self._append(event, subject, hdrs, expected)
            except _Moved:
                pass
            seq, version = await self.last_fact(subject)
            if seq and version >= event.fact_version:
                return Published(seq=seq, duplicate=True)  # derived before: once is enough
            expected = seq
        raise PublishError(f"publish of {subject} failed: its subject kept moving")

    async def _publish_unique(
        self, event: Event, subject: str, hdrs: dict[str, str], after: int
    ) -> Published:
        msg_id = hdrs["Nats-Msg-Id"]
        scanned = after
        try:  # the common case first: a new subject, one round trip
            return await self._append(event, subject, hdrs, 0)
        except _Moved:
            pass
        for _ in range(self.GUARD_TRIES):
            last = await self.last_subject_seq(subject)
            if last > scanned:
                found, scanned = await self._find_msg_id(subject, msg_id, scanned, last)
                if found:
                    return Published(seq=found, duplicate=True)  # recorded before, any delay
            try:
                return await self._append(event, subject, hdrs, last)
            except _Moved:
                continue  # another writer on this subject: look at what it wrote
        raise PublishError(f"publish of {subject} failed: its subject kept moving")

    async def _find_msg_id(
        self, subject: str, msg_id: str, after: int, upto: int
    ) -> tuple[int, int]:
        """(sequence of a message on ``subject`` in (after, upto] with this Nats-Msg-Id or
        0, the last sequence looked at). One direct read per message on the subject."""
        seq = after + 1
        while seq <= upto:
            try:
                msg = await self.js.get_msg(self.stream, seq=seq, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                return 0, upto
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
                raise PublishError(f"cannot check {subject} before publishing: {exc!r}") from exc
            mseq = int(msg.seq or 0)
            if mseq > upto or mseq <= 0:
                break
            if (msg.headers or {}).get("Nats-Msg-Id") == msg_id:
                return mseq, mseq
            seq = mseq + 1
        return 0, upto

    PUBLISH_STALL = 10.0
    """Seconds a bulk publish waits without any acknowledgement coming back before it
    gives up (PublishError): an ack that never comes (JetStream out of space answers 503
    and nats-py raises inside its reply callback) must not hang the scanner."""

    ASYNC_MAX_PENDING = 4000
    """nats-py's limit of outstanding ``publish_async`` acks (its default)."""

    def _stall(self, more: int) -> float | None:
        """``wait_stall`` for ``more`` pipelined publishes: None (no wait for room, so no
        yield to the event loop per message and the batch leaves in one socket write)
        while nats-py's room for outstanding acks holds them all, else PUBLISH_STALL."""
        if self.js.publish_async_pending() + more < self.ASYNC_MAX_PENDING:
            return None
        return self.PUBLISH_STALL

    async def publish_many(self, items: Iterable[tuple[Event, str | None]]) -> list[Published]:
        """Pipelined publishing for bulk scans (nats-py bounds the acks outstanding).
        Every wait is bounded by ``PUBLISH_STALL`` seconds without progress."""
        futures: list[asyncio.Future] = []
        items = list(items)
        stall = self._stall(len(items))
        try:
            for event, msg_id in items:
                fut = await self.js.publish_async(
                    event.subject(self.prefix),
                    encode(event),
                    wait_stall=stall,
                    stream=self.stream,
                    headers=headers_for(event, msg_id),
                )
                futures.append(fut)
            pending = set(futures)
            while pending:
                done, pending = await asyncio.wait(
                    pending, timeout=self.PUBLISH_STALL, return_when=asyncio.FIRST_EXCEPTION
                )
                if not done:
                    raise TimeoutError(
                        f"no acknowledgement in {self.PUBLISH_STALL:.0f}s for {len(pending)} "
                        f"events (last NATS error: {self.state.last_error or 'none'})"
                    )
                for f in done:
                    if f.exception() is not None:
                        raise f.exception()  # type: ignore[misc]
            acks = [f.result() for f in futures]
        except (TimeoutError, nats.errors.Error) as exc:
            raise self._pipelined_failed("bulk", futures, exc) from exc
        if futures:
            self._publish_trouble(None)
        return [Published(seq=a.seq, duplicate=bool(a.duplicate)) for a in acks]

    def _pipelined_failed(
        self, kind: str, futures: list[asyncio.Future[Any]], exc: BaseException
    ) -> PublishError:
        """A pipelined publish that timed out or lost NATS: its waits cancelled, the
        trouble noted, the error to raise."""
        for f in futures:
            f.cancel()
        why = str(exc) if isinstance(exc, TimeoutError) and str(exc) else describe(exc)
        self._publish_trouble(why)
        return PublishError(f"{kind} publish failed after {len(futures)} events: {why}")

    async def publish_batch(self, events: list[Event]) -> list[Published]:
        """:meth:`publish` of each event (same once-only guarantees), pipelined: every
        event's first try (the common case, a subject with nothing on it: one round trip)
        is sent at once, in one socket write, and the acks are awaited together; an event
        whose subject had moved then takes ``publish``'s guarded path, one at a time in
        the order given (a second event on a subject the batch wrote comes after the
        first). Raises PublishError at the first failure (a retry of the whole batch is
        safe: what was stored is found, not repeated). Every wait is bounded by
        ``PUBLISH_STALL`` seconds without progress."""
        if self._mux is None:
            self._mux = AckMux(self.nc)
        futures: list[asyncio.Future[tuple[int, bool]]] = []
        guarded: list[bool] = []
        try:
            for event in events:
                hdrs = headers_for(event)
                tracing.inject(hdrs)
                guarded.append(event.once or event.causation is not None)
                if guarded[-1]:
                    hdrs["Nats-Expected-Last-Subject-Sequence"] = "0"
                hdrs["Nats-Expected-Stream"] = self.stream
                payload = encode(event)
                futures.append(await self._mux.send(event.subject(self.prefix), payload, hdrs))
            pending = set(futures)
            while pending:
                done, pending = await asyncio.wait(pending, timeout=self.PUBLISH_STALL)
                if not done:
                    raise TimeoutError(
                        f"no acknowledgement in {self.PUBLISH_STALL:.0f}s for {len(pending)} "
                        f"events (last NATS error: {self.state.last_error or 'none'})"
                    )
        except (TimeoutError, nats.errors.Error) as exc:
            raise self._pipelined_failed("batch", futures, exc) from exc
        out: list[Published] = []
        failures = [f.exception() for f in futures]  # every one retrieved, even past a raise
        for event, fut, guard, exc in zip(events, futures, guarded, failures, strict=True):
            if exc is None:
                seq, duplicate = fut.result()
                out.append(Published(seq=seq, duplicate=duplicate))
            elif guard and isinstance(exc, Refused) and exc.err_code == WRONG_LAST_SEQUENCE:
                out.append(await self.publish(event))  # the subject holds events: look
            else:
                self._publish_trouble(str(exc))
                raise PublishError(
                    f"publish of {event.subject(self.prefix)} failed: {exc}"
                ) from exc
        self._publish_trouble(None)
        return out

    async def publish_raw(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> int:
        try:
            ack = await self.js.publish(subject, data, stream=self.stream, headers=headers)
        except NATS_ERRORS as exc:
            raise PublishError(f"publish of {subject} failed: {describe(exc)}") from exc
        return ack.seq

    # ------------------------------------------------------------ read

    @property
    def type_token(self) -> int:
        return self.prefix.count(".") + 3
