"""The one module that talks to JetStream: stream and consumers, publish, consume, replay."""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from eventsvc.core.errors import LogError, LogUnavailable, PublishError
from eventsvc.core.events import HDR_TYPE, Event, encode, headers_for
from eventsvc.core.natsauth import Credentials

__all__ = [
    "ConsumerSpec",
    "EventLog",
    "Published",
    "RawEvent",
    "bind_type",
    "fact_version_of",
]

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071


class _Moved(Exception):
    """The subject's last sequence was not the expected one (another writer)."""


def fact_version_of(data: bytes) -> int:
    """The ``deriver_version`` of an encoded fact (1 when absent or unreadable)."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return 1
    v = body.get("deriver_version", 1) if isinstance(body, dict) else 1
    return v if isinstance(v, int) and v >= 1 else 1


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable pull consumer's configuration, as data."""

    durable: str
    filter_subjects: tuple[str, ...]
    max_deliver: int = 5
    ack_wait: float = 30.0
    backoff: tuple[float, ...] = ()
    max_ack_pending: int = 256
    description: str = ""

    def config(self) -> ConsumerConfig:
        backoff = list(self.backoff[: max(self.max_deliver - 1, 0)]) or None
        return ConsumerConfig(
            durable_name=self.durable,
            description=self.description or None,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=backoff[0] if backoff and backoff[0] > self.ack_wait else self.ack_wait,
            max_deliver=self.max_deliver,
            backoff=[max(b, self.ack_wait) for b in backoff] if backoff else None,
            filter_subjects=list(self.filter_subjects),
            max_ack_pending=self.max_ack_pending,
            max_waiting=512,
        )


def _position(msg: Msg) -> tuple[int, int]:
    """(stream sequence, messages pending) of a JetStream message, from its reply subject
    (``Msg.metadata`` builds dataclasses and a datetime per message: a third of a replay's
    reading time). Both ack-subject forms: ``$JS.ACK.<stream>.<consumer>.<delivered>.
    <sseq>.<cseq>.<ts>.<pending>`` and the one with domain and account hash in front."""
    tokens = (msg.reply or "").split(".")
    try:
        if len(tokens) == 9 and tokens[0] == "$JS":
            return int(tokens[5]), int(tokens[8])
        if len(tokens) >= 11 and tokens[0] == "$JS":
            return int(tokens[7]), int(tokens[10])
    except ValueError:
        pass
    md = msg.metadata  # anything else: nats-py's parser, and its error
    return md.sequence.stream, md.num_pending


def bind_type(subject: str, headers: dict[str, str] | None, at: int = 3) -> dict[str, str]:
    """Headers whose event type is the one the subject names (token ``at``).

    NATS grants publishing per subject, and subjects end in the event type: a user
    allowed ``photos.file.*.FileSeen`` must not get a ``PersonNamed`` body accepted from
    there. ``decode`` refuses a body whose type differs from this header, so every
    event read through the log is of the type its (permitted) subject says."""
    parts = subject.split(".", at + 1)
    etype = parts[at] if len(parts) > at else ""
    if headers is not None and headers.get(HDR_TYPE) == etype:
        return headers
    return {**(headers or {}), HDR_TYPE: etype}


