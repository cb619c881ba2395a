"""The JetStream boundary: the only modules that use nats-py are this one (connection,
publish, replay), :mod:`eventsvc.core.stream` (the stream's configuration and state,
direct reads, the status bucket) and :mod:`eventsvc.core.consumers` (durable consumers,
their deliveries and state). nats-py errors never leave them: they become LogError,
LogUnavailable, LogClosed or PublishError (:mod:`eventsvc.core.errors`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from eventsvc.core import tracing
from eventsvc.core.consumers import (
    NATS_ERRORS,
    Consumers,
    ConsumerSpec,
    ConsumerStats,
    Delivery,
    PullConsumer,
    bind_type,
    describe,
    position,
)
from eventsvc.core.errors import LogError, LogUnavailable, PublishError
from eventsvc.core.events import Event, encode, headers_for
from eventsvc.core.logs import Repeats
from eventsvc.core.natsauth import Credentials
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


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A message read back from the stream, not yet decoded."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None


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


@dataclass
class EventLog(Stream, Consumers):
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

    @property
    def reconnects(self) -> int:
        """How often the connection came back; readers resubscribe when it moves."""
        return self.state.reconnects

    @property
    def connected(self) -> bool:
        """Whether the connection is up now (publishing can work)."""
        return bool(self.nc.is_connected)

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
    ) -> EventLog:
        """Connect (with ``credentials``: as that user, replies on its own inbox prefix)."""
        errors: list[Exception] = []

        async def _quiet(exc: Exception) -> None:
            errors.append(exc)
            del errors[:-20]
            _repeats.log(logging.WARNING, str(exc), "nats: %s", exc)

        state = ConnectionState()

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
                    reconnect_time_wait=0.5,
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
            await nc.close()
            raise LogUnavailable(f"NATS at {url} has no JetStream enabled: {exc!r}") from exc
        state.since = time.time()
        return cls(nc=nc, js=js, stream=stream, prefix=prefix, state=state)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.drain()
        with contextlib.suppress(Exception):
            await self.nc.close()

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
            raise PublishError(f"publish of {subject} failed: {exc}") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise PublishError(f"publish of {subject} failed: {exc!r}") from exc
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

    async def publish_many(self, items: Iterable[tuple[Event, str | None]]) -> list[Published]:
        """Pipelined publishing for bulk scans (nats-py bounds the acks outstanding)."""
        futures: list[asyncio.Future] = []
        try:
            for event, msg_id in items:
                fut = await self.js.publish_async(
                    event.subject(self.prefix),
                    encode(event),
                    stream=self.stream,
                    headers=headers_for(event, msg_id),
                )
                futures.append(fut)
            acks = await asyncio.gather(*futures)
        except (TimeoutError, nats.errors.Error) as exc:
            for f in futures:
                f.cancel()
            raise PublishError(f"bulk publish failed after {len(futures)} events: {exc!r}") from exc
        return [Published(seq=a.seq, duplicate=bool(a.duplicate)) for a in acks]

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

    async def read(
        self,
        filter_subjects: Sequence[str] | None = None,
        *,
        start_seq: int = 1,
        last_per_subject: bool = False,
        stop_at: int | None = None,
        batch: int = 2000,
        follow: bool = False,
        idle: float = 1.0,
    ) -> AsyncIterator[list[RawEvent]]:
        """Read the stream in order, in batches, through an ordered consumer.

        Ends at ``stop_at`` (default: the stream's last sequence when called). With
        ``follow`` it never ends and yields an empty batch after ``idle`` seconds
        without messages, so the caller can look around.
        """
        if follow:
            stop_at = 1 << 62
        elif stop_at is None:
            stop_at = await self.last_seq()
        if stop_at < start_seq:
            return
        filters = list(filter_subjects or [f"{self.prefix}.>"])
        queue: deque[Msg] = deque()
        arrived = asyncio.Event()

        async def _cb(msg: Msg) -> None:
            queue.append(msg)
            arrived.set()

        cfg = ConsumerConfig(
            filter_subjects=filters if len(filters) > 1 else None,
            opt_start_seq=None if last_per_subject or start_seq <= 1 else start_seq,
        )
        policy = (
            DeliverPolicy.LAST_PER_SUBJECT
            if last_per_subject
            else DeliverPolicy.ALL
            if start_seq <= 1
            else DeliverPolicy.BY_START_SEQUENCE
        )
        try:
            sub = await self.js.subscribe(
                filters[0] if len(filters) == 1 else "",
                stream=self.stream,
                cb=_cb,
                ordered_consumer=True,
                deliver_policy=policy,
                config=cfg,
                pending_msgs_limit=1 << 22,
                pending_bytes_limit=1 << 31,
            )
        except NATS_ERRORS as exc:
            raise LogError(f"cannot read stream {self.stream}: {describe(exc)}") from exc
        reconnects_at_start = self.reconnects
        at = self.type_token
        try:
            done = False
            if not follow:
                try:
                    ci = await sub.consumer_info()
                except NATS_ERRORS as exc:
                    raise LogError(f"cannot read stream {self.stream}: {describe(exc)}") from exc
                # (A filtered consumer's delivered.stream_seq moves past messages that
                # do not match; consumer_seq counts what was delivered.)
                if ci.num_pending == 0 and (ci.delivered.consumer_seq or 0) == 0 and not queue:
                    return  # nothing matches the filter
            while not done:
                try:
                    if not queue:
                        arrived.clear()
                        await asyncio.wait_for(arrived.wait(), idle if follow else 30.0)
                except TimeoutError:
                    if self.reconnects != reconnects_at_start:
                        # An ordered consumer heals slowly after a server restart: the
                        # caller starts a fresh read from where it got to.
                        log.warning("read: connection was re-established; resubscribing")
                        return
                    if not follow:
                        raise LogError("reading the stream stalled for 30 s") from None
                    yield []
                    continue
                out: list[RawEvent] = []
                while queue and len(out) < batch:
                    msg = queue.popleft()
                    seq, pending = position(msg)
                    if seq > stop_at:
                        done = True
                        break
                    hdrs = bind_type(msg.subject, msg.headers, at)
                    out.append(RawEvent(seq, msg.subject, msg.data, hdrs))
                    if seq >= stop_at or (pending == 0 and not follow):
                        done = True
                        break
                if out:
                    yield out
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