class _TypedPull:
    """A worker's pull subscription: fetched messages carry ``bind_type`` headers, and
    every ``check_every`` seconds the consumer on the server is compared with the spec
    (any user that reads can change a consumer by name through JetStream's ephemeral
    create call, which permissions cannot tell apart): a changed one is restored."""

    def __init__(
        self,
        sub: JetStreamContext.PullSubscription,
        event_log: EventLog,
        spec: ConsumerSpec,
        check_every: float,
    ) -> None:
        self._sub = sub
        self._log = event_log
        self._spec = spec
        self._at = event_log._type_token
        self._check_every = check_every
        self._next_check = time.monotonic() + check_every

    async def fetch(self, *args: object, **kwargs: object) -> list[Msg]:
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self._check_every
            try:
                await self._log.guard_consumer(self._spec)
            except Exception as exc:  # never in the way of consuming
                log.warning("cannot check consumer %s: %r", self._spec.durable, exc)
        msgs = await self._sub.fetch(*args, **kwargs)  # type: ignore[arg-type]
        for msg in msgs:
            msg.headers = bind_type(msg.subject, msg.headers, self._at)
        return msgs

    def __getattr__(self, name: str) -> object:
        return getattr(self._sub, name)


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
class EventLog:
    nc: Client
    js: JetStreamContext
    stream: str = "PHOTOS"
    prefix: str = "photos"
    replicas: int = 1
    duplicate_window: float = 120.0
    """Seconds JetStream de-duplicates on Nats-Msg-Id (the once-only guards in
    ``publish`` hold beyond it; tests make it short to show that)."""
    _reconnects: list[int] = field(default_factory=lambda: [0])

    @property
    def reconnects(self) -> int:
        """How often the connection came back; readers resubscribe when it moves."""
        return self._reconnects[0]

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
            log.warning("nats: %s", exc)

        reconnects = [0]

        async def _reconnected() -> None:
            reconnects[0] += 1
            log.warning("nats: reconnected to %s", url)

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
        return cls(nc=nc, js=js, stream=stream, prefix=prefix, _reconnects=reconnects)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.drain()
        with contextlib.suppress(Exception):
            await self.nc.close()

    # ------------------------------------------------------------ setup (idempotent)

    def stream_config(self) -> StreamConfig:
        return StreamConfig(
            name=self.stream,
            description="eventsvc: the source of truth for the photo index",
            subjects=[f"{self.prefix}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_msgs=-1,
            max_bytes=-1,
            max_age=0,
            max_msgs_per_subject=-1,
            duplicate_window=self.duplicate_window,
            allow_direct=True,
            num_replicas=self.replicas,
        )

    async def ensure_stream(self, *, manage: bool = True) -> None:
        """Create the stream, or bring its configuration up to date. Without ``manage``
        (a component's user, which may not change streams) only check that it exists."""
        cfg = self.stream_config()
        try:
            info = await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            if not manage:
                raise LogError(
                    f"stream {self.stream} does not exist; create it with the admin user "
                    "(`eventsvc setup`, or any command run with admin credentials)"
                ) from None
            try:
                await self.js.add_stream(cfg)
            except nats.js.errors.BadRequestError:
                await self.js.stream_info(self.stream)  # lost a race: it exists now
            return
        except (TimeoutError, nats.errors.Error) as exc:
            raise LogError(f"cannot read stream {self.stream}: {exc!r}") from exc
        have = info.config.as_dict()
        if all(have.get(k) == v for k, v in cfg.as_dict().items()):
            return  # up to date: nothing to change (and no admin right needed)
        if not manage:
            log.warning("stream %s differs from this version's config; an admin may "
                        "update it (`eventsvc setup`)", self.stream)  # fmt: skip
            return
        try:
            await self.js.update_stream(cfg)
        except nats.js.errors.Error as exc:
            raise LogError(
                f"stream {self.stream} exists with an incompatible config: {exc}"
            ) from exc

    async def ensure_consumer(self, spec: ConsumerSpec) -> None:
        cfg = spec.config()
        try:
            await self.js.add_consumer(self.stream, cfg)
        except nats.js.errors.BadRequestError as exc:
            # An older config with other filters: replace it, keeping nothing but the name.
            log.warning("consumer %s config changed (%s); recreating", spec.durable, exc)
            await self.js.delete_consumer(self.stream, spec.durable)
            await self.js.add_consumer(self.stream, cfg)

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

    async def last_fact(self, subject: str) -> tuple[int, int]:
        """(sequence, deriver version) of the last message on ``subject``; (0, 0) when
        none. A body without ``deriver_version`` (older logs) is version 1."""
        try:
            msg = await self.js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError:
            return 0, 0
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise LogError(f"cannot read {subject}: {exc!r}") from exc
        return int(msg.seq or 0), fact_version_of(msg.data or b"")

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
        ack = await self.js.publish(subject, data, stream=self.stream, headers=headers)
        return ack.seq

    # ------------------------------------------------------------ status (not history)

    STATUS_BUCKET = "EVENTSVC_STATUS"

    async def _status_kv(self, create: bool):  # type: ignore[no-untyped-def]
        try:
            return await self.js.key_value(self.STATUS_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            if not create:
                return None
            from nats.js.api import KeyValueConfig

            return await self.js.create_key_value(
                KeyValueConfig(bucket=self.STATUS_BUCKET, history=1, description="scan status")
            )

    async def ensure_status_bucket(self) -> None:
        """Create the status bucket up front (an admin's job: components may only write
        their own keys)."""
        try:
            await self._status_kv(create=True)
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise LogError(f"cannot create the status bucket: {exc!r}") from exc

    async def put_status(self, key: str, value: dict) -> None:
        """Operational status (last scan per library): a KV bucket, not the event log."""
        import json

        try:
            kv = await self._status_kv(create=True)
            await kv.put(key, json.dumps(value).encode())
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            log.warning("cannot write status %s: %r", key, exc)

    async def get_status(self, key: str) -> dict | None:
        import json

        try:
            kv = await self._status_kv(create=False)
            if kv is None:
                return None
            entry = await kv.get(key)
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
            return None
        return json.loads(entry.value) if entry and entry.value else None

    # ------------------------------------------------------------ read

    async def has_subject(self, subject: str) -> bool:
        """Whether the stream holds a message on this exact subject."""
        return await self.last_subject_seq(subject) > 0

    async def last_subject_seq(self, subject: str) -> int:
        """The sequence of the last message on this exact subject (0: none)."""
        try:
            msg = await self.js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError:
            return 0
        return int(msg.seq or 0)

    async def last_seq(self) -> int:
        info = await self.js.stream_info(self.stream)
        return int(info.state.last_seq)

    @property
    def _type_token(self) -> int:
        return self.prefix.count(".") + 3

    CONSUMER_CHECK = 30.0
    """Seconds between checks that a worker's consumer is still as configured."""

    async def pull(self, spec: ConsumerSpec) -> JetStreamContext.PullSubscription:
        await self.ensure_consumer(spec)
        sub = await self.js.pull_subscribe_bind(
            spec.durable, stream=self.stream, pending_msgs_limit=spec.max_ack_pending * 4
        )
        return _TypedPull(sub, self, spec, self.CONSUMER_CHECK)  # type: ignore[return-value]

    async def guard_consumer(self, spec: ConsumerSpec) -> bool:
        """Restore ``spec``'s consumer when the server's differs (durable name, filters,
        deliveries) or is gone; True when it had to."""
        try:
            info = await self.js.consumer_info(self.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            why = "is gone"
        else:
            have = info.config
            filters = sorted(have.filter_subjects or [have.filter_subject or ">"])
            if (
                have.durable_name == spec.durable
                and filters == sorted(spec.filter_subjects)
                and have.max_deliver == spec.max_deliver
                and have.max_ack_pending == spec.max_ack_pending
            ):
                return False
            why = f"was changed (durable {have.durable_name!r}, filters {filters})"
        log.warning("consumer %s %s on the server; restoring it", spec.durable, why)
        await self.ensure_consumer(spec)
        return True

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
        reconnects_at_start = self.reconnects
        at = self._type_token
        try:
            done = False
            if not follow:
                ci = await sub.consumer_info()
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
                    seq, pending = _position(msg)
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
